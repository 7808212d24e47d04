"""Reads and writes of `jobs`. Every change of a job's status is one conditional UPDATE (the
row changes only if it is still in the state the change expects), so two workers never both
claim a job and a worker that lost its lease cannot write an outcome over the next attempt's."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, exists, func, select, tuple_, update
from sqlalchemy.orm import Session

from persistence.database import affected_rows, for_update
from persistence.jobs.models import Job

ANY_OWNER = object()
"""`list_page(owner_id=ANY_OWNER)`: every owner's jobs (administrators)."""


class JobRepository:
    """`jobs` within the caller's unit of work."""

    def __init__(self, db: Session) -> None:
        self.db = db

    def add(self, job: Job) -> None:
        """Stage a new job (written at the next flush or commit)."""
        self.db.add(job)
        self.db.flush()

    def get(self, job_id: uuid.UUID) -> Job | None:
        """The job, or None."""
        return self.db.get(Job, job_id, populate_existing=True)

    def get_for_change(self, job_id: uuid.UUID) -> Job | None:
        """The job read locked until the unit of work ends (`persistence.database.for_update`)."""
        return self.db.scalars(for_update(self.db, select(Job).where(Job.id == job_id))).one_or_none()

    def list_page(
        self,
        *,
        limit: int,
        owner_id: uuid.UUID | object,
        before: tuple[datetime, uuid.UUID] | None = None,
        statuses: list[str] | None = None,
        kind: str | None = None,
    ) -> list[Job]:
        """Up to `limit` jobs, newest first (created_at, id descending).

        Args:
            owner_id: only this owner's jobs, or `ANY_OWNER`.
            before: the (created_at, id) position of the previous page's last job.
            statuses, kind: filters (None: any).
        """
        statement = select(Job)
        if owner_id is not ANY_OWNER:
            statement = statement.where(Job.owner_id == owner_id)
        if statuses:
            statement = statement.where(Job.status.in_(statuses))
        if kind is not None:
            statement = statement.where(Job.kind == kind)
        if before is not None:
            statement = statement.where(tuple_(Job.created_at, Job.id) < tuple_(*before))
        return list(self.db.scalars(statement.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit)))

    def all_of_owner(self, owner_id: uuid.UUID) -> list[Job]:
        """Every job of the owner, whatever its status, oldest first (created_at, id): the data
        export. The service's own jobs (no owner) are nobody's."""
        return list(self.db.scalars(select(Job).where(Job.owner_id == owner_id).order_by(Job.created_at, Job.id)))

    def change_if(self, job_id: uuid.UUID, *conditions: ColumnElement[bool], **values: Any) -> bool:
        """``UPDATE jobs SET values WHERE id = job_id AND conditions``: True when the row matched.

        The condition is checked by the database as it writes (PostgreSQL re-checks it on the
        latest committed row after waiting for a concurrent writer; SQLite has one writer at a
        time), so of concurrent changes expecting the same state exactly one succeeds.
        """
        result = self.db.execute(
            update(Job)
            .where(Job.id == job_id, *conditions)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        return affected_rows(result) == 1

    def claim(self, job_id: uuid.UUID, *, now: datetime, worker_id: str, lease_until: datetime) -> bool:
        """queued → running for this worker, one more attempt, leased until `lease_until`; only if
        the job is queued, not asked to stop, and due (`next_attempt_at` ≤ `now`)."""
        return self.change_if(
            job_id,
            Job.status == "queued",
            Job.cancel_requested.is_(False),
            Job.next_attempt_at <= now,
            status="running",
            attempts=Job.attempts + 1,
            started_at=now,
            worker_id=worker_id,
            lease_expires_at=lease_until,
        )

    def change_attempt(
        self,
        job_id: uuid.UUID,
        *,
        held_by: str,
        attempt: int,
        lease_expired_before: datetime | None = None,
        **values: Any,
    ) -> bool:
        """`change_if` the job is running the `attempt` of the worker `held_by` (worker id and attempt number are
        the fencing token: a worker whose lease was taken away writes nothing) and, with
        `lease_expired_before`, its lease ended before that instant."""
        conditions = [Job.status == "running", Job.worker_id == held_by, Job.attempts == attempt]
        if lease_expired_before is not None:
            conditions.append(Job.lease_expires_at < lease_expired_before)
        return self.change_if(job_id, *conditions, **values)

    def expired_leases(self, *, now: datetime, limit: int) -> list[Job]:
        """Up to `limit` running jobs whose lease ended before `now`, oldest lease first."""
        return list(
            self.db.scalars(
                select(Job)
                .where(Job.status == "running", Job.lease_expires_at < now)
                .order_by(Job.lease_expires_at)
                .limit(limit)
            )
        )

    def overdue(self, *, due_before: datetime, limit: int) -> list[uuid.UUID]:
        """Up to `limit` queued jobs that were due before `due_before` (a delivery that was lost)."""
        return list(
            self.db.scalars(
                select(Job.id)
                .where(Job.status == "queued", Job.next_attempt_at < due_before)
                .order_by(Job.next_attempt_at)
                .limit(limit)
            )
        )

    def pending_of_kind(self, kind: str) -> bool:
        """Whether a job of `kind` is queued or running."""
        return bool(self.db.scalar(select(exists().where(Job.kind == kind, Job.status.in_(("queued", "running"))))))

    def queue_statistics(self, *, now: datetime) -> tuple[dict[tuple[str, str], int], datetime | None]:
        """How many jobs are queued and running now, by (kind, status), and when the oldest
        queued job that is due (`next_attempt_at` at or before `now`) became due, or None.
        Two aggregate queries on the status indexes (what `/metrics` asks at each scrape)."""
        counts = self.db.execute(
            select(Job.kind, Job.status, func.count())
            .where(Job.status.in_(("queued", "running")))
            .group_by(Job.kind, Job.status)
        )
        oldest = self.db.scalar(
            select(func.min(Job.next_attempt_at)).where(Job.status == "queued", Job.next_attempt_at <= now)
        )
        return {(kind, status): int(count) for kind, status, count in counts}, oldest
