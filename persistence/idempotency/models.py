"""Idempotency records (IETF draft "The Idempotency-Key HTTP header field"). The schema
changes only through Alembic migrations."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    JSON,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from persistence.base import Base
from persistence.types import UTCDateTime


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
