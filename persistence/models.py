"""ORM models. The schema itself changes only through Alembic migrations in `migrations/`."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Text,
    Uuid,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, query_expression, relationship

from persistence.types import UTCDateTime

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

TASK_PRIORITIES = ("low", "medium", "high", "urgent")
"""Task priorities, lowest first (brief 002); a task's `priority_rank` is the index here."""

NO_DUE_DATE = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
"""`due_at_key` of a task without a due date: it sorts after every real date."""

TAG_SEPARATOR = "\x1f"
"""Joins tags in one column; a tag cannot contain it (the contract refuses control characters)."""

DATABASE_ONLY_OBJECTS = {"search_vector", "ix_tasks_search"}
"""Schema objects that exist only in the database, made by migrations for one dialect (the
PostgreSQL full-text search column and its GIN index): not mapped here, used through SQL."""

ROLES = ("user", "admin")
"""Account roles (brief 004): an admin may manage every account."""

STATUSES = ("active", "deactivated")
"""Account statuses: a deactivated account cannot log in and its sessions are ended."""


class Base(DeclarativeBase):
    """Declarative base with constraint names that are the same on every database."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class User(Base):
    """An account. `email` is stored lower-cased, so the unique index is case-insensitive."""

    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint("role IN ('user', 'admin')", name="role_allowed"),
        CheckConstraint("status IN ('active', 'deactivated')", name="status_allowed"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    display_name: Mapped[str] = mapped_column(String(100))
    password_hash: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(10), default="user", server_default="user")
    status: Mapped[str] = mapped_column(String(12), default="active", server_default="active")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AuthSession(Base):
    """A login session: the parent of its access tokens (claim `sid`) and refresh tokens."""

    __tablename__ = "auth_sessions"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_reason: Mapped[str | None] = mapped_column(String(40), nullable=True)
    user_agent: Mapped[str | None] = mapped_column(String(500), nullable=True)
    client_address: Mapped[str | None] = mapped_column(String(64), nullable=True)


class RefreshToken(Base):
    """A refresh token, kept only as the SHA-256 of its value; `used_at` is set on rotation."""

    __tablename__ = "refresh_tokens"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    session_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("auth_sessions.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


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
    tag_rows: Mapped[list[TaskTag]] = relationship(
        lazy="selectin", cascade="all, delete-orphan", passive_deletes=True, order_by="TaskTag.tag"
    )
    listed_tags: Mapped[str | None] = query_expression()
    """The tags joined by TAG_SEPARATOR, when a list query loaded them with the task (one query
    for a page instead of one more for its tags)."""

    @property
    def tags(self) -> list[str]:
        """The task's tags, sorted by code point (the same whatever the database's collation)."""
        listed = self.__dict__.get("listed_tags")
        if listed is not None and "tag_rows" not in self.__dict__:
            return sorted(tag for tag in listed.split(TAG_SEPARATOR) if tag)
        return sorted(row.tag for row in self.tag_rows)


class TaskTag(Base):
    """One tag of one task; `owner_id` is repeated so the owner's tags are listed from one index."""

    __tablename__ = "task_tags"
    __table_args__ = (Index("ix_task_tags_owner_tag", "owner_id", "tag", "task_id"),)

    task_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True)
    owner_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    tag: Mapped[str] = mapped_column(String(40), primary_key=True)


class IdempotencyRecord(Base):
    """The first answer to a request sent with an `Idempotency-Key`, per owner and key, replayed
    to retries (API_STYLE, Safe writes; IETF draft "The Idempotency-Key HTTP header field")."""

    __tablename__ = "idempotency_records"
    __table_args__ = (
        CheckConstraint("state IN ('in_progress', 'completed')", name="state_allowed"),
        Index("ix_idempotency_records_expires", "expires_at"),
    )

    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(12))
    response_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    response_headers: Mapped[dict[str, str] | None] = mapped_column(JSON, nullable=True)
    response_body: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class LoginThrottle(Base):
    """Failed logins per email (digested), for lockout. Keyed by email, not by account, so an
    email with no account locks exactly like one with an account and the answer reveals nothing."""

    __tablename__ = "login_throttles"

    email_digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer)
    window_started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class PasswordResetToken(Base):
    """A single-use password reset token, kept only as the SHA-256 of its value."""

    __tablename__ = "password_reset_tokens"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class AuditEvent(Base):
    """A security event. Append-only: the database refuses UPDATE and DELETE (triggers in the
    migration). Actor and subject are plain ids, not foreign keys, so the trail outlives the
    accounts it is about."""

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_occurred", "occurred_at", "id"),
        Index("ix_audit_events_subject_occurred", "subject_id", "occurred_at", "id"),
        Index("ix_audit_events_actor_occurred", "actor_id", "occurred_at", "id"),
        Index("ix_audit_events_type_occurred", "type", "occurred_at", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    type: Mapped[str] = mapped_column(String(40))
    actor_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    subject_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    client_address: Mapped[str | None] = mapped_column(String(64), nullable=True)
    user_agent: Mapped[str | None] = mapped_column(String(500), nullable=True)
    request_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
