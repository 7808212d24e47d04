"""Fixtures of the chatbot tests: a frozen clock, a recording job queue and a job engine with the
declared kinds, for the service tests."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

import jobs as job_kinds
from services.clock import FrozenClock
from services.jobs import JobEngine
from tests.jobs.conftest import RecordingQueue

T0 = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(T0)


@pytest.fixture
def queue() -> RecordingQueue:
    return RecordingQueue()


@pytest.fixture
def engine(queue: RecordingQueue) -> JobEngine:
    """Every declared kind over a queue that records deliveries (no worker runs them)."""
    return JobEngine(kinds=job_kinds.discover(), queue=queue, random=lambda: 0.0)
