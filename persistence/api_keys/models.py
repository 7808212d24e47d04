"""The API key table (issue 16): a user's keys, stored as the SHA-256 of the key only, found by
their non-secret prefix. The schema changes only through Alembic migrations (0012)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from persistence.base import Base
from persistence.types import UTCDateTime


class ApiKey(Base):
    """A user's API key.

    `prefix` (``chk_`` and 16 hex digits) is the part of the key shown in lists and used to find
    it (unique index); `secret_hash` is the SHA-256 hex digest of the whole key, the only form
    of the secret kept. `revoked_at` is set by a revocation (the row stays, for the user's data
    export and the audit trail); `last_used_at` is written at most once a minute.
    """

    __tablename__ = "api_keys"
    __table_args__ = (Index("ix_api_keys_owner_created", "owner_id", "created_at", "id"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(40), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
