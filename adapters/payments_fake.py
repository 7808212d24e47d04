"""The ``fake`` payment provider (issue 17): no network, deterministic, in memory. Test tokens
as Stripe's: ``tok_visa`` (4242) and ``tok_mastercard`` (4444) charge successfully;
``tok_chargeDeclined`` (0002) attaches but every charge is declined (``card_declined``);
``tok_threeDSecureRequired`` (3184) attaches but every charge needs the cardholder
(``requires_action``); any other token is refused (``invalid_token``).

**Events.** Like Stripe, the fake tells what became of a charge in events too: after each new
charge (not a replay of an idempotency key) it hands `emit` one Stripe-shaped event object
(`payment_event`): ``payment_intent.succeeded``, ``payment_intent.payment_failed`` or
``payment_intent.requires_action``, whose ``data.object`` is the payment intent (its id, amount,
currency, customer, payment method, status, last error, and the charge's `metadata`, where
billing puts our invoice id). The wiring's `emit` queues a job that signs the event as Stripe
signs and hands it to our inbound webhook processing (`server.integration.payments`); without
`emit` (tests of other parts) events are only kept in `events`."""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from adapters.payment_types import CardDetails, ChargeOutcome, PaymentMethodRejected

TEST_CARDS: dict[str, tuple[str, str, str]] = {
    "tok_visa": ("visa", "4242", "succeeded"),
    "tok_mastercard": ("mastercard", "4444", "succeeded"),
    "tok_chargeDeclined": ("visa", "0002", "declined"),
    "tok_threeDSecureRequired": ("visa", "3184", "requires_action"),
}
"""token -> (brand, last four digits, what charges to the card do)."""

EVENT_TYPES = {
    "succeeded": "payment_intent.succeeded",
    "declined": "payment_intent.payment_failed",
    "requires_action": "payment_intent.requires_action",
}
"""A charge's outcome -> the type of the event the fake emits for it (Stripe's names)."""

API_VERSION = "2024-06-20"
"""The Stripe API version the fake's event objects are shaped after."""


def payment_event(
    *,
    outcome: ChargeOutcome,
    customer_id: str,
    provider_payment_method_id: str,
    amount: int,
    currency: str,
    idempotency_key: str,
    metadata: Mapping[str, str],
    created: int,
) -> dict[str, Any]:
    """The Stripe-shaped event object (``object: "event"``, id ``evt_…``) for a charge's outcome."""
    status = {"succeeded": "succeeded", "declined": "requires_payment_method", "requires_action": "requires_action"}[
        outcome.status
    ]
    error = None
    if outcome.status != "succeeded":
        error = {
            "type": "card_error",
            "code": outcome.failure_code,
            "message": outcome.failure_message,
            "payment_method": {"id": provider_payment_method_id, "object": "payment_method"},
        }
    intent = {
        "id": outcome.payment_id,
        "object": "payment_intent",
        "amount": amount,
        "amount_received": amount if outcome.status == "succeeded" else 0,
        "currency": currency.lower(),
        "customer": customer_id,
        "payment_method": provider_payment_method_id,
        "status": status,
        "off_session": True,
        "confirmation_method": "automatic",
        "created": created,
        "livemode": False,
        "metadata": dict(metadata),
        "last_payment_error": error,
    }
    return {
        "id": "evt_" + uuid.uuid4().hex[:24],
        "object": "event",
        "api_version": API_VERSION,
        "created": created,
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": idempotency_key},
        "type": EVENT_TYPES[outcome.status],
        "data": {"object": intent},
    }


class FakePaymentProvider:
    """The in-memory provider: customers, attached cards and charges (each with its amount,
    currency and outcome, in `charges`, for tests to read), and the events it emitted (`events`).
    Thread-safe.

    Args:
        emit: receives each event object after a new charge (called outside the lock); None:
            events are only kept in `events`.
        now: the unix time events are stamped with (`created`).
    """

    name = "fake"

    def __init__(
        self,
        *,
        emit: Callable[[dict[str, Any]], None] | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self._lock = threading.Lock()
        self._emit = emit
        self._now = now
        self.cards: dict[str, str] = {}
        """provider payment method id -> what its charges do."""
        self.charges: dict[str, tuple[int, str, ChargeOutcome]] = {}
        """idempotency key -> (amount, currency, outcome)."""
        self.events: list[dict[str, Any]] = []
        """Every event emitted, oldest first."""

    def connect(self, emit: Callable[[dict[str, Any]], None] | None) -> None:
        """Send the events of later charges to `emit` (None: keep them only in `events`); for
        wiring that builds the provider before what receives its events."""
        self._emit = emit

    def create_customer(self, *, owner_id: uuid.UUID, email: str) -> str:
        """A customer id derived from the account (the same account gets the same id)."""
        return "cus_" + hashlib.sha256(owner_id.bytes).hexdigest()[:14]

    def attach_payment_method(self, *, customer_id: str, token: str) -> CardDetails:
        """A card for a test token, or PaymentMethodRejected (``invalid_token``)."""
        card = TEST_CARDS.get(token)
        if card is None:
            raise PaymentMethodRejected("invalid_token", "No such token: not one of the fake provider's test tokens.")
        brand, last4, behaviour = card
        method_id = "pm_" + uuid.uuid4().hex[:24]
        with self._lock:
            self.cards[method_id] = behaviour
        return CardDetails(provider_payment_method_id=method_id, brand=brand, last4=last4, exp_month=12, exp_year=2034)

    def detach_payment_method(self, *, provider_payment_method_id: str) -> None:
        """Forget the card (no error if it is unknown)."""
        with self._lock:
            self.cards.pop(provider_payment_method_id, None)

    def charge(
        self,
        *,
        customer_id: str,
        provider_payment_method_id: str,
        amount: int,
        currency: str,
        idempotency_key: str,
        description: str,
        metadata: Mapping[str, str] | None = None,
    ) -> ChargeOutcome:
        """The card's behaviour decides; the same idempotency key answers the first outcome (and
        emits nothing again). A new charge emits its event (module docstring)."""
        with self._lock:
            if idempotency_key in self.charges:
                return self.charges[idempotency_key][2]
            behaviour = self.cards.get(provider_payment_method_id)
            payment_id = "pi_" + uuid.uuid4().hex[:24]
            if behaviour == "succeeded":
                outcome = ChargeOutcome(status="succeeded", payment_id=payment_id)
            elif behaviour == "requires_action":
                outcome = ChargeOutcome(
                    status="requires_action",
                    payment_id=payment_id,
                    failure_code="authentication_required",
                    failure_message="The card needs the cardholder to authenticate the payment.",
                )
            else:
                outcome = ChargeOutcome(
                    status="declined",
                    payment_id=payment_id,
                    failure_code="card_declined" if behaviour == "declined" else "resource_missing",
                    failure_message="Your card was declined." if behaviour == "declined" else "No such payment method.",
                )
            self.charges[idempotency_key] = (amount, currency, outcome)
            event = payment_event(
                outcome=outcome,
                customer_id=customer_id,
                provider_payment_method_id=provider_payment_method_id,
                amount=amount,
                currency=currency,
                idempotency_key=idempotency_key,
                metadata=metadata or {},
                created=int(self._now()),
            )
            self.events.append(event)
        if self._emit is not None:
            self._emit(event)
        return outcome
