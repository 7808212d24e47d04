"""Maintenance of the service's own data: `maintenance.purge_expired`, queued by every worker
once an hour (`server/worker.py`) unless one is already queued or running."""

from __future__ import annotations

from typing import Any

from services import maintenance
from services.jobs import JobKind, JobRun, RetryPolicy


def purge_expired(run: JobRun) -> dict[str, Any]:
    """Delete expired idempotency records and spent password-reset tokens; the result counts
    them. Idempotent: a second run finds nothing more to delete."""
    with run.unit_of_work() as uow:
        purged = maintenance.purge_expired(uow=uow, clock=run.clock)
    run.checkpoint(1, 1, "purged")
    return purged


JOB_KINDS = [
    JobKind(
        "maintenance.purge_expired",
        purge_expired,
        RetryPolicy(max_attempts=3, base_delay_seconds=60, max_delay_seconds=900),
    )
]
