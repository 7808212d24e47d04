"""Fixtures of the chatbot tests: a job engine with the declared kinds over the recording queue
(the `clock` and `queue` fixtures are tests/conftest.py's), for the service tests."""

from __future__ import annotations

import pytest

import jobs as job_kinds
from services.jobs import JobEngine
from tests.helpers import RecordingQueue


@pytest.fixture
def engine(queue: RecordingQueue) -> JobEngine:
    """Every declared kind over a queue that records deliveries (no worker runs them)."""
    return JobEngine(kinds=job_kinds.discover(), queue=queue, random=lambda: 0.0)
