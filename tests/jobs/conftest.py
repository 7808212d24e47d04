"""Fixtures of the job tests: a recording fake queue, a frozen clock, an engine over both with
the tests' own kinds, and units of work on the session's database."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

from persistence.accounts.models import User
from services import jobs
from services.errors import InvalidInput
from services.jobs import JobEngine, JobKind, JobRun, RetryPolicy
from tests.helpers import T0, RecordingQueue  # noqa: F401  (re-exported: tests import them from here)


class Calls:
    """What the test kinds were asked to do: a count per job and a script of outcomes."""

    def __init__(self) -> None:
        self.count: dict[uuid.UUID, int] = {}
        self.script: list[Callable[[JobRun], Any]] = []

    def __call__(self, run: JobRun) -> Any:
        self.count[run.job_id] = self.count.get(run.job_id, 0) + 1
        step = self.script.pop(0) if self.script else (lambda run: {"ok": True})
        return step(run)


@pytest.fixture
def calls() -> Calls:
    return Calls()


@pytest.fixture
def engine(queue: RecordingQueue, calls: Calls) -> JobEngine:
    """Kinds: `test.scripted` (5 attempts, 10 s base delay, up to 100 s), `test.once` (1 attempt)."""
    return JobEngine(
        kinds={
            "test.scripted": JobKind(
                "test.scripted", calls, RetryPolicy(max_attempts=5, base_delay_seconds=10, max_delay_seconds=100)
            ),
            "test.once": JobKind("test.once", calls, RetryPolicy(max_attempts=1)),
            "test.invalid": JobKind("test.invalid", _refuses),
        },
        queue=queue,
        random=lambda: 0.25,
    )


def _refuses(run: JobRun) -> None:
    raise InvalidInput("The payload names nothing to do.")


def enqueue(new_uow, clock, engine, *, owner: User | None, kind: str = "test.scripted", **payload: Any) -> uuid.UUID:
    """A new job (committed); returns its id."""
    with new_uow() as uow:
        job = jobs.enqueue(
            uow=uow, clock=clock, engine=engine, kind=kind, owner_id=owner.id if owner else None, payload=payload
        )
        return job.id


def job_row(new_uow, job_id: uuid.UUID):
    with new_uow() as uow:
        return uow.jobs.get(job_id)
