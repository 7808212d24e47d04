"""Fixtures of the reminder, recurrence and notification tests: a frozen clock, a job engine
with the real kinds over a recording queue and an in-memory mailer, units of work on the
session's database, and a user who owns the tasks."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest

import jobs as job_kinds
from adapters.mail import MemoryMailer
from persistence.accounts.models import User
from services import jobs, reminders, tasks
from services.jobs import JobEngine
from tests.helpers import T0, RecordingQueue  # noqa: F401  (T0: imported from here by the tests)


@pytest.fixture
def mailer() -> MemoryMailer:
    return MemoryMailer()


@pytest.fixture
def engine(queue: RecordingQueue, mailer: MemoryMailer) -> JobEngine:
    """The real kinds (`jobs.discover`), a recording queue, the in-memory mailer, no jitter."""
    return JobEngine(kinds=job_kinds.discover(), queue=queue, mail=mailer, random=lambda: 0.0)


def new_task(new_uow, clock, owner: User, **data: Any) -> uuid.UUID:
    """A committed task of `owner` (title defaults to "water the plants"); its id."""
    with new_uow() as uow:
        task = tasks.create_task(uow=uow, clock=clock, owner_id=owner.id, data={"title": "water the plants", **data})
        return task.id


def new_reminder(new_uow, clock, engine, owner: User, task_id: uuid.UUID, **data: Any) -> uuid.UUID:
    """A committed reminder (its `reminders.fire` job enqueued on `engine`); its id."""
    with new_uow() as uow:
        reminder = reminders.create_reminder(
            uow=uow, clock=clock, engine=engine, owner_id=owner.id, task_id=task_id, data=data
        )
        return reminder.id


def at(moment: datetime) -> str:
    """`moment` as an RFC 3339 string."""
    return moment.isoformat()


def fire_jobs(new_uow, clock, engine) -> list[Any]:
    """Run every delivered `reminders.fire` job once, in delivery order, as a worker would (with
    the engine's clock-independent claim); returns the run reports."""
    reports = []
    for job_id, _ in list(engine.queue.deliveries):
        with new_uow() as uow:
            job = uow.jobs.get(job_id)
        if job is not None and job.kind == reminders.FIRE_KIND:
            reports.append(jobs.run(engine=engine, unit_of_work=new_uow, clock=clock, job_id=job_id, worker_id="w"))
    return reports


def notifications_of(new_uow, owner: User) -> list[Any]:
    with new_uow() as uow:
        return uow.notifications.all_of_owner(owner.id)


def reminder_row(new_uow, reminder_id: uuid.UUID):
    with new_uow() as uow:
        return uow.reminders.get_any(reminder_id)


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)
