"""Todo tasks and their tags (brief 002). The schema changes only through Alembic migrations."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from persistence.base import Base
from persistence.types import UTCDateTime

TASK_PRIORITIES = ("low", "medium", "high", "urgent")
"""Task priorities, lowest first (brief 002); a task's `priority_rank` is the index here."""

NO_DUE_DATE = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
"""`due_at_key` of a task without a due date: it sorts after every real date."""

TAG_SEPARATOR = "\x1f"
"""Joins tags in one column; a tag cannot contain it (the contract refuses control characters)."""

DATABASE_ONLY_OBJECTS = {"search_vector", "ix_tasks_search"}
"""Schema objects that exist only in the database, made by migrations for one dialect (the
PostgreSQL full-text search column and its GIN index): not mapped here, used through SQL."""


class Task(Base):
    """A todo task owned by one user (brief 002).

    `priority_rank` and `due_at_key` are sort keys the service keeps in step with `priority`
    and `due_at` (a CHECK constraint guards the rank): not-null columns that indexes can
    serve keyset pagination from. `version` is the ETag: it grows by one with every change.
    """

    __tablename__ = "tasks"
    __table_args__ = (
        CheckConstraint("priority IN ('low', 'medium', 'high', 'urgent')", name="priority_allowed"),
        CheckConstraint(
            "priority_rank = CASE priority WHEN 'low' THEN 0 WHEN 'medium' THEN 1 WHEN 'high' THEN 2 ELSE 3 END",
            name="priority_rank_matches",
        ),
        Index("ix_tasks_owner_created", "owner_id", "created_at", "id"),
        Index("ix_tasks_owner_completed_created", "owner_id", "completed", "created_at", "id"),
        Index("ix_tasks_owner_due", "owner_id", "due_at_key", "id"),
        Index("ix_tasks_owner_priority", "owner_id", "priority_rank", "id"),
        Index("ix_tasks_owner_updated", "owner_id", "updated_at", "id"),
        Index("ix_tasks_owner_title", "owner_id", "title", "id"),
        Index("ix_tasks_owner_stats", "owner_id", "completed", "priority_rank", "due_at_key", "completed_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    completed: Mapped[bool] = mapped_column(Boolean, default=False)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    priority: Mapped[str] = mapped_column(String(10))
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    priority_rank: Mapped[int] = mapped_column(SmallInteger, default=1, server_default="1")
    due_at_key: Mapped[datetime] = mapped_column(UTCDateTime)
    recurrence: Mapped[str | None] = mapped_column(String(500), nullable=True)
    """An RFC 5545 RRULE (`services.recurrence`), or None for a one-off task."""
    tag_rows: Mapped[list[TaskTag]] = relationship(
        lazy="selectin", cascade="all, delete-orphan", passive_deletes=True, order_by="TaskTag.tag"
    )

    @property
    def tags(self) -> list[str]:
        """The task's tags, sorted by code point (the same whatever the database's collation)."""
        return sorted(row.tag for row in self.tag_rows)


class TaskTag(Base):
    """One tag of one task; `owner_id` is repeated so the owner's tags are listed from one index."""

    __tablename__ = "task_tags"
    __table_args__ = (Index("ix_task_tags_owner_tag", "owner_id", "tag", "task_id"),)

    task_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True)
    owner_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    tag: Mapped[str] = mapped_column(String(40), primary_key=True)
