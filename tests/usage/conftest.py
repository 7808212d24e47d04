"""Fixtures and helpers of the usage tests: usage recorded directly (as an area would record
it), units of work that keep the events they publish, and the crawler fixtures of the websites
tests (crawls of sites served on 127.0.0.1 only)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

from persistence.unit_of_work import UnitOfWork
from server.worker import make_crawler_config
from services import usage
from services.clock import Clock, FakeCrawlClock, SystemClock
from services.websites import CrawlerConfig
from tests.helpers import run_job as run_queued_job
from tests.websites.conftest import crawler_settings


def use(app: Any, owner_id: str | uuid.UUID, meter: str, quantity: int, clock: Clock | None = None) -> None:
    """Record `quantity` of `meter` for the account directly, as an area would (a key of its own)."""
    factory = app.app.extensions["charter"].session_factory
    owner = owner_id if isinstance(owner_id, uuid.UUID) else uuid.UUID(owner_id)
    with UnitOfWork(factory) as uow:
        usage.record_usage(
            uow,
            owner_id=owner,
            meter=meter,
            quantity=quantity,
            idempotency_key=f"test:{uuid.uuid4()}",
            clock=clock or SystemClock(),
        )


@pytest.fixture
def published(app) -> tuple[Callable[[], UnitOfWork], list[Any]]:
    """Units of work on the session app's database whose published events are kept in a list."""
    factory = app.app.extensions["charter"].session_factory
    kept: list[Any] = []
    return (lambda: UnitOfWork(factory, publish=lambda _uow, events: kept.extend(events))), kept


@pytest.fixture
def crawler(app, settings, monkeypatch) -> CrawlerConfig:
    """The app's job engine crawls with CRAWLER_ALLOW_PRIVATE_ADDRESSES=true for this test."""
    config = make_crawler_config(crawler_settings(settings))
    config.crawl_clock = FakeCrawlClock()
    monkeypatch.setitem(app.app.extensions["charter"].jobs.context, "crawler", config)
    return config


@pytest.fixture
def run_job(app) -> Callable[..., Any]:
    """Run a queued job now, as a worker would, with the app's engine and clock."""
    return lambda job_id: run_queued_job(app, job_id)
