"""Everything stored about one account, for its data export."""

from __future__ import annotations

import uuid

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from persistence.accounts.models import AuthSession
from persistence.audit.models import AuditEvent
from persistence.tasks.models import Task


class ExportRepository:
    """Reads, on behalf of one user, every row about them."""

    def __init__(self, db: Session) -> None:
        self.db = db

    def sessions(self, user_id: uuid.UUID) -> list[AuthSession]:
        """All the user's sessions, ended ones included, oldest first."""
        return list(
            self.db.scalars(select(AuthSession).where(AuthSession.user_id == user_id).order_by(AuthSession.created_at))
        )

    def tasks(self, user_id: uuid.UUID) -> list[Task]:
        """All the user's tasks, oldest first."""
        return list(self.db.scalars(select(Task).where(Task.owner_id == user_id).order_by(Task.created_at, Task.id)))

    def audit_events(self, user_id: uuid.UUID) -> list[AuditEvent]:
        """Every audit event the user did or that was about them, oldest first."""
        return list(
            self.db.scalars(
                select(AuditEvent)
                .where(or_(AuditEvent.subject_id == user_id, AuditEvent.actor_id == user_id))
                .order_by(AuditEvent.occurred_at, AuditEvent.id)
            )
        )
