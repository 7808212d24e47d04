"""The payment wiring (issue 17): the provider PAYMENT_PROVIDER names, the inbound webhooks'
configuration, and the relay that turns the fake provider's events into queued jobs.

(This module builds adapters, which the layer rules leave to the wiring: pyproject's
import-linter contract "Adapters only from services or the wiring" names it as the one
exception in `server.integration`. Only `server.app` and `server.worker` import it.)
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

import structlog

from adapters import resilience
from adapters.payments_fake import FakePaymentProvider
from adapters.payments_stripe import StripePaymentProvider
from persistence.unit_of_work import UnitOfWork
from server.settings import Settings
from services import provider_events
from services.clock import Clock
from services.jobs import JobEngine
from services.payments import PaymentProvider

log = structlog.get_logger(__name__)


def build_payment_provider(
    settings: Settings, *, emit: Callable[[dict[str, Any]], None] | None = None
) -> PaymentProvider:
    """The provider PAYMENT_PROVIDER names: ``fake`` (`FakePaymentProvider`; its events go to
    `emit`, e.g. a `FakeEventRelay`) or ``stripe`` (`StripePaymentProvider` with STRIPE_API_KEY,
    STRIPE_API_BASE and the STRIPE_* timeouts, retries and breaker)."""
    if settings.payment_provider == "stripe":
        assert settings.stripe_api_key is not None  # the settings refuse stripe without a key
        return StripePaymentProvider(
            api_key=settings.stripe_api_key.get_secret_value(),
            api_base=settings.stripe_api_base,
            connect_timeout_seconds=settings.stripe_connect_timeout_seconds,
            timeout_seconds=settings.stripe_timeout_seconds,
            retry_attempts=settings.stripe_retry_attempts,
            breaker=resilience.join(
                "payment_provider",
                failures=settings.stripe_breaker_failures,
                reset_seconds=settings.stripe_breaker_reset_seconds,
                fallback="nothing charged: 503 /problems/payment-provider-unavailable; renewals retried an hour later",
            ),
        )
    return FakePaymentProvider(emit=emit)


def provider_event_config(settings: Settings) -> provider_events.ProviderEventConfig:
    """The inbound webhooks' secrets per provider: STRIPE_WEBHOOK_SECRET's for ``stripe``, and
    FAKE_WEBHOOK_SECRET's for ``fake`` only while PAYMENT_PROVIDER is ``fake`` (otherwise its
    endpoint refuses every delivery: nothing but the fake should ever sign as the fake)."""
    fake = tuple(settings.fake_webhook_secret_list) if settings.payment_provider == "fake" else ()
    return provider_events.ProviderEventConfig(
        secrets={"stripe": tuple(settings.stripe_webhook_secret_list), "fake": fake}
    )


def relay_fake_events(
    provider: PaymentProvider, *, units: Callable[[], UnitOfWork], clock: Callable[[], Clock], engine: JobEngine
) -> FakeEventRelay | None:
    """When `provider` is the fake, connect its events to a new `FakeEventRelay` (queued as jobs of
    `engine`, in units of work from `units`); the relay, or None for another provider. Call it
    once per process where the provider and a unit-of-work factory both exist (`create_app`,
    `Worker`)."""
    if not isinstance(provider, FakePaymentProvider):
        return None
    relay = FakeEventRelay(units=units, clock=clock, engine=engine)
    provider.connect(relay)
    return relay


class FakeEventRelay:
    """What the fake provider hands its events to: each is queued as a
    `services.provider_events.FAKE_EVENT_KIND` job, in a unit of work of its own, on a thread of
    its own — as Stripe sends its events: after the charge call returned, whatever becomes of the
    caller's transaction. (On SQLite the caller's transaction may hold the write lock while it
    charges; the relay's write waits for it there instead of blocking the caller.)

    Args:
        units: makes units of work (commits when their block ends).
        clock: the time the jobs are queued at.
        engine: the job engine (the kind, the queue).
    """

    def __init__(self, *, units: Callable[[], UnitOfWork], clock: Callable[[], Clock], engine: JobEngine) -> None:
        self._units = units
        self._clock = clock
        self._engine = engine
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fake-provider-events")
        self._lock = threading.Lock()
        self._pending: list[Future[None]] = []

    def __call__(self, event: dict[str, Any]) -> None:
        future = self._executor.submit(self._queue, event)
        with self._lock:
            self._pending = [pending for pending in self._pending if not pending.done()] + [future]

    def _queue(self, event: dict[str, Any]) -> None:
        try:
            with self._units() as uow:
                provider_events.queue_fake_event(uow=uow, clock=self._clock(), engine=self._engine, event=event)
        except Exception:
            log.exception("fake_provider_event_not_queued", event_id=event.get("id"), type=event.get("type"))

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until every event handed over so far is queued (at most `timeout` seconds);
        whether they all were."""
        with self._lock:
            pending = list(self._pending)
        _done, not_done = wait(pending, timeout=timeout)
        return not not_done
