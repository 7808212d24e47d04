"""Scheduled backups: `backups.create`, queued by a worker when BACKUP_SCHEDULE names the
current minute (`server/worker.py`, `services.backups.queue_if_due`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from services import backups
from services.jobs import JobKind, JobRun, RetryPolicy


def create(run: JobRun) -> dict[str, Any]:
    """Write a backup into BACKUP_DIR for the scheduled minute in the payload (``slot``) and prune
    to BACKUP_KEEP (`services.backups.scheduled_backup`); idempotent per minute. An engine wired
    without backups (some tests') does nothing."""
    config = run.engine.context.get("backups")
    if not isinstance(config, backups.BackupConfig):
        return {"skipped": True, "archive": None}
    run.checkpoint(0, 1, "backing up")
    result = backups.scheduled_backup(
        config=config, clock=run.clock, slot=datetime.fromisoformat(str(run.payload["slot"]))
    )
    run.checkpoint(1, 1, "done")
    return result


JOB_KINDS = [
    JobKind(
        backups.JOB_KIND,
        create,
        RetryPolicy(max_attempts=2, base_delay_seconds=300, max_delay_seconds=900),
    )
]
