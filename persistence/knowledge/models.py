"""Passages of a chatbot's knowledge (issue 15). The schema changes only through Alembic
migrations; the full-text index lives beside the table and no model maps it
(`DATABASE_ONLY_OBJECTS`): PostgreSQL a generated `search_vector` tsvector with a GIN index,
SQLite an external-content FTS5 table kept in step by triggers."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from persistence.base import Base
from persistence.types import UTCDateTime

DATABASE_ONLY_OBJECTS = {
    "search_vector",
    "ix_knowledge_passages_search",
    "knowledge_passages_fts",
    "knowledge_passages_fts_data",
    "knowledge_passages_fts_idx",
    "knowledge_passages_fts_docsize",
    "knowledge_passages_fts_config",
}

PASSAGE_SOURCE_TYPES = ("web_page", "document")
"""What a passage comes from: a crawled page of a website source, or an uploaded document."""


class Passage(Base):
    """A chunk of a few hundred words of one source, with where it comes from: the page's URL
    and title, or the document's page number and heading.

    `seq` is the row's number for the full-text index (SQLite's FTS5 needs an integer key that
    VACUUM does not renumber); `id` is what the API shows.
    """

    __tablename__ = "knowledge_passages"
    __table_args__ = (
        Index("ix_knowledge_passages_source", "chatbot_id", "source_type", "source_id", "position"),
        Index("uq_knowledge_passages_id", "id", unique=True),
    )

    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    id: Mapped[uuid.UUID] = mapped_column(Uuid)
    chatbot_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("chatbots.id", ondelete="CASCADE"))
    source_type: Mapped[str] = mapped_column(String(20))
    source_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    position: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    words: Mapped[int] = mapped_column(Integer)
    title: Mapped[str | None] = mapped_column(String(500), nullable=True)
    url: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    page: Mapped[int | None] = mapped_column(Integer, nullable=True)
    heading: Mapped[str | None] = mapped_column(String(500), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
