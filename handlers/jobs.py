"""Operations of the `jobs` tag: background work and its state (issue 14)."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from handlers.responses import json_answer, timestamp
from server.integration.context import clock, job_engine, principal, unit_of_work
from services import jobs

if TYPE_CHECKING:
    from persistence.jobs.models import Job


def job_representation(job: Job) -> dict[str, Any]:
    """The `Job` schema. Never the job's `payload` (its function's arguments, which may hold
    what the owner must not read back, e.g. a secret a later kind is given)."""
    return {
        "id": str(job.id),
        "kind": job.kind,
        "owner_id": str(job.owner_id) if job.owner_id else None,
        "subject": {"type": job.subject_type, "id": job.subject_id} if job.subject_type and job.subject_id else None,
        "status": job.status,
        "cancel_requested": job.cancel_requested,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "next_attempt_at": timestamp(job.next_attempt_at) if job.status == jobs.JobStatus.QUEUED else None,
        "progress": {"done": job.progress_done, "total": job.progress_total, "message": job.progress_message},
        "result": job.result,
        "error": job.error,
        "created_at": timestamp(job.created_at),
        "started_at": timestamp(job.started_at),
        "finished_at": timestamp(job.finished_at),
    }


def _export_jobs(user_id: uuid.UUID) -> list[dict[str, Any]]:
    return [job_representation(job) for job in jobs.exported_jobs(uow=unit_of_work(), owner_id=user_id)]


EXPORT_SECTIONS = {"jobs": _export_jobs}
"""The caller's jobs in their data export (`handlers.data_export`), as the jobs API answers
them: `job_representation` leaves out the payload."""


def list_jobs(
    limit: int = 20,
    cursor: str | None = None,
    status: list[str] | None = None,
    kind: str | None = None,
    owner_id: str | None = None,
) -> tuple:
    """GET /api/v1/jobs — the caller's jobs (an administrator's: everyone's, or `owner_id`'s)."""
    result = jobs.list_jobs(
        uow=unit_of_work(),
        caller=principal(),
        limit=limit,
        cursor=cursor,
        statuses=status or None,
        kind=kind,
        owner_id=uuid.UUID(owner_id) if owner_id else None,
    )
    return json_answer({"items": [job_representation(job) for job in result.items], "next_cursor": result.next_cursor})


def get_job(job_id: str) -> tuple:
    """GET /api/v1/jobs/{job_id} — another user's job is 404."""
    return json_answer(
        job_representation(jobs.get_job(uow=unit_of_work(), caller=principal(), job_id=uuid.UUID(job_id)))
    )


def cancel_job(job_id: str) -> tuple:
    """POST /api/v1/jobs/{job_id}/cancel — 200 when cancelled at once, 202 when a running job was asked to stop."""
    job = jobs.cancel(uow=unit_of_work(), clock=clock(), caller=principal(), job_id=uuid.UUID(job_id))
    return json_answer(job_representation(job), 200 if job.status == jobs.JobStatus.CANCELLED else 202)


def retry_job(job_id: str) -> tuple:
    """POST /api/v1/jobs/{job_id}/retry — a failed or cancelled job queued again."""
    job = jobs.retry(
        uow=unit_of_work(), clock=clock(), engine=job_engine(), caller=principal(), job_id=uuid.UUID(job_id)
    )
    return json_answer(job_representation(job))
