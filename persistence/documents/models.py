"""The documents table (issue 15): a file uploaded to a chatbot, its scan verdict and what its
processing found. The schema changes only through Alembic migrations (0010)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, CheckConstraint, ForeignKey, Index, Integer, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from persistence.base import Base
from persistence.types import UTCDateTime

DOCUMENT_STATUSES = ("pending", "scanning", "extracting", "ready", "quarantined", "failed")
"""Every status a document can have; the contract's `DocumentStatus` lists the same values."""
IN_PROGRESS_STATUSES = ("pending", "scanning", "extracting")
"""The statuses of a document whose processing job has not finished."""
SCAN_VERDICTS = ("clean", "infected", "unscannable")
"""A scan's verdicts (`services.document_scan.Verdict`)."""


class Document(Base):
    """A document uploaded to a chatbot.

    `sha256` is the key of its bytes in the file store (content-addressed: documents with the
    same bytes share one stored file). `scan_verdict` is null until the scan has run; `pages`,
    `words` and `passages` are set when it is `ready`; `error` holds the problem object of a
    `failed` one.
    """

    __tablename__ = "documents"
    __table_args__ = (
        CheckConstraint(
            "status IN ('pending', 'scanning', 'extracting', 'ready', 'quarantined', 'failed')", name="status_allowed"
        ),
        CheckConstraint(
            "scan_verdict IS NULL OR scan_verdict IN ('clean', 'infected', 'unscannable')", name="scan_verdict_allowed"
        ),
        Index("ix_documents_chatbot_created", "chatbot_id", "created_at", "id"),
        Index("ix_documents_sha256", "sha256"),
        Index("ix_documents_owner", "owner_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    chatbot_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("chatbots.id", ondelete="CASCADE"))
    owner_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    title: Mapped[str] = mapped_column(String(200))
    filename: Mapped[str] = mapped_column(String(255))
    media_type: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(20))
    text_encoding: Mapped[str | None] = mapped_column(String(40), nullable=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(12))
    scan_verdict: Mapped[str | None] = mapped_column(String(12), nullable=True)
    scan_engine: Mapped[str | None] = mapped_column(String(40), nullable=True)
    scan_signature: Mapped[str | None] = mapped_column(String(200), nullable=True)
    scan_detail: Mapped[str | None] = mapped_column(String(500), nullable=True)
    pages: Mapped[int | None] = mapped_column(Integer, nullable=True)
    words: Mapped[int | None] = mapped_column(Integer, nullable=True)
    passages: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    job_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
