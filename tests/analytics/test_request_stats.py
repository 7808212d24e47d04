"""The per-process accumulator and the quantile, without a database (issue 18): what a request
adds, what a flush takes and puts back, the bounds, and p95 exactly as Prometheus'
`histogram_quantile` computes it."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime

import pytest

from services.analytics import LATENCY_BOUNDS_US, QUANTILE, RequestStats, day_of, quantile

DAY = datetime(2025, 1, 15, 23, 59, 59, tzinfo=UTC).timestamp()
NEXT_DAY = datetime(2025, 1, 16, 0, 0, 0, tzinfo=UTC).timestamp()


class Clock:
    def __init__(self, at: float) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at


def test_a_request_counts_by_utc_day_operation_status_class_and_latency_bucket():
    clock = Clock(DAY)
    stats = RequestStats(now=clock)
    stats.record("listTasks", 200, 0.0012, "u1")
    stats.record("listTasks", 404, 0.001, None)  # exactly on a bound: that bucket (le)
    stats.record("listTasks", 503, 99.0, "u1")  # beyond the last bound: +Inf
    clock.at = NEXT_DAY
    stats.record("listTasks", 201, 0.0001, "u2")
    pending = stats.take()
    assert sorted(pending.request_rows()) == [
        (date(2025, 1, 15), "listTasks", 3, 1, 1),
        (date(2025, 1, 16), "listTasks", 1, 0, 0),
    ]
    assert sorted(pending.latency_rows()) == [
        (date(2025, 1, 15), "listTasks", 1_000, 1),
        (date(2025, 1, 15), "listTasks", 1_500, 1),
        (date(2025, 1, 16), "listTasks", 500, 1),
    ]
    assert sorted((day, str(user)) for day, user in pending.user_rows()) == []  # "u1" is not a UUID: skipped
    assert pending.users == {(20103, "u1"), (20104, "u2")}
    assert stats.take().rows == {}  # taking empties it


def test_put_back_adds_to_what_came_since_and_keeps_to_the_bounds():
    stats = RequestStats(now=Clock(DAY), max_rows=2, max_users=2)
    stats.record("a", 200, 0.002, "11111111-1111-1111-1111-111111111111")
    failed_flush = stats.take()
    stats.record("a", 500, 0.002, "11111111-1111-1111-1111-111111111111")
    stats.record("b", 200, 0.002, "22222222-2222-2222-2222-222222222222")
    stats.put_back(failed_flush)
    assert stats.pending() == (3, 2)
    assert sorted(stats.take().request_rows()) == [(date(2025, 1, 15), "a", 2, 0, 1), (date(2025, 1, 15), "b", 1, 0, 0)]
    stats.record("a", 200, 0.002, None)
    stats.record("b", 200, 0.002, None)
    stats.record("c", 200, 0.002, "33333333-3333-3333-3333-333333333333")  # a third row: over max_rows
    assert (stats.pending(), stats.dropped_requests) == ((2, 0), 1)


def test_records_from_many_threads_are_all_counted():
    stats = RequestStats(now=Clock(DAY))
    start = threading.Barrier(8)

    def hammer() -> None:
        start.wait(timeout=10)
        for index in range(1000):
            stats.record("op", 200 if index % 10 else 500, 0.003, None)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert stats.take().request_rows() == [(date(2025, 1, 15), "op", 8000, 0, 800)]


def test_day_of_is_the_utc_date():
    assert day_of(DAY) == date(2025, 1, 15)
    assert day_of(NEXT_DAY) == date(2025, 1, 16)


@pytest.mark.parametrize(
    ("buckets", "total", "expected"),
    [
        # 100 requests: 50 ≤ 1 ms, 40 in (1, 2] ms, 10 in (2, 3] ms. Rank 95 lies in (2, 3] ms,
        # 5 of its 10: 2000 + 1000 * 5/10.
        ([(1_000, 50), (2_000, 40), (3_000, 10)], 100, 2_500.0),
        # Missing (empty) buckets: the lower bound is still the previous bound of the series.
        ([(500, 90), (7_500, 10)], 100, 5_000 + 2_500 * 0.5),
        # All in the first bucket: interpolated from 0.
        ([(500, 20)], 20, 475.0),
        # The rank in the +Inf bucket (total beyond the finite buckets): the highest finite bound.
        ([(1_000, 90)], 100, float(LATENCY_BOUNDS_US[-1])),
        # Exactly at a bucket's cumulative count: that bucket's upper bound.
        ([(1_000, 95), (2_000, 5)], 100, 1_000.0),
        ([], 0, None),
    ],
)
def test_p95_interpolates_linearly_within_the_bucket_as_prometheus_does(buckets, total, expected):
    assert quantile(QUANTILE, buckets, total) == expected


def test_p95_from_recorded_latencies():
    stats = RequestStats(now=Clock(DAY))
    for _ in range(50):
        stats.record("op", 200, 0.0008, None)  # (0.5, 1] ms
    for _ in range(40):
        stats.record("op", 200, 0.0018, None)  # (1.5, 2] ms
    for _ in range(10):
        stats.record("op", 200, 0.0025, None)  # (2, 3] ms
    pending = stats.take()
    buckets = [(bound, count) for _day, _op, bound, count in pending.latency_rows()]
    assert buckets == [(1_000, 50), (2_000, 40), (3_000, 10)]
    assert quantile(QUANTILE, buckets, 100) == 2_500.0
