"""Prometheus metrics (prometheus-client), correct under ``uvicorn --workers N``.

With several workers each process writes its samples to PROMETHEUS_MULTIPROC_DIR (set by
``charter serve --workers N`` to a fresh folder when unset) and `GET /metrics` aggregates them
with `MultiProcessCollector`; with one process the default registry is served.
"""

from __future__ import annotations

from pathlib import Path

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from sqlalchemy import Engine, event

CONTENT_TYPE = "text/plain"
"""The body is the text exposition format 0.0.4, which Prometheus assumes for `text/plain`.
Connexion compares content types literally, so the contract and the answer say just this."""

REQUESTS = Counter(
    "charter_http_requests_total",
    "HTTP requests answered, by operationId, method and status.",
    ["operation_id", "method", "status"],
)
LATENCY = Histogram(
    "charter_http_request_duration_seconds",
    "Time from first byte in to last byte out, by operationId and status.",
    ["operation_id", "method", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
IN_FLIGHT = Gauge("charter_http_requests_in_flight", "Requests being served now.", multiprocess_mode="livesum")
RATE_LIMITED = Counter(
    "charter_rate_limited_requests_total", "Requests refused with 429, by limiter (edge or route).", ["limiter"]
)
LOGIN_FAILURES = Counter("charter_login_failures_total", "Logins refused for bad credentials.")
DB_POOL_CHECKED_OUT = Gauge(
    "charter_db_pool_connections_in_use",
    "Database connections checked out of the pool now.",
    multiprocess_mode="livesum",
)
DB_POOL_SIZE = Gauge(
    "charter_db_pool_size", "Connections the pool keeps open (per process).", multiprocess_mode="livemax"
)
DB_POOL_MAX_OVERFLOW = Gauge(
    "charter_db_pool_max_overflow",
    "Connections the pool may open beyond its size (per process).",
    multiprocess_mode="livemax",
)
DB_POOL_OVERFLOW = Gauge(
    "charter_db_pool_overflow_connections",
    "Connections open beyond the pool's size now (closed again when they are returned).",
    multiprocess_mode="livesum",
)
DB_POOL_CHECKOUTS = Counter("charter_db_pool_checkouts_total", "Connections handed out by the pool.")
DB_POOL_CONNECTS = Counter(
    "charter_db_pool_connections_opened_total",
    "Database connections opened. Growing under a steady load means the pool is smaller than "
    "the threads that use it (connections are opened and closed instead of reused).",
)
JOBS = Gauge(
    "charter_jobs",
    "Jobs queued or running now, by kind and status (read from the jobs table at each scrape).",
    ["kind", "status"],
    multiprocess_mode="mostrecent",
)
JOB_OLDEST_DUE_AGE = Gauge(
    "charter_job_oldest_due_age_seconds",
    "How long the oldest queued job that is due has waited (0: none waits). Growing: no worker takes jobs.",
    multiprocess_mode="mostrecent",
)
DATABASE_UP = Gauge(
    "charter_database_up",
    "1 if the database answered the last scrape's queries, else 0.",
    multiprocess_mode="mostrecent",
)

BACKUP_LAST_SUCCESS = Gauge(
    "charter_backup_last_success_timestamp_seconds",
    "Unix time the newest valid archive in BACKUP_DIR was made (0: none).",
    multiprocess_mode="mostrecent",
)


def record_queue(queued: dict[str, int], running: dict[str, int], oldest_due_age_seconds: float) -> None:
    """Set the job gauges from one reading of the queue (`services.jobs.queue_statistics`).
    A (kind, status) that had jobs at an earlier scrape and has none now reads 0, not its old count."""
    now = {(kind, "queued"): count for kind, count in queued.items()}
    now |= {(kind, "running"): count for kind, count in running.items()}
    for kind, status in _JOB_LABELS_SEEN - now.keys():
        JOBS.labels(kind=kind, status=status).set(0)
    for (kind, status), count in now.items():
        JOBS.labels(kind=kind, status=status).set(count)
    _JOB_LABELS_SEEN.update(now)
    JOB_OLDEST_DUE_AGE.set(oldest_due_age_seconds)


_JOB_LABELS_SEEN: set[tuple[str, str]] = set()
"""Every (kind, status) the job gauge has had, so an emptied one is set back to 0."""

BREAKER_STATE = Gauge(
    "charter_dependency_breaker_state",
    "Circuit breaker of each outside dependency: 0 closed, 1 half-open (next call is a trial), "
    "2 open (failing fast; its fallback applies). A per-target family (webhook_delivery, web_fetch) "
    "is 1 while some targets' breakers are open.",
    ["dependency"],
    multiprocess_mode="livemax",
)
BREAKER_STATE_VALUES = {"closed": 0, "half_open": 1, "partly_open": 1, "open": 2}


def record_breakers(states: dict[str, str]) -> None:
    """Set the breaker gauge from each dependency's state (read at scrape time, by name)."""
    for name, state in states.items():
        BREAKER_STATE.labels(dependency=name).set(BREAKER_STATE_VALUES.get(state, 0))


CACHE_REQUESTS = Counter(
    "charter_cache_requests_total",
    "Cache reads by cache (answers, public_chatbots, plans, ...) and outcome: hit, miss, or error "
    "(the cache could not be read: a miss as well).",
    ["cache", "outcome"],
)


def count_cache_read(cache: str, outcome: str) -> None:
    """Count one cache read (`services.caching.Cache`'s observer)."""
    CACHE_REQUESTS.labels(cache=cache, outcome=outcome).inc()


def watch_pool(engine: Engine, pool_size: int, max_overflow: int) -> None:
    """Keep the pool's gauges and counters current from the engine's pool events: connections
    in use, overflow connections open, checkouts and connections opened."""
    DB_POOL_SIZE.set(pool_size)
    DB_POOL_MAX_OVERFLOW.set(max_overflow)
    pool = engine.pool
    overflow = getattr(pool, "overflow", None)  # QueuePool's: open connections beyond its size
    # QueuePool's own count of connections out, read at each event rather than +1/-1 per event:
    # counting drifts (a connection discarded during a database restart can be checked in
    # without a counted checkout), the pool's count does not. The checkin event fires before the
    # connection is back, so it still counts that one.
    checked_out = getattr(pool, "checkedout", None)

    def on_checkout(*_: object) -> None:
        if checked_out is not None:
            DB_POOL_CHECKED_OUT.set(checked_out())
        else:
            DB_POOL_CHECKED_OUT.inc()
        DB_POOL_CHECKOUTS.inc()
        if overflow is not None:
            DB_POOL_OVERFLOW.set(max(0, overflow()))

    def on_checkin(*_: object) -> None:
        if checked_out is not None:
            DB_POOL_CHECKED_OUT.set(max(0, checked_out() - 1))
        else:
            DB_POOL_CHECKED_OUT.dec()
        if overflow is not None:
            DB_POOL_OVERFLOW.set(max(0, overflow()))

    event.listen(engine, "checkout", on_checkout)
    event.listen(engine, "checkin", on_checkin)
    event.listen(engine, "connect", lambda *_: DB_POOL_CONNECTS.inc())


def exposition(multiprocess_dir: Path | None) -> tuple[bytes, str]:
    """The current metrics in the Prometheus text format 0.0.4 and its content type.

    Args:
        multiprocess_dir: PROMETHEUS_MULTIPROC_DIR when several workers share the metrics.
    """
    if multiprocess_dir is not None:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=str(multiprocess_dir))
        return generate_latest(registry), CONTENT_TYPE
    return generate_latest(REGISTRY), CONTENT_TYPE
