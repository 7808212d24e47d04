"""Reads and writes of the analytics tables (issue 18): the flushes' adding upserts, the
rollup's reads of the raw tables (and of `jobs`, read only) and its day-by-day replacement,
the report's reads and the retention's deletes. Administrators' data: no owner filter."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import delete, func, insert, select, text
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from persistence.analytics.models import ActiveUser, DayJobs, DayOperation, DayRollup, LatencyBucket, RequestCount
from persistence.database import affected_rows, hold_write_lock
from persistence.jobs.models import FINISHED_STATUSES, Job

ROLLUP_LOCK_KEY = 0x616E616C79746963  # "analytic"
"""The PostgreSQL advisory lock key that serialises rollups (`lock_rollups`)."""
CHUNK_ROWS = 200
"""Rows per INSERT statement: SQLite allows 32,766 parameters per statement (999 before 3.32)."""


class AnalyticsRepository:
    """The analytics tables within the caller's unit of work."""

    def __init__(self, db: Session) -> None:
        self.db = db

    # --- the flushes ------------------------------------------------------------------------

    def _insert(self) -> Any:
        return postgresql_insert if self.db.get_bind().dialect.name == "postgresql" else sqlite_insert

    def add_requests(self, rows: Iterable[tuple[date, str, int, int, int]]) -> None:
        """Add (day, operation_id, requests, errors_4xx, errors_5xx) to the stored counts:
        ``INSERT … ON CONFLICT (day, operation_id) DO UPDATE SET requests = requests +
        excluded.requests, …`` on either database, so flushes of several processes add up.
        Rows are written in key order (two flushes at once lock rows in the same order)."""
        for chunk in _chunks(sorted(rows)):
            statement = self._insert()(RequestCount).values(
                [
                    {"day": d, "operation_id": o, "requests": n, "errors_4xx": e4, "errors_5xx": e5}
                    for d, o, n, e4, e5 in chunk
                ]
            )
            self.db.execute(
                statement.on_conflict_do_update(
                    index_elements=["day", "operation_id"],
                    set_={
                        "requests": RequestCount.requests + statement.excluded.requests,
                        "errors_4xx": RequestCount.errors_4xx + statement.excluded.errors_4xx,
                        "errors_5xx": RequestCount.errors_5xx + statement.excluded.errors_5xx,
                    },
                )
            )

    def add_latency(self, rows: Iterable[tuple[date, str, int, int]]) -> None:
        """Add (day, operation_id, le_us, count) to the stored histogram buckets (adding
        upsert, in key order, as `add_requests`)."""
        for chunk in _chunks(sorted(rows)):
            statement = self._insert()(LatencyBucket).values(
                [{"day": d, "operation_id": o, "le_us": le, "count": n} for d, o, le, n in chunk]
            )
            self.db.execute(
                statement.on_conflict_do_update(
                    index_elements=["day", "operation_id", "le_us"],
                    set_={"count": LatencyBucket.count + statement.excluded.count},
                )
            )

    def add_active_users(self, rows: Iterable[tuple[date, uuid.UUID]]) -> None:
        """Record (day, user_id) pairs: ``INSERT … ON CONFLICT DO NOTHING``, in key order."""
        for chunk in _chunks(sorted(rows)):
            statement = self._insert()(ActiveUser).values([{"day": d, "user_id": u} for d, u in chunk])
            self.db.execute(statement.on_conflict_do_nothing(index_elements=["day", "user_id"]))

    # --- the rollup -------------------------------------------------------------------------

    def lock_rollups(self) -> None:
        """Keep other rollups out until this unit of work ends, so two at once (two workers
        queued one each) run one after the other instead of colliding on a day's rows: a
        transaction-scoped advisory lock on PostgreSQL, the write lock on SQLite
        (`persistence.database.hold_write_lock`)."""
        if self.db.get_bind().dialect.name == "postgresql":
            self.db.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ROLLUP_LOCK_KEY})
        else:
            hold_write_lock(self.db)

    def request_counts(self, day: date) -> list[tuple[str, int, int, int]]:
        """(operation_id, requests, errors_4xx, errors_5xx) of `day`, by operation_id."""
        rows = self.db.execute(
            select(RequestCount.operation_id, RequestCount.requests, RequestCount.errors_4xx, RequestCount.errors_5xx)
            .where(RequestCount.day == day)
            .order_by(RequestCount.operation_id)
        )
        return [(o, n, e4, e5) for o, n, e4, e5 in rows]

    def latency_buckets(self, day: date) -> list[tuple[str, int, int]]:
        """(operation_id, le_us, count) of `day`'s finite buckets with a count, by operation and bound."""
        rows = self.db.execute(
            select(LatencyBucket.operation_id, LatencyBucket.le_us, LatencyBucket.count)
            .where(LatencyBucket.day == day)
            .order_by(LatencyBucket.operation_id, LatencyBucket.le_us)
        )
        return [(o, le, n) for o, le, n in rows]

    def active_user_count(self, day: date) -> int:
        """Distinct users recorded as active on `day`."""
        return self.db.scalar(select(func.count()).select_from(ActiveUser).where(ActiveUser.day == day)) or 0

    def finished_jobs(self, start: datetime, end: datetime) -> list[tuple[str, str, int]]:
        """(kind, status, count) of the jobs whose `finished_at` is in [start, end) and whose
        status is a finished one (succeeded, failed, cancelled), by kind and status."""
        rows = self.db.execute(
            select(Job.kind, Job.status, func.count())
            .where(Job.finished_at >= start, Job.finished_at < end, Job.status.in_(FINISHED_STATUSES))
            .group_by(Job.kind, Job.status)
            .order_by(Job.kind, Job.status)
        )
        return [(kind, status, count) for kind, status, count in rows]

    def days_without_rollup(self, *, since: date) -> list[date]:
        """Days from `since` on that have request counts but no rollup (the rollup job did not
        run on them, e.g. no worker ran that day and the next), oldest first."""
        rolled = select(DayRollup.day).where(DayRollup.day == RequestCount.day).exists()
        return list(
            self.db.scalars(
                select(RequestCount.day).where(RequestCount.day >= since, ~rolled).distinct().order_by(RequestCount.day)
            )
        )

    def replace_rollup(
        self,
        *,
        day: date,
        active_users: int,
        rolled_up_at: datetime,
        operations: Sequence[tuple[str, int, int, int, int | None]],
        jobs: Sequence[tuple[str, str, int]],
    ) -> None:
        """Replace `day`'s rollup: its active users, (operation_id, requests, errors_4xx,
        errors_5xx, p95_us) per operation and (kind, outcome, count) per kind and outcome."""
        for table in (DayRollup, DayOperation, DayJobs):
            self.db.execute(delete(table).where(table.day == day))
        self.db.execute(insert(DayRollup).values(day=day, active_users=active_users, rolled_up_at=rolled_up_at))
        for chunk in _chunks(list(operations)):
            self.db.execute(
                insert(DayOperation).values(
                    [
                        {"day": day, "operation_id": o, "requests": n, "errors_4xx": e4, "errors_5xx": e5}
                        | {"p95_us": p95}
                        for o, n, e4, e5, p95 in chunk
                    ]
                )
            )
        for chunk in _chunks(list(jobs)):
            self.db.execute(
                insert(DayJobs).values([{"day": day, "kind": k, "outcome": out, "count": n} for k, out, n in chunk])
            )

    # --- the report -------------------------------------------------------------------------

    def rollups(self, *, since: date, until: date) -> list[DayRollup]:
        """The days rolled up from `since` to `until` (both included), oldest first."""
        return list(
            self.db.scalars(
                select(DayRollup).where(DayRollup.day >= since, DayRollup.day <= until).order_by(DayRollup.day)
            )
        )

    def rollup_operations(self, *, since: date, until: date) -> list[DayOperation]:
        """Every operation row of the days from `since` to `until`, by day and operation_id."""
        return list(
            self.db.scalars(
                select(DayOperation)
                .where(DayOperation.day >= since, DayOperation.day <= until)
                .order_by(DayOperation.day, DayOperation.operation_id)
            )
        )

    def rollup_jobs(self, *, since: date, until: date) -> list[DayJobs]:
        """Every job row of the days from `since` to `until`, by day, kind and outcome."""
        return list(
            self.db.scalars(
                select(DayJobs)
                .where(DayJobs.day >= since, DayJobs.day <= until)
                .order_by(DayJobs.day, DayJobs.kind, DayJobs.outcome)
            )
        )

    # --- retention --------------------------------------------------------------------------

    def prune(self, *, before: date) -> int:
        """Delete the raw counts and the rollups of days before `before`; returns the rows deleted."""
        deleted = 0
        for table in (RequestCount, LatencyBucket, ActiveUser, DayRollup, DayOperation, DayJobs):
            deleted += affected_rows(self.db.execute(delete(table).where(table.day < before)))
        return deleted

    def prune_active_users(self, *, before: date) -> int:
        """Delete the active-user records of days before `before`; returns how many."""
        return affected_rows(self.db.execute(delete(ActiveUser).where(ActiveUser.day < before)))


def _chunks(rows: list[Any]) -> Iterable[list[Any]]:
    for start in range(0, len(rows), CHUNK_ROWS):
        yield rows[start : start + CHUNK_ROWS]
