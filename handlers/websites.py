"""Operations of the `websites` tag (issue 15, "Website sources"): a chatbot's websites at
``/api/v1/chatbots/{chatbot_id}/websites…``: add one (its crawl is a job), read them and their
pages, recrawl, delete. Owner-scoped through the chatbot (another user's is 404)."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from handlers.jobs import job_representation
from handlers.responses import json_answer, no_content, timestamp
from server.integration.context import clock, job_engine, principal, unit_of_work
from services import websites

if TYPE_CHECKING:
    from persistence.jobs.models import Job
    from persistence.websites.models import WebPage, Website


def website_representation(website: Website, status: str | None = None) -> dict[str, Any]:
    """The `Website` schema (`status`: as `websites.observed_status` sees it)."""
    settings = website.settings
    return {
        "id": str(website.id),
        "chatbot_id": str(website.chatbot_id),
        "start_url": website.start_url,
        "max_pages": settings.get("max_pages", websites.DEFAULTS["max_pages"]),
        "max_depth": settings.get("max_depth", websites.DEFAULTS["max_depth"]),
        "include_paths": list(settings.get("include_paths") or []),
        "exclude_paths": list(settings.get("exclude_paths") or []),
        "use_sitemap": bool(settings.get("use_sitemap", True)),
        "include_subdomains": bool(settings.get("include_subdomains", False)),
        "status": status or website.status,
        "stopped": website.stopped,
        "crawl_number": website.crawl_number,
        "pages_found": website.pages_found,
        "pages_indexed": website.pages_indexed,
        "pages_skipped": website.pages_skipped,
        "pages_failed": website.pages_failed,
        "robots_blocked": list(website.robots_blocked),
        "error": website.error,
        "job_id": str(website.job_id) if website.job_id else None,
        "started_at": timestamp(website.started_at),
        "finished_at": timestamp(website.finished_at),
        "created_at": timestamp(website.created_at),
        "updated_at": timestamp(website.updated_at),
    }


def page_representation(page: WebPage) -> dict[str, Any]:
    """The `WebPage` schema."""
    return {
        "id": str(page.id),
        "url": page.url,
        "title": page.title,
        "status": page.status,
        "skip_reason": page.skip_reason,
        "detail": page.detail,
        "http_status": page.http_status,
        "depth": page.depth,
        "words": page.words,
        "content_hash": page.content_hash,
        "fetched_at": timestamp(page.fetched_at),
    }


def _represented(items: list[Website]) -> list[dict[str, Any]]:
    statuses = websites.observed_status(uow=unit_of_work(), websites=items)
    return [website_representation(website, statuses[website.id]) for website in items]


def _export_websites(user_id: uuid.UUID) -> list[dict[str, Any]]:
    return _represented(websites.exported_websites(uow=unit_of_work(), owner_id=user_id))


EXPORT_SECTIONS = {"websites": _export_websites}
"""The caller's chatbots' websites in their data export (`handlers.data_export`)."""


def _accepted(website: Website, job: Job) -> tuple:
    body = {"website": website_representation(website), "job": job_representation(job)}
    return json_answer(body, 202, {"Location": f"/api/v1/jobs/{job.id}"})


def create_website(chatbot_id: str, body: dict[str, Any]) -> tuple:
    """POST /api/v1/chatbots/{chatbot_id}/websites — 202 with the website and its crawl job."""
    website, job = websites.create_website(
        uow=unit_of_work(),
        clock=clock(),
        engine=job_engine(),
        caller=principal(),
        chatbot_id=uuid.UUID(chatbot_id),
        data=body,
    )
    return _accepted(website, job)


def list_websites(chatbot_id: str, limit: int = 20, cursor: str | None = None) -> tuple:
    """GET /api/v1/chatbots/{chatbot_id}/websites — the chatbot's websites, newest first."""
    result = websites.list_websites(
        uow=unit_of_work(), caller=principal(), chatbot_id=uuid.UUID(chatbot_id), limit=limit, cursor=cursor
    )
    return json_answer({"items": _represented(result.items), "next_cursor": result.next_cursor})


def get_website(chatbot_id: str, website_id: str) -> tuple:
    """GET /api/v1/chatbots/{chatbot_id}/websites/{website_id} — its status and counts."""
    website = websites.get_website(
        uow=unit_of_work(), caller=principal(), chatbot_id=uuid.UUID(chatbot_id), website_id=uuid.UUID(website_id)
    )
    [representation] = _represented([website])
    return json_answer(representation)


def list_website_pages(
    chatbot_id: str, website_id: str, limit: int = 20, cursor: str | None = None, status: str | None = None
) -> tuple:
    """GET /api/v1/chatbots/{chatbot_id}/websites/{website_id}/pages — what each URL became."""
    result = websites.list_pages(
        uow=unit_of_work(),
        caller=principal(),
        chatbot_id=uuid.UUID(chatbot_id),
        website_id=uuid.UUID(website_id),
        limit=limit,
        cursor=cursor,
        status=status,
    )
    return json_answer(
        {"items": [page_representation(page) for page in result.items], "next_cursor": result.next_cursor}
    )


def recrawl_website(chatbot_id: str, website_id: str) -> tuple:
    """POST /api/v1/chatbots/{chatbot_id}/websites/{website_id}/recrawl — 202 with the new crawl job."""
    website, job = websites.recrawl_website(
        uow=unit_of_work(),
        clock=clock(),
        engine=job_engine(),
        caller=principal(),
        chatbot_id=uuid.UUID(chatbot_id),
        website_id=uuid.UUID(website_id),
    )
    return _accepted(website, job)


def delete_website(chatbot_id: str, website_id: str) -> tuple:
    """DELETE /api/v1/chatbots/{chatbot_id}/websites/{website_id} — 204; its passages go with it."""
    websites.delete_website(
        uow=unit_of_work(), caller=principal(), chatbot_id=uuid.UUID(chatbot_id), website_id=uuid.UUID(website_id)
    )
    return no_content()
