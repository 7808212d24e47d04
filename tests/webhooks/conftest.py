"""Fixtures of the webhook tests: a frozen clock, a recording job queue, fakes of the sender and
the guard, a real MultiFernet box, and a job engine with the declared kinds over them."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest

import jobs as job_kinds
from adapters.secret_box import FernetBox
from adapters.webhook_http import FakeGuard, FakeSender
from persistence.unit_of_work import UnitOfWork
from services.jobs import JobEngine
from services.webhooks import WebhookConfig
from tests.helpers import T0, RecordingQueue  # noqa: F401  (T0: imported from here by the tests)

PUBLIC_URL = "https://hooks.example.com/charter"


@pytest.fixture
def sender() -> FakeSender:
    return FakeSender(200)


@pytest.fixture
def keys(settings) -> list[str]:
    """The session app's keys: every secret in the session's database is under them."""
    return settings.encryption_key_list


@pytest.fixture
def box(keys) -> FernetBox:
    return FernetBox(keys)


@pytest.fixture
def config(sender: FakeSender, box: FernetBox) -> WebhookConfig:
    return WebhookConfig(
        guard=FakeGuard({"http://10.0.0.1/": "the host resolves to a private address"}), sender=sender, box=box
    )


@pytest.fixture
def engine(queue: RecordingQueue, config: WebhookConfig) -> JobEngine:
    """Every declared kind; the jitter draw is 0, so each retry waits its whole backoff."""
    return JobEngine(kinds=job_kinds.discover(), queue=queue, random=lambda: 0.0, context={"webhooks": config})


@pytest.fixture
def published() -> list:
    return []


@pytest.fixture
def new_uow(app, published, clock, engine) -> Callable[[], UnitOfWork]:
    """Units of work on the session's database whose events are fanned out at commit, as the
    wiring does (`server.worker.event_publisher`), with the test's clock and engine."""
    from services import webhooks

    factory = app.app.extensions["charter"].session_factory

    def publish(uow, events) -> None:
        published.extend(events)
        webhooks.fan_out(uow=uow, clock=clock, engine=engine, events=events)

    return lambda: UnitOfWork(factory, publish=publish)


@pytest.fixture
def owner_id(account) -> uuid.UUID:
    return uuid.UUID(account.id)
