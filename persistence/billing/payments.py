"""Reads and writes of `payment_methods` and `provider_events` (issue 17). Every read of an
account's payment methods takes the owner."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from persistence.billing.models import PaymentMethod, ProviderEvent


class PaymentMethodRepository:
    """Payment methods within the caller's unit of work."""

    def __init__(self, db: Session) -> None:
        self.db = db

    def add(self, method: PaymentMethod) -> None:
        """Stage a new payment method and write it now."""
        self.db.add(method)
        self.db.flush()

    def default_of(self, owner_id: uuid.UUID) -> PaymentMethod | None:
        """The owner's default payment method that is still attached, else None."""
        statement = select(PaymentMethod).where(
            PaymentMethod.owner_id == owner_id,
            PaymentMethod.is_default.is_(True),
            PaymentMethod.detached_at.is_(None),
        )
        return self.db.scalars(statement).first()


class ProviderEventRepository:
    """Inbound provider events within the caller's unit of work."""

    def __init__(self, db: Session) -> None:
        self.db = db

    def get(self, *, provider: str, event_id: str) -> ProviderEvent | None:
        """The stored event, else None."""
        return self.db.get(ProviderEvent, (provider, event_id))
