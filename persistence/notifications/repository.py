"""Reads and writes of `notifications`; every read and change takes the owner."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select, tuple_, update
from sqlalchemy.orm import Session

from persistence.database import affected_rows, read_rows
from persistence.notifications.models import Notification


class NotificationRepository:
    """`notifications` within the caller's unit of work."""

    def __init__(self, db: Session) -> None:
        self.db = db

    def add(self, notification: Notification) -> None:
        """Write a new notification now (in the unit of work's transaction)."""
        self.db.add(notification)
        self.db.flush()

    def get(self, *, owner_id: uuid.UUID, notification_id: uuid.UUID) -> Notification | None:
        """The owner's notification, freshly read, or None."""
        return self.db.scalars(
            select(Notification)
            .where(Notification.id == notification_id, Notification.owner_id == owner_id)
            .execution_options(populate_existing=True)
        ).one_or_none()

    def list_page(
        self,
        *,
        owner_id: uuid.UUID,
        limit: int,
        unread: bool | None = None,
        before: tuple[datetime, uuid.UUID] | None = None,
    ) -> list[Any]:
        """Up to `limit` of the owner's notifications, newest first, as Core rows (columns of
        `Notification` by name: a list is only read), after the position `before`.

        Args:
            unread: True: only unread ones; False: only read ones; None: all.
        """
        statement = select(*Notification.__table__.columns).where(Notification.owner_id == owner_id)
        if unread is True:
            statement = statement.where(Notification.read_at.is_(None))
        elif unread is False:
            statement = statement.where(Notification.read_at.is_not(None))
        if before is not None:
            statement = statement.where(tuple_(Notification.created_at, Notification.id) < tuple_(*before))
        statement = statement.order_by(Notification.created_at.desc(), Notification.id.desc()).limit(limit)
        return list(read_rows(self.db, statement))

    def all_of_owner(self, owner_id: uuid.UUID) -> list[Notification]:
        """Every notification of the owner, oldest first (the data export)."""
        return list(
            self.db.scalars(
                select(Notification)
                .where(Notification.owner_id == owner_id)
                .order_by(Notification.created_at, Notification.id)
            )
        )

    def mark_read(self, *, owner_id: uuid.UUID, now: datetime, notification_id: uuid.UUID | None = None) -> int:
        """Stamp `read_at = now` on the owner's unread notifications (one, or all when
        `notification_id` is None); a read one keeps its first `read_at`. How many changed."""
        statement = update(Notification).where(Notification.owner_id == owner_id, Notification.read_at.is_(None))
        if notification_id is not None:
            statement = statement.where(Notification.id == notification_id)
        result = self.db.execute(statement.values(read_at=now).execution_options(synchronize_session=False))
        return affected_rows(result)
