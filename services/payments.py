"""The payment provider port (issue 17): what billing asks of a payment provider, whichever
`PAYMENT_PROVIDER` serves it (``fake``: adapters/payments_fake.py, no network; ``stripe``:
adapters/payments_stripe.py, the `stripe` package). Shapes follow Stripe's objects (Customer,
PaymentMethod, PaymentIntent).

The values and errors (`CardDetails`, `ChargeOutcome`, `PaymentMethodRejected`,
`PaymentProviderUnavailable`) are defined in `adapters.payment_types`, so the adapters need not
import services, and are re-exported here: import them from this module."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Protocol

from adapters.payment_types import (
    CardDetails,
    ChargeOutcome,
    ChargeStatus,
    PaymentMethodRejected,
    PaymentProviderUnavailable,
)

__all__ = [
    "CardDetails",
    "ChargeOutcome",
    "ChargeStatus",
    "PaymentMethodRejected",
    "PaymentProvider",
    "PaymentProviderUnavailable",
]


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
        metadata: Mapping[str, str] | None = None,
    ) -> ChargeOutcome:
        """Charge `amount` minor units of `currency` (ISO 4217) off-session. The same
        `idempotency_key` again answers the first outcome without charging again. `metadata`
        (optional, e.g. ``{"invoice_id": "<uuid>"}``) is stored on the provider's payment and
        comes back in its events, which is how an inbound event finds our invoice (without it,
        `services.provider_events` finds the invoice by the payment's id).

        Raises:
            PaymentProviderUnavailable: the provider did not answer (nothing charged).
        """
        ...
