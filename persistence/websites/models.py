"""The website tables (issue 15, "Website sources: a crawler that behaves"): a chatbot's website
source with its crawl's settings, status and counts, and one row per URL its crawls recorded.
The schema changes only through Alembic migrations (0009)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, Integer, String, Text, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from persistence.base import Base
from persistence.types import UTCDateTime

WEBSITE_STATUSES = ("queued", "running", "completed", "failed", "cancelled")
"""A website's crawl status; the contract's `WebsiteStatus` lists the same (an open enum)."""
FINAL_STATUSES = ("completed", "failed", "cancelled")
"""Statuses a crawl ends in (never left in ``running``: firecrawl#1347, #1679)."""
PAGE_STATUSES = ("indexed", "skipped", "failed")
"""What became of a page (`services.crawling.PageResult.status`)."""


class Website(Base):
    """A website source of a chatbot.

    `crawl_number` counts the crawls asked for (1 at creation, +1 per recrawl): a page row
    recorded by the current crawl has it, so a restarted job knows what it fetched already, and a
    recrawl knows what the previous crawl stored (ETag, Last-Modified, content hash).
    """

    __tablename__ = "websites"
    __table_args__ = (
        CheckConstraint("status IN ('queued', 'running', 'completed', 'failed', 'cancelled')", name="status_allowed"),
        Index("ix_websites_chatbot_created", "chatbot_id", "created_at", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    chatbot_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("chatbots.id", ondelete="CASCADE"))
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    start_url: Mapped[str] = mapped_column(String(2048))
    settings: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(10))
    crawl_number: Mapped[int] = mapped_column(Integer)
    pages_found: Mapped[int] = mapped_column(Integer)
    pages_indexed: Mapped[int] = mapped_column(Integer)
    pages_failed: Mapped[int] = mapped_column(Integer)
    pages_skipped: Mapped[int] = mapped_column(Integer)
    robots_blocked: Mapped[list[str]] = mapped_column(JSON)
    stopped: Mapped[str | None] = mapped_column(String(20), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    job_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class WebPage(Base):
    """One URL a crawl of a website recorded (`services.crawling.PageResult`): unique per
    website by its `url_key` (`services.crawl_scope.url_key`); `position` is the order it was
    first recorded in (the pages list's keyset); `crawl_number` the crawl that last recorded it."""

    __tablename__ = "web_pages"
    __table_args__ = (
        CheckConstraint("status IN ('indexed', 'skipped', 'failed')", name="status_allowed"),
        UniqueConstraint("website_id", "url_key", name="uq_web_pages_website_url_key"),
        UniqueConstraint("website_id", "position", name="uq_web_pages_website_position"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    website_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("websites.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    crawl_number: Mapped[int] = mapped_column(Integer)
    url: Mapped[str] = mapped_column(String(2048))
    url_key: Mapped[str] = mapped_column(String(2048))
    title: Mapped[str | None] = mapped_column(String(500), nullable=True)
    status: Mapped[str] = mapped_column(String(10))
    skip_reason: Mapped[str | None] = mapped_column(String(20), nullable=True)
    detail: Mapped[str | None] = mapped_column(String(500), nullable=True)
    http_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    depth: Mapped[int] = mapped_column(Integer)
    words: Mapped[int] = mapped_column(Integer)
    content_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    etag: Mapped[str | None] = mapped_column(String(500), nullable=True)
    last_modified: Mapped[str | None] = mapped_column(String(100), nullable=True)
    links: Mapped[list[str]] = mapped_column(JSON)
    fetched_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
