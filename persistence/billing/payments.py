"""Reads and writes of `payment_methods` and `provider_events` (issue 17). Every read of an
account's payment methods takes the owner."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import func, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
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

    def get(self, *, owner_id: uuid.UUID, method_id: uuid.UUID) -> PaymentMethod | None:
        """The owner's attached payment method `method_id`, else None (a detached one, or another
        account's, is None)."""
        statement = select(PaymentMethod).where(
            PaymentMethod.id == method_id,
            PaymentMethod.owner_id == owner_id,
            PaymentMethod.detached_at.is_(None),
        )
        return self.db.scalars(statement).first()

    def count_attached(self, owner_id: uuid.UUID) -> int:
        """How many payment methods the owner has attached (not detached)."""
        statement = select(func.count()).where(PaymentMethod.owner_id == owner_id, PaymentMethod.detached_at.is_(None))
        return int(self.db.scalar(statement) or 0)

    def page(
        self, *, owner_id: uuid.UUID, limit: int, before: tuple[datetime, uuid.UUID] | None = None
    ) -> list[PaymentMethod]:
        """Up to `limit` attached payment methods of the owner, newest first, after the position
        `before` (created_at, id)."""
        statement = select(PaymentMethod).where(PaymentMethod.owner_id == owner_id, PaymentMethod.detached_at.is_(None))
        if before is not None:
            statement = statement.where(tuple_(PaymentMethod.created_at, PaymentMethod.id) < tuple_(*before))
        order = (PaymentMethod.created_at.desc(), PaymentMethod.id.desc())
        return list(self.db.scalars(statement.order_by(*order).limit(limit)))

    def newest_attached(self, owner_id: uuid.UUID, *, excluding: uuid.UUID | None = None) -> PaymentMethod | None:
        """The owner's most recently attached method still attached (other than `excluding`), else None."""
        statement = select(PaymentMethod).where(PaymentMethod.owner_id == owner_id, PaymentMethod.detached_at.is_(None))
        if excluding is not None:
            statement = statement.where(PaymentMethod.id != excluding)
        order = (PaymentMethod.created_at.desc(), PaymentMethod.id.desc())
        return self.db.scalars(statement.order_by(*order).limit(1)).first()

    def make_default(self, *, owner_id: uuid.UUID, method_id: uuid.UUID) -> None:
        """Make `method_id` the owner's one default method (every other one of theirs not)."""
        self.db.execute(
            update(PaymentMethod)
            .where(
                PaymentMethod.owner_id == owner_id, PaymentMethod.id != method_id, PaymentMethod.is_default.is_(True)
            )
            .values(is_default=False)
            .execution_options(synchronize_session="fetch")
        )
        self.db.execute(
            update(PaymentMethod)
            .where(PaymentMethod.owner_id == owner_id, PaymentMethod.id == method_id)
            .values(is_default=True)
            .execution_options(synchronize_session="fetch")
        )

    def detach(self, method: PaymentMethod, *, now: datetime) -> None:
        """Mark the method detached at `now` (kept for the owner's export) and no longer default."""
        method.detached_at = now
        method.is_default = False
        self.db.flush()

    def all_of(self, owner_id: uuid.UUID) -> list[PaymentMethod]:
        """Every payment method of the owner, detached ones included, oldest first (their export)."""
        statement = (
            select(PaymentMethod)
            .where(PaymentMethod.owner_id == owner_id)
            .order_by(PaymentMethod.created_at, PaymentMethod.id)
        )
        return list(self.db.scalars(statement))


class ProviderEventRepository:
    """Inbound provider events within the caller's unit of work."""

    def __init__(self, db: Session) -> None:
        self.db = db

    def get(self, *, provider: str, event_id: str) -> ProviderEvent | None:
        """The stored event, else None."""
        return self.db.get(ProviderEvent, (provider, event_id))

    def add_if_absent(
        self,
        *,
        provider: str,
        event_id: str,
        type: str,
        object_id: str | None,
        created: datetime,
        received_at: datetime,
    ) -> bool:
        """Store the event unless (`provider`, `event_id`) is stored already (``INSERT … ON
        CONFLICT DO NOTHING``; a concurrent insert of the same id is waited for). True when this
        call stored it, so exactly one of several concurrent deliveries of an event processes it."""
        values = {
            "provider": provider,
            "event_id": event_id,
            "type": type,
            "object_id": object_id,
            "created": created,
            "received_at": received_at,
            "processed_at": None,
            "outcome": None,
        }
        dialect = self.db.get_bind().dialect.name
        insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
        statement = (
            insert(ProviderEvent)
            .values(**values)
            .on_conflict_do_nothing(index_elements=["provider", "event_id"])
            .returning(ProviderEvent.event_id)
        )
        return self.db.execute(statement).first() is not None

    def mark_processed(self, *, provider: str, event_id: str, now: datetime, outcome: str) -> None:
        """Record that the stored event was applied at `now`, with its `outcome`."""
        self.db.execute(
            update(ProviderEvent)
            .where(ProviderEvent.provider == provider, ProviderEvent.event_id == event_id)
            .values(processed_at=now, outcome=outcome)
            .execution_options(synchronize_session=False)
        )
