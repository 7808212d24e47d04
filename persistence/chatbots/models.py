"""The chatbot table (issue 15, first slice): a user's chatbot, its instructions, its public
face (welcome message, suggested questions, allowed origins) and its answer settings. The
schema changes only through Alembic migrations (0007)."""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime

from sqlalchemy import JSON, CheckConstraint, Float, ForeignKey, Index, Integer, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from persistence.base import Base
from persistence.types import UTCDateTime

CHATBOT_STATUSES = ("draft", "active", "paused", "archived")
"""Every status a chatbot can have; the contract lists the same values."""
CHATBOT_VISIBILITIES = ("private", "public")
"""Who may talk to a chatbot: its owner only, or anyone (through the widget, later)."""
PUBLIC_ID_PREFIX = "pcb_"
"""What every `public_id` starts with."""


def new_public_id() -> str:
    """A new unguessable public identifier of a chatbot: `PUBLIC_ID_PREFIX` and 16 random
    bytes, URL-safe base64 (22 characters; 128 bits, so ids cannot be enumerated)."""
    return PUBLIC_ID_PREFIX + secrets.token_urlsafe(16)


class Chatbot(Base):
    """A user's chatbot.

    `version` counts changes (the ETag, `If-Match`); `deleting_since` is set when its deletion
    was asked for: from then on it is gone for every read, and the `chatbots.delete` job removes
    the row (and, later, its sources, files and index rows).
    """

    __tablename__ = "chatbots"
    __table_args__ = (
        CheckConstraint("status IN ('draft', 'active', 'paused', 'archived')", name="status_allowed"),
        CheckConstraint("visibility IN ('private', 'public')", name="visibility_allowed"),
        CheckConstraint("passages_per_answer BETWEEN 1 AND 20", name="passages_per_answer_range"),
        CheckConstraint("min_score >= 0 AND min_score <= 1", name="min_score_range"),
        Index("ix_chatbots_owner_created", "owner_id", "created_at", "id"),
        Index("ix_chatbots_created", "created_at", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    instructions: Mapped[str] = mapped_column(Text)
    welcome_message: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    suggested_questions: Mapped[list[str]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(10))
    visibility: Mapped[str] = mapped_column(String(10))
    allowed_origins: Mapped[list[str]] = mapped_column(JSON)
    passages_per_answer: Mapped[int] = mapped_column(Integer)
    min_score: Mapped[float] = mapped_column(Float)
    version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    deleting_since: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    knowledge_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """Counts the changes of the chatbot's knowledge (a source indexed again or removed:
    `persistence.knowledge.repository` bumps it in the same transaction); cached answers are
    keyed by it (issue 18; migration 0023). Not the ETag: `version` is."""
    public_id: Mapped[str] = mapped_column(String(40), unique=True, default=new_public_id)
    """What visitors' paths name (``/api/v1/public/chatbots/{public_id}/…``; issue 16), so the
    chatbot's id is never shown to them; set once, at creation (migration 0014 for older ones)."""
