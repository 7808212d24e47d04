"""The conversation tables (issue 16): a user's conversation with one of the chatbots they may
use, and its messages, questions and answers, each answer with its citations, usage, provider,
latency and finish reason as they were when it was given. The schema changes only through
Alembic migrations (0013)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, CheckConstraint, ForeignKey, Index, Integer, String, Text, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.sql.expression import false

from persistence.base import Base
from persistence.types import UTCDateTime

MESSAGE_ROLES = ("user", "assistant")
"""Who wrote a message: the person asking, or the chatbot answering."""
FEEDBACK_RATINGS = ("up", "down")
"""The ratings a person can give an answer."""


class Conversation(Base):
    """A conversation of `owner_id` with a chatbot.

    `version` counts changes of its own fields (the ETag, `If-Match`); `message_count` is the
    position the last message took (messages are numbered from 1 in the order they were stored).
    It goes with its chatbot (foreign key, and explicitly in the chatbot's purge) and with its
    owner's account.
    """

    __tablename__ = "conversations"
    __table_args__ = (
        Index("ix_conversations_chatbot_created", "chatbot_id", "created_at", "id"),
        Index("ix_conversations_owner_created", "owner_id", "created_at", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    chatbot_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("chatbots.id", ondelete="CASCADE"))
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    title: Mapped[str | None] = mapped_column(String(200), nullable=True)
    message_count: Mapped[int] = mapped_column(Integer)
    version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_message_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    visitor: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    """A visitor's conversation with a public chatbot (issue 16; migration 0014): its owner is
    the chatbot's owner, and the visitor reaches it with the token whose SHA-256 is
    `visitor_token_hash`, until `visitor_expires_at`."""
    visitor_token_hash: Mapped[str | None] = mapped_column(String(64), unique=True, nullable=True)
    visitor_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Message(Base):
    """A message of a conversation, at `position` (1, 2, …; unique in the conversation).

    A `user` message holds the question only. An `assistant` message holds the answer and how
    it came about: `reply_to` (the question's id), `citations` (a JSON list of ``{number, source,
    quote}``), `usage` (``{passages, words_in, words_out}``), `provider`, `latency_ms`,
    `finish_reason` and `fallback`; and the person's feedback on it, if any (one per answer).
    """

    __tablename__ = "conversation_messages"
    __table_args__ = (
        UniqueConstraint("conversation_id", "position"),
        CheckConstraint("role IN ('user', 'assistant')", name="role_allowed"),
        CheckConstraint("feedback_rating IS NULL OR feedback_rating IN ('up', 'down')", name="feedback_rating_allowed"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    conversation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(10))
    content: Mapped[str] = mapped_column(Text)
    reply_to: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    citations: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    usage: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    provider: Mapped[str | None] = mapped_column(String(40), nullable=True)
    latency_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    finish_reason: Mapped[str | None] = mapped_column(String(20), nullable=True)
    fallback: Mapped[bool] = mapped_column(Boolean)
    feedback_rating: Mapped[str | None] = mapped_column(String(4), nullable=True)
    feedback_comment: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    feedback_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
