"""Reads and writes of `websites` and `web_pages`. A website is read through its chatbot (the
service checks the chatbot's owner first); the crawl job reads it by id."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import case, delete, func, select, tuple_
from sqlalchemy.orm import Session

from persistence.chatbots.models import Chatbot
from persistence.jobs.models import Job
from persistence.websites.models import WebPage, Website


class WebsiteRepository:
    """Websites and their pages within the caller's unit of work."""

    def __init__(self, db: Session) -> None:
        self.db = db

    # -- websites ----------------------------------------------------------------------------

    def add(self, website: Website) -> None:
        """Stage a new website and write it now."""
        self.db.add(website)
        self.db.flush()

    def get(self, website_id: uuid.UUID, *, chatbot_id: uuid.UUID | None = None) -> Website | None:
        """The website (of `chatbot_id` when given), or None."""
        statement = select(Website).where(Website.id == website_id)
        if chatbot_id is not None:
            statement = statement.where(Website.chatbot_id == chatbot_id)
        return self.db.scalars(statement.execution_options(populate_existing=True)).one_or_none()

    def page(
        self, *, chatbot_id: uuid.UUID, limit: int, before: tuple[datetime, uuid.UUID] | None = None
    ) -> list[Website]:
        """Up to `limit` websites of the chatbot, newest first, after `before` (created_at, id)."""
        statement = select(Website).where(Website.chatbot_id == chatbot_id)
        if before is not None:
            statement = statement.where(tuple_(Website.created_at, Website.id) < tuple_(*before))
        order = (Website.created_at.desc(), Website.id.desc())
        return list(self.db.scalars(statement.order_by(*order).limit(limit)))

    def count(self, chatbot_id: uuid.UUID) -> int:
        """How many websites the chatbot has."""
        statement = select(func.count()).select_from(Website).where(Website.chatbot_id == chatbot_id)
        return int(self.db.scalar(statement) or 0)

    def of_chatbot(self, chatbot_id: uuid.UUID) -> list[Website]:
        """Every website of the chatbot."""
        return list(self.db.scalars(select(Website).where(Website.chatbot_id == chatbot_id)))

    def all_of_owner(self, owner_id: uuid.UUID) -> list[Website]:
        """Every website of the owner's chatbots not being deleted, oldest first (the data export)."""
        statement = (
            select(Website)
            .join(Chatbot, Chatbot.id == Website.chatbot_id)
            .where(Website.owner_id == owner_id, Chatbot.deleting_since.is_(None))
            .order_by(Website.created_at, Website.id)
        )
        return list(self.db.scalars(statement))

    def delete(self, website: Website) -> None:
        """Delete the website's pages and its row."""
        self.db.execute(delete(WebPage).where(WebPage.website_id == website.id))
        self.db.delete(website)
        self.db.flush()

    def summary_by_chatbot(self, chatbot_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, tuple[int, int, int, int]]:
        """Per chatbot: (websites, websites whose crawl is queued or running (and whose job has
        not ended: a queued job cancelled before it ran leaves the website ``queued``), websites
        whose crawl failed, pages in the index: indexed, or unchanged at a recrawl)."""
        if not chatbot_ids:
            return {}
        pending = Website.status.in_(("queued", "running")) & Job.status.in_(("queued", "running"))
        sites = self.db.execute(
            select(
                Website.chatbot_id,
                func.count(),
                func.sum(case((pending, 1), else_=0)),
                func.sum(case((Website.status == "failed", 1), else_=0)),
            )
            .outerjoin(Job, Job.id == Website.job_id)
            .where(Website.chatbot_id.in_(list(chatbot_ids)))
            .group_by(Website.chatbot_id)
        ).all()
        pages = dict(
            self.db.execute(
                select(Website.chatbot_id, func.count())
                .join(WebPage, WebPage.website_id == Website.id)
                .where(
                    Website.chatbot_id.in_(list(chatbot_ids)),
                    (WebPage.status == "indexed") | (WebPage.skip_reason == "not_modified"),
                )
                .group_by(Website.chatbot_id)
            ).all()
        )
        return {
            chatbot_id: (int(total), int(active or 0), int(failed or 0), int(pages.get(chatbot_id, 0)))
            for chatbot_id, total, active, failed in sites
        }

    # -- pages -------------------------------------------------------------------------------

    def pages(self, website_id: uuid.UUID) -> list[WebPage]:
        """Every page row of the website, in the order first recorded."""
        statement = select(WebPage).where(WebPage.website_id == website_id).order_by(WebPage.position)
        return list(self.db.scalars(statement))

    def page_of_pages(
        self, *, website_id: uuid.UUID, limit: int, after: int | None = None, status: str | None = None
    ) -> list[WebPage]:
        """Up to `limit` pages of the website in the order first recorded, after `after` (a
        position), of `status` when given."""
        statement = select(WebPage).where(WebPage.website_id == website_id)
        if after is not None:
            statement = statement.where(WebPage.position > after)
        if status is not None:
            statement = statement.where(WebPage.status == status)
        return list(self.db.scalars(statement.order_by(WebPage.position).limit(limit)))

    def page_by_key(self, website_id: uuid.UUID, url_key: str) -> WebPage | None:
        """The website's row for a URL key, or None."""
        statement = select(WebPage).where(WebPage.website_id == website_id, WebPage.url_key == url_key)
        return self.db.scalars(statement).one_or_none()

    def next_position(self, website_id: uuid.UUID) -> int:
        """The position the website's next new page row takes."""
        statement = select(func.max(WebPage.position)).where(WebPage.website_id == website_id)
        return int(self.db.scalar(statement) or 0) + 1

    def add_page(self, page: WebPage) -> None:
        """Stage a new page row and write it now."""
        self.db.add(page)
        self.db.flush()

    def delete_page(self, page: WebPage) -> None:
        """Delete one page row."""
        self.db.delete(page)
        self.db.flush()

    def counts(self, website_id: uuid.UUID, crawl_number: int) -> dict[str, int]:
        """The rows the crawl `crawl_number` recorded, by status."""
        statement = (
            select(WebPage.status, func.count())
            .where(WebPage.website_id == website_id, WebPage.crawl_number == crawl_number)
            .group_by(WebPage.status)
        )
        return {str(status): int(count) for status, count in self.db.execute(statement).all()}
