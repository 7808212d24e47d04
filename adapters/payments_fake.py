"""The ``fake`` payment provider (issue 17): no network, deterministic, in memory. Test tokens
as Stripe's: ``tok_visa`` (4242) and ``tok_mastercard`` (4444) charge successfully;
``tok_chargeDeclined`` (0002) attaches but every charge is declined (``card_declined``);
``tok_threeDSecureRequired`` (3184) attaches but every charge needs the cardholder
(``requires_action``); any other token is refused (``invalid_token``)."""

from __future__ import annotations

import hashlib
import threading
import uuid

from adapters.payments import CardDetails, ChargeOutcome, PaymentMethodRejected

TEST_CARDS: dict[str, tuple[str, str, str]] = {
    "tok_visa": ("visa", "4242", "succeeded"),
    "tok_mastercard": ("mastercard", "4444", "succeeded"),
    "tok_chargeDeclined": ("visa", "0002", "declined"),
    "tok_threeDSecureRequired": ("visa", "3184", "requires_action"),
}
"""token -> (brand, last four digits, what charges to the card do)."""


class FakePaymentProvider:
    """The in-memory provider: customers, attached cards and charges (each with its amount,
    currency and outcome, in `charges`, for tests to read). Thread-safe."""

    name = "fake"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.cards: dict[str, str] = {}
        """provider payment method id -> what its charges do."""
        self.charges: dict[str, tuple[int, str, ChargeOutcome]] = {}
        """idempotency key -> (amount, currency, outcome)."""

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
    ) -> ChargeOutcome:
        """The card's behaviour decides; the same idempotency key answers the first outcome."""
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
            return outcome
