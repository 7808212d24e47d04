"""The payment settings and wiring: PAYMENT_PROVIDER picks the provider, stripe needs its key, the
webhook secrets are comma-separated lists, and the fake's endpoint is open only with the fake."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from adapters.payments_fake import FakePaymentProvider
from adapters.payments_stripe import StripePaymentProvider
from server.integration.payments import build_payment_provider, provider_event_config
from server.settings import Settings


def settings(tmp_path, **values) -> Settings:
    return Settings(_env_file=None, var_dir=tmp_path, **values)


def test_the_fake_by_default_and_stripe_when_named(tmp_path):
    fake = settings(tmp_path)
    assert isinstance(build_payment_provider(fake), FakePaymentProvider)
    stripe = settings(
        tmp_path, payment_provider="stripe", stripe_api_key="sk_test_x", stripe_api_base="http://127.0.0.1:9"
    )
    provider = build_payment_provider(stripe)
    assert isinstance(provider, StripePaymentProvider) and provider.name == "stripe"
    with pytest.raises(ValidationError, match="STRIPE_API_KEY"):
        settings(tmp_path, payment_provider="stripe")
    with pytest.raises(ValidationError):
        settings(tmp_path, payment_provider="paypal")


def test_webhook_secrets_are_lists_and_the_fakes_only_with_the_fake(tmp_path):
    fake = settings(tmp_path, stripe_webhook_secret=" whsec_new , whsec_old ", fake_webhook_secret="whsec_f1,whsec_f2")
    assert provider_event_config(fake).secrets == {
        "stripe": ("whsec_new", "whsec_old"),
        "fake": ("whsec_f1", "whsec_f2"),
    }
    stripe = settings(tmp_path, payment_provider="stripe", stripe_api_key="sk_test_x", fake_webhook_secret="whsec_f1")
    assert provider_event_config(stripe).secrets == {"stripe": (), "fake": ()}


def test_the_fake_secret_is_made_once_under_var_dir_and_kept_private(tmp_path):
    first = settings(tmp_path).fake_webhook_secret_list
    assert first == settings(tmp_path).fake_webhook_secret_list and first[0].startswith("whsec_")
    assert ((tmp_path / "fake_webhook_secret").stat().st_mode & 0o777) == 0o600
