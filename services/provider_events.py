"""Inbound payment-provider events (issue 17, API_STYLE "Webhooks"): `POST
/api/v1/billing/webhooks/{provider}`, and the fake provider's events that reach the same
processing through the job queue.

Rules and where they come from:

* **The raw body's signature is verified before anything is parsed** (Stripe's scheme:
  `services.stripe_signatures`; 300 s tolerance, several ``v1`` while Stripe rolls its secret, several
  of our secrets while we roll ours, constant-time comparisons). A missing, malformed, stale or
  forged signature is 400 `/problems/invalid-signature`, and nothing is stored or changed. A
  provider with no secret configured refuses every delivery the same way.
* **Each event id is processed once** (`provider_events`, keyed by provider and event id, written
  with ``INSERT … ON CONFLICT DO NOTHING``): of several deliveries of one event, even at once,
  exactly one applies it; the others answer 200 ``duplicate: true`` and change nothing
  (Stripe's "Handle duplicate events").
* **Out-of-order events are resolved by the object's own state**, not by the events' order:
  `services.invoices.mark_invoice_paid` and `record_payment_failure` return False and change
  nothing on a stale transition (a failure after a success, a success for a void invoice); the
  event is stored with outcome ``stale``.
* **What is applied**: ``payment_intent.succeeded`` marks the invoice paid;
  ``payment_intent.payment_failed`` records the failed attempt (dunning goes on from there). The
  invoice is the one named by the payment's ``metadata.invoice_id`` (what billing sends with a
  charge), else the one whose `provider_payment_id` is the payment's id. Every other type (and an
  event about no invoice of ours) is stored and acknowledged with outcome ``ignored``: Stripe
  retries deliveries that are not answered 2xx, for days, so an event we do not use must still
  get a 200.
"""

from __future__ import annotations

import importlib
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from persistence.unit_of_work import UnitOfWork
from services import jobs
from services.clock import Clock
from services.errors import DomainError, InvalidInput, NotFound, ProblemType
from services.stripe_signatures import DEFAULT_TOLERANCE_SECONDS, SignatureInvalid, sign, verify

PROVIDERS = ("fake", "stripe")
"""The providers whose events are received (the contract's `PaymentProviderName`)."""
FAKE_EVENT_KIND = "payments.deliver_fake_event"
"""The job kind that hands one of the fake provider's events to `receive_event`."""
MAX_PAYLOAD_BYTES = 262_144
"""An event body larger than this is refused (Stripe's are a few kilobytes)."""

Outcome = Literal["applied", "stale", "ignored"]


class InvalidSignature(DomainError):
    """The delivery's ``Stripe-Signature`` is missing, malformed, stale or forged."""

    problem = ProblemType("/problems/invalid-signature", "Webhook signature refused", 400)


@dataclass(frozen=True)
class ProviderEventConfig:
    """What the event processing needs from the wiring.

    Attributes:
        secrets: the webhook signing secrets accepted, by provider name (any one of them may
            sign; the first signs the fake's events). A provider without secrets refuses every delivery.
        tolerance_seconds: how far a signature's timestamp may be from now (Stripe's 300).
    """

    secrets: Mapping[str, Sequence[str]] = field(default_factory=dict)
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS


@dataclass(frozen=True)
class Received:
    """What became of one delivery: the event's id and type, whether it had been received
    before (`duplicate`: nothing was done this time) and its `outcome` (None while the first
    delivery is still being applied)."""

    event_id: str
    type: str
    duplicate: bool
    outcome: str | None


@dataclass(frozen=True)
class _Event:
    id: str
    type: str
    created: datetime
    object: dict[str, Any]


def receive_event(
    *,
    uow: UnitOfWork,
    clock: Clock,
    config: ProviderEventConfig,
    provider: str,
    payload: bytes,
    signature_header: str | None,
) -> Received:
    """Verify, store once and apply one delivery of a provider's event (module docstring).

    Args:
        provider: ``fake`` or ``stripe`` (`PROVIDERS`).
        payload: the request body exactly as received (bytes; the signature covers them).
        signature_header: the ``Stripe-Signature`` header, or None when absent.

    Raises:
        InvalidSignature: the signature does not hold (400; nothing stored or changed).
        InvalidInput: a genuine signature over a body that is not a Stripe event object (400).
    """
    secrets = list(config.secrets.get(provider, ())) if provider in PROVIDERS else []
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise InvalidSignature("The webhook body is too large to be a provider's event.")
    try:
        verify(
            payload,
            signature_header,
            secrets=secrets,
            now=clock.now().timestamp(),
            tolerance_seconds=config.tolerance_seconds,
        )
    except SignatureInvalid:
        raise InvalidSignature(
            "The Stripe-Signature header is missing, malformed, too old or does not match the body."
        ) from None
    event = _parse(payload)  # only now: the bytes are the provider's
    now = clock.now()
    stored = uow.provider_events.add_if_absent(
        provider=provider,
        event_id=event.id,
        type=event.type,
        object_id=_text(event.object.get("id"), 255),
        created=event.created,
        received_at=now,
    )
    if not stored:
        existing = uow.provider_events.get(provider=provider, event_id=event.id)
        return Received(event.id, event.type, duplicate=True, outcome=existing.outcome if existing else None)
    outcome = apply_event(uow=uow, clock=clock, event_type=event.type, payment=event.object)
    uow.provider_events.mark_processed(provider=provider, event_id=event.id, now=clock.now(), outcome=outcome)
    return Received(event.id, event.type, duplicate=False, outcome=outcome)


def apply_event(*, uow: UnitOfWork, clock: Clock, event_type: str, payment: Mapping[str, Any]) -> Outcome:
    """Apply a verified event to our invoices; its outcome.

    Args:
        event_type: the event's `type`.
        payment: its ``data.object`` (for the types applied, a payment intent: ``id``,
            ``metadata.invoice_id``, ``last_payment_error.code``/``message``).

    `services.invoices` (billing's invoices) is imported when first needed: its
    `mark_invoice_paid` and `record_payment_failure` decide, by the invoice's own state, whether the
    event still changes anything (False: ``stale``).
    """
    if event_type not in ("payment_intent.succeeded", "payment_intent.payment_failed"):
        return "ignored"
    invoices = importlib.import_module("services.invoices")
    payment_id = _text(payment.get("id"), 255)
    if payment_id is None:
        return "ignored"
    invoice_id = _invoice_of(uow, payment, payment_id)
    if invoice_id is None:
        return "ignored"
    try:
        if event_type == "payment_intent.succeeded":
            changed = invoices.mark_invoice_paid(uow, invoice_id=invoice_id, payment_id=payment_id, clock=clock)
        else:
            error = payment.get("last_payment_error")
            error = error if isinstance(error, dict) else {}
            changed = invoices.record_payment_failure(
                uow,
                invoice_id=invoice_id,
                payment_id=payment_id,
                failure_code=_text(error.get("code"), 100) or "payment_failed",
                failure_message=_text(error.get("message"), 500) or "The payment failed.",
                clock=clock,
            )
    except (LookupError, NotFound):  # no such invoice (e.g. its charge's transaction was rolled back)
        return "ignored"
    return "applied" if changed else "stale"


def _invoice_of(uow: UnitOfWork, payment: Mapping[str, Any], payment_id: str) -> uuid.UUID | None:
    metadata = payment.get("metadata")
    named = metadata.get("invoice_id") if isinstance(metadata, dict) else None
    if isinstance(named, str):
        try:
            return uuid.UUID(named)
        except ValueError:
            return None
    by_payment = getattr(uow.invoices, "by_payment", None)  # billing-core's InvoiceRepository.by_payment
    invoice = by_payment(payment_id) if by_payment is not None else None
    return invoice.id if invoice is not None else None


def _text(value: Any, limit: int) -> str | None:
    return value[:limit] if isinstance(value, str) and value else None


def _parse(payload: bytes) -> _Event:
    """The event object of a verified body.

    Raises:
        InvalidInput: not JSON, or not an object with ``id``, ``type``, ``created`` and ``data.object``.
    """
    try:
        body = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InvalidInput("The webhook body is not a JSON event object.", pointer="") from None
    if not isinstance(body, dict):
        raise InvalidInput("The webhook body is not a JSON event object.", pointer="")
    event_id, event_type, created, data = body.get("id"), body.get("type"), body.get("created"), body.get("data")
    if not isinstance(event_id, str) or not 1 <= len(event_id) <= 255:
        raise InvalidInput("The event has no id.", pointer="/id")
    if not isinstance(event_type, str) or not 1 <= len(event_type) <= 100:
        raise InvalidInput("The event has no type.", pointer="/type")
    if not isinstance(created, int) or isinstance(created, bool) or not 0 <= created < 253_402_300_800:
        raise InvalidInput("The event has no creation time.", pointer="/created")
    payment = data.get("object") if isinstance(data, dict) else None
    if not isinstance(payment, dict):
        raise InvalidInput("The event has no data.object.", pointer="/data/object")
    return _Event(event_id, event_type, datetime.fromtimestamp(created, UTC), payment)


# --- the fake provider's events, through the job queue ------------------------------------------


def queue_fake_event(*, uow: UnitOfWork, clock: Clock, engine: jobs.JobEngine, event: Mapping[str, Any]) -> None:
    """Queue the delivery of one of the fake provider's event objects (`FAKE_EVENT_KIND`), as
    Stripe queues a webhook delivery after a charge."""
    jobs.enqueue(
        uow=uow, clock=clock, engine=engine, kind=FAKE_EVENT_KIND, owner_id=None, payload={"event": dict(event)}
    )


def signed_fake_delivery(*, config: ProviderEventConfig, clock: Clock, event: Mapping[str, Any]) -> tuple[bytes, str]:
    """The bytes and the ``Stripe-Signature`` header of a delivery of the fake's `event`: compact
    JSON, signed at the current time with the fake's first secret, as Stripe signs.

    Raises:
        InvalidSignature: no secret is configured for the fake provider.
    """
    secrets = list(config.secrets.get("fake", ()))
    if not secrets:
        raise InvalidSignature("FAKE_WEBHOOK_SECRET names no secret.")
    payload = json.dumps(dict(event), separators=(",", ":")).encode("utf-8")
    return payload, sign(payload, secrets=secrets[:1], timestamp=int(clock.now().timestamp()))


def deliver_fake_event(
    *, uow: UnitOfWork, clock: Clock, config: ProviderEventConfig, event: Mapping[str, Any]
) -> Received:
    """Deliver one of the fake provider's events as Stripe delivers one: serialise it, sign the
    bytes with the fake's first secret at the current time (``Stripe-Signature``), and hand body and
    header to `receive_event` — the processing behind the webhook endpoint, signature check
    included. (The job runs in the worker, which knows no URL of the API, so it calls the
    processing in-process instead of POSTing to it; the bytes and the header are the same.)

    Raises:
        InvalidSignature: no secret is configured for the fake provider.
    """
    payload, header = signed_fake_delivery(config=config, clock=clock, event=event)
    return receive_event(uow=uow, clock=clock, config=config, provider="fake", payload=payload, signature_header=header)


def config_of(engine: jobs.JobEngine) -> ProviderEventConfig:
    """The event configuration the wiring put in the job engine's context (``provider_events``)."""
    config = engine.context.get("provider_events")
    if not isinstance(config, ProviderEventConfig):
        raise LookupError("the job engine has no provider_events configuration")
    return config
