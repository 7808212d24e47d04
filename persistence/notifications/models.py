"""In-app notifications (issue 14). The schema changes only through Alembic migrations."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from persistence.base import Base
from persistence.types import UTCDateTime


class Notification(Base):
    """Something the service tells one user (today: a reminder that fired in the `in_app`
    channel). `read_at` is None while unread. `task_id` and `reminder_id` name what it is about
    and become None when that is deleted; the notification stays."""

    __tablename__ = "notifications"
    __table_args__ = (
        Index("ix_notifications_owner_created", "owner_id", "created_at", "id"),
        Index("ix_notifications_owner_unread", "owner_id", "read_at", "created_at", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(40))
    title: Mapped[str] = mapped_column(String(300))
    body: Mapped[str | None] = mapped_column(Text, nullable=True)
    task_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("tasks.id", ondelete="SET NULL"), nullable=True)
    reminder_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("reminders.id", ondelete="SET NULL"), nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
