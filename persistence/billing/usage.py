"""Reads and writes of `usage_events` and `usage_counters` (issue 17). Every read takes the owner."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from persistence.billing.models import UsageCounter
from persistence.database import for_update


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
