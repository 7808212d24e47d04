"""Reminders of tasks (issue 14). The schema changes only through Alembic migrations."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, Integer, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from persistence.base import Base
from persistence.types import UTCDateTime

REMINDER_STATUSES = ("pending", "fired", "skipped")
"""`pending` until it fires (`fired`) or its task is completed first (`skipped`)."""


class Reminder(Base):
    """A reminder of one task, for its owner, at `remind_at` (UTC).

    A reminder set relative to the task's due date keeps `minutes_before_due`, and its
    `remind_at` moves with the due date. `status` changes from `pending` only through one
    conditional UPDATE (`ReminderRepository.claim` / `skip_pending`), so it fires at most once.
    """

    __tablename__ = "reminders"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'fired', 'skipped')", name="status_allowed"),
        Index("ix_reminders_task_created", "task_id", "created_at", "id"),
        Index("ix_reminders_status_remind_at", "status", "remind_at"),
        Index("ix_reminders_owner", "owner_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    task_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"))
    remind_at: Mapped[datetime] = mapped_column(UTCDateTime)
    minutes_before_due: Mapped[int | None] = mapped_column(Integer, nullable=True)
    channels: Mapped[list[str]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(10))
    fired_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
