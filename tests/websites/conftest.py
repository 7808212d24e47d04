"""Fixtures of the websites tests: the session app's crawler configuration swapped for one made
from settings with CRAWLER_ALLOW_PRIVATE_ADDRESSES=true (so it may crawl the sites the tests
serve on 127.0.0.1, and nothing else is ever contacted), short timeouts and a fake crawl clock
(robots.txt's Crawl-delay is recorded, not waited); `run_job` runs a queued job as a worker would."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from server.worker import make_crawler_config
from services import jobs as job_services
from services.clock import FakeCrawlClock
from services.websites import CrawlerConfig
from tests.helpers import make_settings
from tests.helpers import run_job as run_queued_job

INFO_URL = "https://charter.example/docs/crawler"


def crawler_settings(settings, **overrides):
    """The session's settings with the crawler's test values."""
    return make_settings(
        settings.database_url,
        settings.var_dir,
        crawler_allow_private_addresses=True,
        crawler_info_url=INFO_URL,
        crawler_timeout_seconds=0.5,
        crawler_page_seconds=5,
        crawler_min_delay_seconds=0,
        crawler_max_seconds=120,
        **overrides,
    )


@pytest.fixture
def crawl_clock() -> FakeCrawlClock:
    return FakeCrawlClock()


@pytest.fixture
def crawler(app, settings, crawl_clock, monkeypatch) -> CrawlerConfig:
    """The app's job engine crawls with CRAWLER_ALLOW_PRIVATE_ADDRESSES=true for this test."""
    config = make_crawler_config(crawler_settings(settings))
    config.crawl_clock = crawl_clock
    monkeypatch.setitem(app.app.extensions["charter"].jobs.context, "crawler", config)
    return config


@pytest.fixture
def run_job(app) -> Callable[..., job_services.RunReport]:
    """Run a queued job now, as a worker would, with the app's engine and clock."""

    def run(job_id: str, worker_id: str = "test") -> job_services.RunReport:
        return run_queued_job(app, job_id, worker_id)

    return run
