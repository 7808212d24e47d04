"""The values and errors every payment provider adapter speaks in (issue 17). They live here, not
in services, so adapters stand alone (the import-linter contract "Adapters stand alone");
`services.payments` re-exports them beside the `PaymentProvider` port, and callers import them
from there."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ChargeStatus = Literal["succeeded", "declined", "requires_action"]


@dataclass(frozen=True)
class CardDetails:
    """What may be shown of an attached card: the provider's id for it, brand (``visa``,
    ``mastercard``, …), last four digits and expiry."""

    provider_payment_method_id: str
    brand: str
    last4: str
    exp_month: int
    exp_year: int


@dataclass(frozen=True)
class ChargeOutcome:
    """The result of one charge attempt. `payment_id`: the provider's charge or payment intent
    (also when declined, if the provider made one); `failure_code` and `failure_message` (the
    provider's, e.g. ``card_declined``) when it did not succeed."""

    status: ChargeStatus
    payment_id: str | None
    failure_code: str | None = None
    failure_message: str | None = None


class PaymentMethodRejected(Exception):
    """The provider refused the token (unknown, expired or declined on attach); `code` is its
    reason (e.g. ``card_declined``, ``invalid_token``)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class PaymentProviderUnavailable(Exception):
    """The provider could not be reached or answered an error that is not about the card (its
    circuit breaker is open, a timeout, a 5xx): nothing is known to have been charged."""
