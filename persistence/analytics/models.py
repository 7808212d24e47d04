"""The analytics tables (issue 18). Raw tables, written by the API processes' flushes by adding
to what is there (`analytics_requests`, `analytics_latency`) or inserting if absent
(`analytics_active_users`); rollup tables, replaced day by day by the `analytics.rollup` job
(`analytics_days`, `analytics_day_operations`, `analytics_day_jobs`). Every day is a UTC date.
The schema changes only through Alembic migrations."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import BigInteger, Date, Integer, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from persistence.base import Base
from persistence.types import UTCDateTime


class RequestCount(Base):
    """Requests answered on `day` for one operationId (``unmatched`` for paths the contract does
    not have), in all and with a 4xx or 5xx status; every process adds its counts here."""

    __tablename__ = "analytics_requests"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    operation_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    requests: Mapped[int] = mapped_column(BigInteger)
    errors_4xx: Mapped[int] = mapped_column(BigInteger)
    errors_5xx: Mapped[int] = mapped_column(BigInteger)


class LatencyBucket(Base):
    """One finite bucket of the latency histogram of (`day`, `operation_id`): requests that took
    more than the next lower bucket's bound and at most `le_us` microseconds (not cumulative).
    The slower ones (the +Inf bucket) are the day's `RequestCount.requests` less the buckets'
    sum, as Prometheus' `_count` is. Empty buckets have no row."""

    __tablename__ = "analytics_latency"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    operation_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    le_us: Mapped[int] = mapped_column(Integer, primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger)


class ActiveUser(Base):
    """A user who made an authenticated request on `day`. No foreign key: a flush must not fail
    because the account was deleted meanwhile; rows live only until their day is rolled up and
    over (the rollup deletes those older than the previous day)."""

    __tablename__ = "analytics_active_users"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)


class DayRollup(Base):
    """A day's rollup: when it was computed and the day's distinct active users."""

    __tablename__ = "analytics_days"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    active_users: Mapped[int] = mapped_column(Integer)
    rolled_up_at: Mapped[datetime] = mapped_column(UTCDateTime)


class DayOperation(Base):
    """A day's requests, 4xx and 5xx answers and p95 latency (microseconds; None without
    latency data) for one operationId."""

    __tablename__ = "analytics_day_operations"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    operation_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    requests: Mapped[int] = mapped_column(BigInteger)
    errors_4xx: Mapped[int] = mapped_column(BigInteger)
    errors_5xx: Mapped[int] = mapped_column(BigInteger)
    p95_us: Mapped[int | None] = mapped_column(Integer, nullable=True)


class DayJobs(Base):
    """Jobs of `kind` that finished on `day` (by `jobs.finished_at`) with `outcome`
    (``succeeded``, ``failed`` or ``cancelled``)."""

    __tablename__ = "analytics_day_jobs"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    kind: Mapped[str] = mapped_column(String(100), primary_key=True)
    outcome: Mapped[str] = mapped_column(String(12), primary_key=True)
    count: Mapped[int] = mapped_column(Integer)
