"""The payment provider port (issue 17): what billing asks of a payment provider, whichever
`PAYMENT_PROVIDER` serves it (``fake``: adapters/payments_fake.py, no network; ``stripe``: the
`stripe` package). Shapes follow Stripe's objects (Customer, PaymentMethod, PaymentIntent)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Literal, Protocol

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


class PaymentProvider(Protocol):
    """A payment provider. Every call is made with timeouts; `charge` takes an idempotency key so
    a retried attempt never charges twice (Stripe's ``Idempotency-Key``)."""

    name: str
    """``fake`` or ``stripe``: stored with the customer and the payment methods."""

    def create_customer(self, *, owner_id: uuid.UUID, email: str) -> str:
        """Make the provider's customer for an account; its id.

        Raises:
            PaymentProviderUnavailable: the provider did not answer.
        """
        ...

    def attach_payment_method(self, *, customer_id: str, token: str) -> CardDetails:
        """Attach the card a client-side token stands for to the customer.

        Raises:
            PaymentMethodRejected: the token is unknown or the card was declined.
            PaymentProviderUnavailable: the provider did not answer.
        """
        ...

    def detach_payment_method(self, *, provider_payment_method_id: str) -> None:
        """Detach a card (idempotent: an already detached card is not an error).

        Raises:
            PaymentProviderUnavailable: the provider did not answer.
        """
        ...

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
        """Charge `amount` minor units of `currency` (ISO 4217) off-session. The same
        `idempotency_key` again answers the first outcome without charging again.

        Raises:
            PaymentProviderUnavailable: the provider did not answer (nothing charged).
        """
        ...
