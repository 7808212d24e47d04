"""Maintenance of the service's own data: `maintenance.purge_expired`, queued by every worker
once an hour (`server/worker.py`) unless one is already queued or running: expired records, then
the documents' stored files that nothing names (`services.maintenance.sweep_unreferenced_files`)."""

from __future__ import annotations

from typing import Any

from services import documents, maintenance
from services.jobs import JobKind, JobRun, RetryPolicy


def purge_expired(run: JobRun) -> dict[str, Any]:
    """Delete expired idempotency records and spent password-reset tokens, then stored files no
    document names and stale temporary uploads (older than an hour); the result counts each.
    Idempotent: a second run finds nothing more to delete. An engine wired without the
    documents' configuration (`server.worker.make_job_engine` always gives it) sweeps no files."""
    with run.unit_of_work() as uow:
        purged = maintenance.purge_expired(uow=uow, clock=run.clock)
    run.checkpoint(1, 2, "purged")
    config = run.engine.context.get("documents")
    if not isinstance(config, documents.DocumentConfig):  # an engine wired without documents (some tests')
        return purged
    swept = maintenance.sweep_unreferenced_files(unit_of_work=run.unit_of_work, clock=run.clock, store=config.store)
    run.checkpoint(2, 2, "files swept")
    return {**purged, **swept}


JOB_KINDS = [
    JobKind(
        "maintenance.purge_expired",
        purge_expired,
        RetryPolicy(max_attempts=3, base_delay_seconds=60, max_delay_seconds=900),
    )
]
