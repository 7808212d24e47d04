"""The payment provider wiring (issue 17): `build_payment_provider` makes the provider
PAYMENT_PROVIDER names, once per process; `create_app` keeps it on the app's context
(`AppContext.payment_provider`) and `make_job_engine` in the job engine's context (`"billing"`)."""

from __future__ import annotations

from adapters.payments_fake import FakePaymentProvider
from server.settings import ConfigurationError, Settings
from services.payments import PaymentProvider


def build_payment_provider(settings: Settings) -> PaymentProvider:
    """The provider PAYMENT_PROVIDER names: ``fake`` (in memory, the default).

    Raises:
        server.settings.ConfigurationError: an unknown provider (the settings refuse it already).
    """
    if settings.payment_provider == "fake":
        return FakePaymentProvider()
    raise ConfigurationError(f"PAYMENT_PROVIDER {settings.payment_provider!r} is not a payment provider")
