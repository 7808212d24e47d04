"""The append-only audit log."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import or_, select, tuple_
from sqlalchemy.orm import Session

from persistence.audit.models import AuditEvent


class AuditRepository:
    """Appends to and reads `audit_events` within the caller's unit of work. There is no update
    or delete here, and the database refuses both (triggers)."""

    def __init__(self, db: Session) -> None:
        self.db = db

    def involving(self, user_id: uuid.UUID) -> list[AuditEvent]:
        """Every event the user did or that was about them, oldest first (for the data export)."""
        return list(
            self.db.scalars(
                select(AuditEvent)
                .where(or_(AuditEvent.subject_id == user_id, AuditEvent.actor_id == user_id))
                .order_by(AuditEvent.occurred_at, AuditEvent.id)
            )
        )

    def append(self, event: AuditEvent) -> None:
        """Stage a new event."""
        self.db.add(event)

    def list_page(
        self,
        *,
        limit: int,
        before: tuple[datetime, uuid.UUID] | None = None,
        user_id: uuid.UUID | None = None,
        types: list[str] | None = None,
        occurred_after: datetime | None = None,
        occurred_before: datetime | None = None,
    ) -> list[AuditEvent]:
        """Up to `limit` events, newest first (occurred_at, id descending).

        Args:
            user_id: events this user did (actor) or that were about them (subject).
            types: only these event types.
            occurred_after, occurred_before: a half-open time range [after, before).
        """
        statement = select(AuditEvent)
        if user_id is not None:
            statement = statement.where(or_(AuditEvent.subject_id == user_id, AuditEvent.actor_id == user_id))
        if types:
            statement = statement.where(AuditEvent.type.in_(types))
        if occurred_after is not None:
            statement = statement.where(AuditEvent.occurred_at >= occurred_after)
        if occurred_before is not None:
            statement = statement.where(AuditEvent.occurred_at < occurred_before)
        if before is not None:
            statement = statement.where(tuple_(AuditEvent.occurred_at, AuditEvent.id) < tuple_(*before))
        statement = statement.order_by(AuditEvent.occurred_at.desc(), AuditEvent.id.desc()).limit(limit)
        return list(self.db.scalars(statement))
