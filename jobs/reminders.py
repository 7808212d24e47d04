"""Reminders (issue 14): `reminders.fire`, due at a reminder's time, fires it once;
`reminders.email` mails a fired reminder, retried with backoff while the mail server fails."""

from __future__ import annotations

import uuid
from typing import Any

from services import reminders
from services.jobs import JobKind, JobRun, RetryPolicy


def fire(run: JobRun) -> dict[str, Any]:
    """Fire the reminder of the payload if it is still due (`services.reminders.fire`); the
    result says whether this attempt fired it. Idempotent: the claim fires it at most once."""
    with run.unit_of_work() as uow:
        fired = reminders.fire(
            uow=uow, clock=run.clock, engine=run.engine, reminder_id=uuid.UUID(run.payload["reminder_id"])
        )
    return {"fired": fired}


def email(run: JobRun) -> dict[str, Any]:
    """Mail the fired reminder of the payload (`services.reminders.send_email`); a mail server
    error fails the attempt and the retry policy tries again."""
    with run.unit_of_work() as uow:
        sent = reminders.send_email(uow=uow, engine=run.engine, reminder_id=uuid.UUID(run.payload["reminder_id"]))
    return {"sent": sent}


JOB_KINDS = [
    JobKind(reminders.FIRE_KIND, fire, RetryPolicy(max_attempts=5, base_delay_seconds=1, max_delay_seconds=30)),
    JobKind(reminders.EMAIL_KIND, email, RetryPolicy(max_attempts=6, base_delay_seconds=30, max_delay_seconds=1800)),
]
