"""Flushes and rollups on the session's database, SQLite or PostgreSQL (issue 18): flushes of
several processes add up exactly, also at the same instant; a failed flush keeps its counts;
the rollup's p95, active users and jobs by kind and outcome; idempotence, backfill, retention.

Each test dates its requests on days of its own (in 2025, away from the session's real ones)."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from persistence.analytics.models import ActiveUser, DayRollup, LatencyBucket, RequestCount
from persistence.jobs.models import Job
from services import analytics
from services.clock import FrozenClock


def _at(day: date, hour: int = 12) -> float:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC).timestamp()


def _stats(day: date) -> analytics.RequestStats:
    return analytics.RequestStats(now=lambda: _at(day))


def _requests(new_uow, day: date) -> dict[str, tuple[int, int, int]]:
    with new_uow() as uow:
        rows = uow.session.execute(select(RequestCount).where(RequestCount.day == day)).scalars()
        return {row.operation_id: (row.requests, row.errors_4xx, row.errors_5xx) for row in rows}


def _buckets(new_uow, day: date, operation_id: str) -> list[tuple[int, int]]:
    with new_uow() as uow:
        rows = uow.session.execute(
            select(LatencyBucket.le_us, LatencyBucket.count)
            .where(LatencyBucket.day == day, LatencyBucket.operation_id == operation_id)
            .order_by(LatencyBucket.le_us)
        )
        return [(le, count) for le, count in rows]


def test_two_processes_flushes_add_up_exactly(new_uow):
    day = date(2025, 2, 10)
    users = [uuid.uuid4() for _ in range(3)]
    first, second = _stats(day), _stats(day)
    for _ in range(7):
        first.record("listTasks", 200, 0.0012, str(users[0]))
    first.record("listTasks", 404, 0.004, str(users[1]))
    for _ in range(5):
        second.record("listTasks", 500, 0.0012, str(users[1]))
    second.record("createTask", 201, 0.02, str(users[2]))
    for stats in (first, second):
        report = analytics.flush(unit_of_work=new_uow, stats=stats)
        assert report.requests in (8, 6)
    first.record("listTasks", 200, 0.0012, str(users[0]))  # a second flush of the same process adds again
    analytics.flush(unit_of_work=new_uow, stats=first)
    assert _requests(new_uow, day) == {"listTasks": (14, 1, 5), "createTask": (1, 0, 0)}
    assert _buckets(new_uow, day, "listTasks") == [(1_500, 13), (4_000, 1)]
    with new_uow() as uow:
        assert uow.analytics.active_user_count(day) == 3  # user 1 came through both processes: once


def test_flushes_at_the_same_instant_add_up_exactly(new_uow):
    day = date(2025, 2, 11)
    processes = [_stats(day) for _ in range(4)]
    for index, stats in enumerate(processes):
        for _ in range(100 + index):
            stats.record("listTasks", 200, 0.002, None)
            stats.record("getTask", 404, 0.002, None)
    start = threading.Barrier(len(processes))
    errors: list[BaseException] = []

    def flush(stats: analytics.RequestStats) -> None:
        start.wait(timeout=10)
        try:
            analytics.flush(unit_of_work=new_uow, stats=stats)
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=flush, args=(stats,)) for stats in processes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert _requests(new_uow, day) == {"listTasks": (406, 0, 0), "getTask": (406, 406, 0)}
    assert _buckets(new_uow, day, "getTask") == [(2_000, 406)]


def test_a_failed_flush_keeps_its_counts_for_the_next(new_uow):
    day = date(2025, 2, 12)
    stats = _stats(day)
    stats.record("listTasks", 200, 0.002, None)

    def broken():
        raise OperationalError("INSERT", {}, Exception("database is gone"))

    with pytest.raises(OperationalError):
        analytics.flush(unit_of_work=broken, stats=stats)
    stats.record("listTasks", 200, 0.002, None)
    assert stats.pending() == (2, 0)
    analytics.flush(unit_of_work=new_uow, stats=stats)
    assert _requests(new_uow, day) == {"listTasks": (2, 0, 0)}
    assert analytics.flush(unit_of_work=broken, stats=stats).requests == 0  # nothing pending: no database


def _job(day: date, kind: str, status: str, *, hour: int = 10) -> Job:
    at = datetime(day.year, day.month, day.day, hour, tzinfo=UTC)
    finished = status in ("succeeded", "failed", "cancelled")
    return Job(
        id=uuid.uuid4(),
        kind=kind,
        owner_id=None,
        status=status,
        cancel_requested=False,
        attempts=1,
        max_attempts=3,
        payload={},
        progress_done=0,
        created_at=at - timedelta(minutes=5),
        finished_at=at if finished else None,
    )


def test_the_rollup_makes_each_days_figures(new_uow):
    today = date(2025, 3, 20)
    yesterday = today - timedelta(days=1)
    stats = analytics.RequestStats(now=lambda: _at(yesterday))
    users = [uuid.uuid4() for _ in range(3)]
    for index in range(50):
        stats.record("listTasks", 200, 0.0008, str(users[index % 3]))  # (0.5, 1] ms
    for _ in range(40):
        stats.record("listTasks", 400, 0.0018, str(users[0]))  # (1.5, 2] ms
    for _ in range(10):
        stats.record("listTasks", 502, 0.0025, None)  # (2, 3] ms
    stats.record("unmatched", 404, 45.0, None)  # beyond 30 s
    analytics.flush(unit_of_work=new_uow, stats=stats)
    with new_uow() as uow:
        uow.session.add_all(
            [
                _job(yesterday, "analytics.test_a", "succeeded"),
                _job(yesterday, "analytics.test_a", "succeeded", hour=23),
                _job(yesterday, "analytics.test_a", "failed"),
                _job(yesterday, "analytics.test_b", "cancelled"),
                _job(yesterday, "analytics.test_b", "running"),  # not finished: not counted
                _job(today, "analytics.test_a", "succeeded", hour=0),  # today's, not yesterday's
            ]
        )
    clock = FrozenClock(datetime(today.year, today.month, today.day, 0, 30, tzinfo=UTC))
    with new_uow() as uow:
        result = analytics.roll_up(uow=uow, clock=clock, retention_days=400)
    assert {yesterday.isoformat(), today.isoformat()} <= set(result["days"])
    with new_uow() as uow:
        got = analytics.report(uow=uow, clock=clock, since=yesterday.isoformat(), until=today.isoformat())
    first = got.days[0]
    assert (first.day, first.requests, first.errors_4xx, first.errors_5xx, first.active_users) == (
        yesterday,
        101,
        41,
        10,
        3,
    )
    assert [(op.operation_id, op.requests, op.errors_4xx, op.errors_5xx, op.p95_ms) for op in first.operations] == [
        ("listTasks", 100, 40, 10, 2.5),  # 2000 + 1000 * (95 - 90) / 10 µs
        ("unmatched", 1, 1, 0, 30_000.0),  # in the +Inf bucket: the highest finite bound
    ]
    assert first.jobs == [
        analytics.JobsDay(kind="analytics.test_a", succeeded=2, failed=1, cancelled=0),
        analytics.JobsDay(kind="analytics.test_b", succeeded=0, failed=0, cancelled=1),
    ]
    assert first.rolled_up_at == clock.now()
    assert [job.kind for job in got.days[1].jobs if job.kind.startswith("analytics.test")] == ["analytics.test_a"]


def test_the_rollup_is_idempotent_and_sees_later_flushes(new_uow):
    today = date(2025, 4, 2)
    stats = analytics.RequestStats(now=lambda: _at(today, 1))
    stats.record("listTasks", 200, 0.001, None)
    analytics.flush(unit_of_work=new_uow, stats=stats)
    clock = FrozenClock(datetime(2025, 4, 2, 2, tzinfo=UTC))
    for _ in range(2):
        with new_uow() as uow:
            analytics.roll_up(uow=uow, clock=clock, retention_days=400)
    with new_uow() as uow:
        last = analytics.report(uow=uow, clock=clock, since=None, until=None).days[-1]
    assert [op.requests for op in last.operations] == [1]
    stats.record("listTasks", 200, 0.001, None)
    analytics.flush(unit_of_work=new_uow, stats=stats)
    clock.advance(hours=1)
    with new_uow() as uow:
        analytics.roll_up(uow=uow, clock=clock, retention_days=400)
        day = analytics.report(uow=uow, clock=clock, since="2025-04-02", until="2025-04-02").days[0]
    assert ([op.requests for op in day.operations], day.rolled_up_at) == ([2], clock.now())


def test_a_day_never_rolled_up_is_caught_up_and_retention_prunes(new_uow):
    missed = date(2025, 5, 1)
    today = date(2025, 5, 10)
    ancient = today - timedelta(days=31)
    for day in (missed, ancient):
        stats = analytics.RequestStats(now=lambda day=day: _at(day))
        stats.record("listTasks", 200, 0.001, str(uuid.uuid4()))
        analytics.flush(unit_of_work=new_uow, stats=stats)
    clock = FrozenClock(datetime(2025, 5, 10, 3, tzinfo=UTC))
    with new_uow() as uow:
        result = analytics.roll_up(uow=uow, clock=clock, retention_days=30)
    assert result["days"] == ["2025-05-01", "2025-05-09", "2025-05-10"]  # not the ancient day: pruned
    assert result["pruned_rows"] >= 3  # the ancient day's request count, bucket and user
    with new_uow() as uow:
        assert uow.session.scalars(select(DayRollup.day).where(DayRollup.day == missed)).all() == [missed]
        assert uow.session.scalars(select(RequestCount.day).where(RequestCount.day == ancient)).all() == []
        # A rolled-up day's user ids are no longer kept once it is older than yesterday.
        assert uow.session.scalars(select(ActiveUser.day).where(ActiveUser.day <= missed)).all() == []
        got = analytics.report(uow=uow, clock=clock, since="2025-05-01", until="2025-05-01")
    assert got.days[0].active_users == 1


@pytest.mark.parametrize(
    ("since", "until", "parameter"),
    [
        ("2025-05-02", "2025-05-01", "since"),
        ("2024-01-01", "2025-01-01", "since"),  # 367 days
        ("2025-13-01", "2025-05-01", "since"),
        ("2025-05-01", "tomorrow", "until"),
    ],
)
def test_a_bad_range_is_refused(new_uow, since, until, parameter):
    from services.errors import InvalidInput

    with new_uow() as uow, pytest.raises(InvalidInput) as refused:
        analytics.report(uow=uow, clock=FrozenClock(datetime(2025, 6, 1, tzinfo=UTC)), since=since, until=until)
    assert refused.value.parameter == parameter


def test_the_longest_range_and_the_default_range(new_uow):
    clock = FrozenClock(datetime(2025, 6, 1, tzinfo=UTC))
    with new_uow() as uow:
        longest = analytics.report(uow=uow, clock=clock, since="2024-01-01", until="2024-12-31")  # 366 days
        default = analytics.report(uow=uow, clock=clock, since=None, until=None)
    assert (longest.since, longest.until) == (date(2024, 1, 1), date(2024, 12, 31))
    assert (default.since, default.until) == (date(2025, 5, 3), date(2025, 6, 1))
    with new_uow() as uow:
        earliest = analytics.report(uow=uow, clock=clock, since=None, until="0001-01-05")
    assert (earliest.since, earliest.until) == (date(1, 1, 1), date(1, 1, 5))


def test_rollups_at_the_same_instant_take_turns(new_uow):
    day = date(2025, 7, 1)
    stats = analytics.RequestStats(now=lambda: _at(day))
    stats.record("listTasks", 200, 0.001, str(uuid.uuid4()))
    analytics.flush(unit_of_work=new_uow, stats=stats)
    clock = FrozenClock(datetime(2025, 7, 1, 5, tzinfo=UTC))
    start = threading.Barrier(3)
    errors: list[BaseException] = []

    def roll_up() -> None:
        start.wait(timeout=10)
        try:
            with new_uow() as uow:
                analytics.roll_up(uow=uow, clock=clock, retention_days=400)
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=roll_up) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    with new_uow() as uow:
        got = analytics.report(uow=uow, clock=clock, since="2025-07-01", until="2025-07-01")
    assert [(d.requests, d.active_users) for d in got.days] == [(1, 1)]
