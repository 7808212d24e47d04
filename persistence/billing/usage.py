"""Reads and writes of `usage_events` and `usage_counters` (issue 17). Every read takes the owner."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from persistence.billing.models import UsageCounter, UsageEvent
from persistence.database import for_update, insert_if_absent


class UsageRepository:
    """Usage events and counters within the caller's unit of work."""

    def __init__(self, db: Session) -> None:
        self.db = db

    def counter(
        self, *, owner_id: uuid.UUID, meter: str, period_start: datetime, lock: bool = False
    ) -> UsageCounter | None:
        """The owner's counter of `meter` for the period starting `period_start`, else None;
        `lock`: held locked until the unit of work ends."""
        statement = select(UsageCounter).where(
            UsageCounter.owner_id == owner_id,
            UsageCounter.meter == meter,
            UsageCounter.period_start == period_start,
        )
        if lock:
            statement = for_update(self.db, statement)
        return self.db.scalars(statement).one_or_none()

    def locked_counter(self, *, owner_id: uuid.UUID, meter: str, period_start: datetime, now: datetime) -> UsageCounter:
        """The owner's counter of `meter` for the period starting `period_start`, made at zero
        if absent (``INSERT … ON CONFLICT DO NOTHING``: two first uses at once make one row) and
        held locked until the unit of work ends (PostgreSQL ``FOR UPDATE``; SQLite: the write
        lock), so a check and an increment of it cannot interleave with another's."""
        insert_if_absent(
            self.db,
            UsageCounter,
            {
                "owner_id": owner_id,
                "meter": meter,
                "period_start": period_start,
                "used": 0,
                "notified_percent": 0,
                "updated_at": now,
            },
            key=["owner_id", "meter", "period_start"],
        )
        counter = self.counter(owner_id=owner_id, meter=meter, period_start=period_start, lock=True)
        assert counter is not None  # written above, or by a concurrent first use
        return counter

    def has_event(self, *, owner_id: uuid.UUID, meter: str, idempotency_key: str) -> bool:
        """Whether a use of `meter` with this idempotency key was recorded for the owner (in any period)."""
        statement = select(UsageEvent.id).where(
            UsageEvent.owner_id == owner_id,
            UsageEvent.meter == meter,
            UsageEvent.idempotency_key == idempotency_key,
        )
        return self.db.scalars(statement.limit(1)).first() is not None

    def add_event(self, event: UsageEvent) -> None:
        """Stage a usage event and write it now (a second one with the same owner, meter and
        key breaks the unique constraint: check `has_event` under the counter's lock first)."""
        self.db.add(event)
        self.db.flush()

    def counters_of(self, owner_id: uuid.UUID) -> list[UsageCounter]:
        """Every counter of the owner, by meter then period (oldest first): their data export."""
        statement = (
            select(UsageCounter)
            .where(UsageCounter.owner_id == owner_id)
            .order_by(UsageCounter.meter, UsageCounter.period_start)
        )
        return list(self.db.scalars(statement))
