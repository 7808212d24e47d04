"""Usage analytics for administrators (issue 18): requests, 4xx and 5xx answers and p95 latency
per operation per day, active users per day, and jobs per kind and outcome per day.

How the figures are made, so that a request pays for no more than a dict update under a lock:

1. **In memory, per process** (`RequestStats`): the edge's access log (`server.edge.access_log`,
   which also feeds Prometheus) calls `RequestStats.record` once per answered request. It adds
   one to the (UTC day, operationId) row's request count, to its 4xx or 5xx count, and to one
   bucket of its fixed latency histogram (`LATENCY_BOUNDS_US`), and adds (day, user id) to a set
   when the request was authenticated. Nothing is written to the database per request.
2. **Flushed by adding** (`flush`): every ANALYTICS_FLUSH_SECONDS a thread of each API process
   (and its shutdown) swaps the accumulator for an empty one and adds the counts to the raw
   tables with ``INSERT … ON CONFLICT DO UPDATE SET n = n + excluded.n`` (the user ids with
   ``ON CONFLICT DO NOTHING``), so the processes of `charter serve --workers N` and of every
   machine add up. A failed flush puts its counts back for the next one; the accumulator is
   bounded (`MAX_PENDING_ROWS`, `MAX_PENDING_USERS`: what does not fit is dropped and counted).
3. **Rolled up daily** (`roll_up`, the `analytics.rollup` job, queued by every worker each
   ANALYTICS_ROLLUP_INTERVAL_SECONDS): recomputes today and yesterday (and any day with counts
   but no rollup yet, e.g. after the workers were down), idempotently: a day's rollup is
   replaced whole. p95 comes from the histogram (`quantile`), active users are the day's
   distinct recorded user ids, jobs are counted by `jobs.finished_at`.
4. **Served from the rollups** (`report`): the endpoint reads only the rollup tables.

Retention (ANALYTICS_RETENTION_DAYS): the raw counts and the rollups of older days are deleted
by the rollup job; the per-user records, which only the rollup needs, are deleted as soon as
their day can no longer be recomputed (older than yesterday).
"""

from __future__ import annotations

import threading
import time
import uuid
from bisect import bisect_left
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from persistence.unit_of_work import UnitOfWork
from services.clock import Clock
from services.errors import InvalidInput

LATENCY_BOUNDS_US: tuple[int, ...] = (
    500,
    1_000,
    1_500,
    2_000,
    3_000,
    4_000,
    5_000,
    7_500,
    10_000,
    15_000,
    20_000,
    30_000,
    50_000,
    75_000,
    100_000,
    150_000,
    250_000,
    500_000,
    750_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    30_000_000,
)
"""The latency histogram's finite bucket bounds, in microseconds, ascending. A request that took
d lands in the first bucket whose bound is at least d (Prometheus' ``le``); slower than the last
bound: the +Inf bucket. Changing them is safe: stored buckets carry their bound."""

_BOUNDS_SECONDS = tuple(bound / 1_000_000 for bound in LATENCY_BOUNDS_US)
_FIRST_BUCKET = 3
"""A pending row is [requests, errors_4xx, errors_5xx, bucket 0, …, bucket n-1, +Inf bucket]."""
_ROW_WIDTH = _FIRST_BUCKET + len(LATENCY_BOUNDS_US) + 1
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()

MAX_PENDING_ROWS = 50_000
"""(day, operationId) rows kept per process between flushes at most; about 150 a day (one per
operation answered), so this only bites after weeks of failed flushes."""
MAX_PENDING_USERS = 100_000
"""(day, user id) pairs kept per process between flushes at most."""
MAX_RANGE_DAYS = 366
"""The most days one report covers (`since` to `until`, both included)."""
DEFAULT_RANGE_DAYS = 30
"""Days a report covers when `since` is not given (ending at `until`)."""
QUANTILE = 0.95
JOB_OUTCOMES = ("succeeded", "failed", "cancelled")
"""The finished job statuses a day's jobs are counted by (`persistence.jobs.models.FINISHED_STATUSES`)."""


def day_of(epoch_seconds: float) -> date:
    """The UTC date of a Unix time."""
    return date.fromordinal(_EPOCH_ORDINAL + int(epoch_seconds // 86_400))


class RequestStats:
    """A process's request counts, latency histograms and active users since the last flush.

    Thread-safe: `record` runs on the server's event loop, `take` and `put_back` on the flush
    thread. Per request: one `time.time()`, one bisect over `LATENCY_BOUNDS_US`, then under an
    uncontended lock one dict lookup, three list increments and, for an authenticated request,
    one set insertion.

    Args:
        now: the Unix time (seconds) that dates a request; `time.time` unless a test passes one.
        max_rows: `MAX_PENDING_ROWS` unless a test passes a smaller one.
        max_users: `MAX_PENDING_USERS` unless a test passes a smaller one.
    """

    def __init__(
        self,
        *,
        now: Callable[[], float] = time.time,
        max_rows: int = MAX_PENDING_ROWS,
        max_users: int = MAX_PENDING_USERS,
    ) -> None:
        self._now = now
        self._lock = threading.Lock()
        self._rows: dict[tuple[int, str], list[int]] = {}
        self._users: set[tuple[int, str]] = set()
        self.max_rows = max_rows
        self.max_users = max_users
        self.dropped_requests = 0
        """Requests not counted because `max_rows` rows were pending (since the start)."""
        self.dropped_users = 0
        """Active-user records not kept because `max_users` were pending (since the start)."""

    def record(self, operation_id: str, status: int, seconds: float, user_id: str | None) -> None:
        """Count one answered request: its operationId (``unmatched`` when it has none), its
        HTTP status, the `seconds` it took and its authenticated user's id (None: anonymous)."""
        day = int(self._now() // 86_400)
        bucket = _FIRST_BUCKET + bisect_left(_BOUNDS_SECONDS, seconds)
        with self._lock:
            row = self._rows.get((day, operation_id))
            if row is None:
                if len(self._rows) >= self.max_rows:
                    self.dropped_requests += 1
                    return
                row = self._rows[day, operation_id] = [0] * _ROW_WIDTH
            row[0] += 1
            if status >= 500:
                row[2] += 1
            elif status >= 400:
                row[1] += 1
            row[bucket] += 1
            if user_id is not None:
                if len(self._users) < self.max_users:
                    self._users.add((day, user_id))
                elif (day, user_id) not in self._users:
                    self.dropped_users += 1

    def pending(self) -> tuple[int, int]:
        """(requests, active-user records) waiting for the next flush."""
        with self._lock:
            return sum(row[0] for row in self._rows.values()), len(self._users)

    def take(self) -> PendingStats:
        """Everything recorded since the last `take`; the accumulator starts empty again."""
        with self._lock:
            rows, users = self._rows, self._users
            self._rows, self._users = {}, set()
        return PendingStats(rows, users)

    def put_back(self, pending: PendingStats) -> None:
        """Add what a failed flush `take`-d back to what was recorded since (within the bounds)."""
        with self._lock:
            for key, counts in pending.rows.items():
                row = self._rows.get(key)
                if row is None:
                    if len(self._rows) >= self.max_rows:
                        self.dropped_requests += counts[0]
                        continue
                    self._rows[key] = counts
                else:
                    for index, count in enumerate(counts):
                        row[index] += count
            for pair in pending.users:
                if len(self._users) < self.max_users:
                    self._users.add(pair)
                elif pair not in self._users:
                    self.dropped_users += 1


@dataclass
class PendingStats:
    """What one flush writes: rows by (epoch day number, operationId) and (day number, user id)
    pairs, as `RequestStats` keeps them."""

    rows: dict[tuple[int, str], list[int]] = field(default_factory=dict)
    users: set[tuple[int, str]] = field(default_factory=set)

    def request_rows(self) -> list[tuple[date, str, int, int, int]]:
        """(day, operation_id, requests, errors_4xx, errors_5xx) per row."""
        return [(_day(day), op, row[0], row[1], row[2]) for (day, op), row in self.rows.items()]

    def latency_rows(self) -> list[tuple[date, str, int, int]]:
        """(day, operation_id, le_us, count) per finite bucket with a count (the +Inf bucket is
        the requests less these, as Prometheus' ``_count``)."""
        return [
            (_day(day), op, bound, row[_FIRST_BUCKET + index])
            for (day, op), row in self.rows.items()
            for index, bound in enumerate(LATENCY_BOUNDS_US)
            if row[_FIRST_BUCKET + index]
        ]

    def user_rows(self) -> list[tuple[date, uuid.UUID]]:
        """(day, user id) per pair; an id that is not a UUID is skipped."""
        rows = []
        for day, user_id in self.users:
            try:
                rows.append((_day(day), uuid.UUID(user_id)))
            except ValueError:
                continue
        return rows


def _day(number: int) -> date:
    return date.fromordinal(_EPOCH_ORDINAL + number)


@dataclass(frozen=True)
class FlushReport:
    """What a flush wrote: requests counted, (day, operation) rows, active-user records."""

    requests: int
    rows: int
    users: int


def flush(*, unit_of_work: Callable[[], UnitOfWork], stats: RequestStats) -> FlushReport:
    """Add what `stats` recorded since the last flush to the raw tables, in one transaction of
    its own: request counts and histogram buckets by adding upserts, active users inserted if
    absent. Nothing recorded: no database access at all.

    Raises:
        whatever the database raises (e.g. ``sqlalchemy.exc.OperationalError``); the counts are
        then back in `stats` for the next flush (`RequestStats.put_back`).
    """
    pending = stats.take()
    if not pending.rows and not pending.users:
        return FlushReport(0, 0, 0)
    try:
        with unit_of_work() as uow:
            uow.analytics.add_requests(pending.request_rows())
            uow.analytics.add_latency(pending.latency_rows())
            uow.analytics.add_active_users(pending.user_rows())
    except BaseException:
        stats.put_back(pending)
        raise
    return FlushReport(sum(row[0] for row in pending.rows.values()), len(pending.rows), len(pending.users))


def quantile(q: float, buckets: Iterable[tuple[int, int]], total: int) -> float | None:
    """The `q` quantile of a histogram, as Prometheus' ``histogram_quantile`` computes it.

    The rank is ``q * total``; the answer lies in the first bucket whose cumulative count
    reaches the rank, interpolated linearly between that bucket's lower bound (the previous
    bucket's bound; 0 for the first) and its upper bound: ``lower + (upper - lower) *
    (rank - count below) / bucket count``. When the rank falls in the +Inf bucket the answer is
    the highest finite bound. None for an empty histogram.

    Args:
        q: the quantile, in [0, 1].
        buckets: (upper bound, count in the bucket, not cumulative) per finite bucket; bounds of
            `LATENCY_BOUNDS_US` that are missing count zero.
        total: the observations in all, the +Inf bucket included.
    """
    if total <= 0:
        return None
    counts: dict[int, int] = dict.fromkeys(LATENCY_BOUNDS_US, 0)
    for bound, count in buckets:
        counts[bound] = counts.get(bound, 0) + count
    rank = q * total
    below = 0
    lower = 0
    for upper in sorted(counts):
        count = counts[upper]
        if count and below + count >= rank:
            return lower + (upper - lower) * (rank - below) / count
        below += count
        lower = upper
    return float(lower)


@dataclass(frozen=True)
class AnalyticsConfig:
    """What the rollup job needs from the wiring.

    Attributes:
        retention_days: ANALYTICS_RETENTION_DAYS: raw counts and rollups of days more than this
            many days before today are deleted.
    """

    retention_days: int = 400


def roll_up(*, uow: UnitOfWork, clock: Clock, retention_days: int) -> dict[str, Any]:
    """Recompute the rollup of today and yesterday (UTC), and of every day within the retention
    that has request counts but no rollup; then delete what is past the retention, and the
    active-user records older than yesterday. Idempotent: a day's rollup is replaced whole.

    A day's rollup: per operationId its requests, 4xx and 5xx answers and p95 latency
    (`quantile` of its histogram, in whole microseconds); the distinct users recorded as
    active; per job kind, the jobs whose `finished_at` is in that day by outcome (the status they
    have now: a failed job retried since counts as its new outcome when its day is recomputed).
    Rollups running at once take turns (`lock_rollups`).

    Returns ``{"days": [ISO dates recomputed], "pruned_rows": n, "pruned_active_users": m}``.
    """
    uow.analytics.lock_rollups()
    now = clock.now()
    today = now.astimezone(UTC).date()
    yesterday = today - timedelta(days=1)
    oldest = today - timedelta(days=retention_days)
    days = {today, yesterday} | {day for day in uow.analytics.days_without_rollup(since=oldest) if day <= today}
    for day in sorted(days):
        latency: dict[str, list[tuple[int, int]]] = {}
        for operation_id, bound, count in uow.analytics.latency_buckets(day):
            latency.setdefault(operation_id, []).append((bound, count))
        operations = []
        for operation_id, requests, errors_4xx, errors_5xx in uow.analytics.request_counts(day):
            p95 = quantile(QUANTILE, latency.get(operation_id, []), requests)
            operations.append((operation_id, requests, errors_4xx, errors_5xx, None if p95 is None else round(p95)))
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        uow.analytics.replace_rollup(
            day=day,
            active_users=uow.analytics.active_user_count(day),
            rolled_up_at=now,
            operations=operations,
            jobs=uow.analytics.finished_jobs(start, start + timedelta(days=1)),
        )
    return {
        "days": [day.isoformat() for day in sorted(days)],
        "pruned_rows": uow.analytics.prune(before=oldest),
        "pruned_active_users": uow.analytics.prune_active_users(before=yesterday),
    }


@dataclass(frozen=True)
class OperationDay:
    """One operation's figures on a day; `p95_ms` None when it has no latency data."""

    operation_id: str
    requests: int
    errors_4xx: int
    errors_5xx: int
    p95_ms: float | None


@dataclass(frozen=True)
class JobsDay:
    """One job kind's jobs finished on a day, by outcome."""

    kind: str
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0


@dataclass(frozen=True)
class DayReport:
    """A rolled-up day: totals over its operations, active users, per-operation and per-kind
    figures, and when it was rolled up."""

    day: date
    requests: int
    errors_4xx: int
    errors_5xx: int
    active_users: int
    rolled_up_at: datetime
    operations: list[OperationDay]
    jobs: list[JobsDay]


@dataclass(frozen=True)
class AnalyticsReport:
    """The days from `since` to `until` (both included) that have a rollup, oldest first (a day
    without one is absent: nothing was recorded or the rollup job has not run on it yet)."""

    since: date
    until: date
    days: list[DayReport]


def report(*, uow: UnitOfWork, clock: Clock, since: str | None, until: str | None) -> AnalyticsReport:
    """The usage analytics of the days from `since` to `until` (ISO dates, both included; UTC
    days), read from the rollups only. `until` defaults to today, `since` to the
    `DEFAULT_RANGE_DAYS` days ending at `until`. For administrators (the contract's x-access).

    Raises:
        InvalidInput: a date that is not ``YYYY-MM-DD``, `since` after `until`, or more than
            `MAX_RANGE_DAYS` days (issue 18: the range is bounded).
    """
    last = _parse_day(until, "until") if until else clock.now().astimezone(UTC).date()
    if since:
        first = _parse_day(since, "since")
    else:
        first = date.fromordinal(max(1, last.toordinal() - (DEFAULT_RANGE_DAYS - 1)))  # from 0001-01-01 at the earliest
    if first > last:
        raise InvalidInput("since must not be after until.", parameter="since")
    if (last - first).days + 1 > MAX_RANGE_DAYS:
        raise InvalidInput(f"A report covers at most {MAX_RANGE_DAYS} days (since to until).", parameter="since")
    operations: dict[date, list[OperationDay]] = {}
    for row in uow.analytics.rollup_operations(since=first, until=last):
        operations.setdefault(row.day, []).append(
            OperationDay(
                operation_id=row.operation_id,
                requests=row.requests,
                errors_4xx=row.errors_4xx,
                errors_5xx=row.errors_5xx,
                p95_ms=None if row.p95_us is None else row.p95_us / 1000,
            )
        )
    jobs: dict[date, dict[str, dict[str, int]]] = {}
    for job_row in uow.analytics.rollup_jobs(since=first, until=last):
        if job_row.outcome in JOB_OUTCOMES:
            jobs.setdefault(job_row.day, {}).setdefault(job_row.kind, {})[job_row.outcome] = job_row.count
    days = []
    for rollup in uow.analytics.rollups(since=first, until=last):
        of_day = operations.get(rollup.day, [])
        days.append(
            DayReport(
                day=rollup.day,
                requests=sum(op.requests for op in of_day),
                errors_4xx=sum(op.errors_4xx for op in of_day),
                errors_5xx=sum(op.errors_5xx for op in of_day),
                active_users=rollup.active_users,
                rolled_up_at=rollup.rolled_up_at,
                operations=of_day,
                jobs=[JobsDay(kind=kind, **outcomes) for kind, outcomes in sorted(jobs.get(rollup.day, {}).items())],
            )
        )
    return AnalyticsReport(since=first, until=last, days=days)


def _parse_day(value: str, parameter: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError as error:
        raise InvalidInput(f"{parameter} must be a date, YYYY-MM-DD.", parameter=parameter) from error
