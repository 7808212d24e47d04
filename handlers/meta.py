"""Operations of the `meta` tag."""

from __future__ import annotations

from handlers.responses import json_answer
from server.integration import metrics
from server.integration.context import clock, fresh_units, state
from services import backups, jobs
from services.errors import NotFound


def get_service_info() -> tuple:
    """GET / — name, version and where the docs, the contract and the API live (brief 001)."""
    info = state().service_info
    return json_answer(
        {
            "name": info.name,
            "version": info.version,
            "status": "running",
            "docs_url": info.docs_url,
            "openapi_url": info.openapi_url,
            "api_prefix": info.api_prefix,
        }
    )


def get_metrics() -> tuple:
    """GET /metrics — Prometheus text format; 404 when METRICS_ENABLED is false. Each scrape
    also reads the job queue (two aggregate queries) for the queue gauges and
    `charter_database_up`, and BACKUP_DIR's newest archives for the backup's age, which the
    alert rules in ops/prometheus watch."""
    settings = state().settings
    if not settings.metrics_enabled:
        raise NotFound("Metrics are not served by this instance.")
    metrics.record_breakers(state().breaker_states())
    try:
        with fresh_units()() as uow:
            queue = jobs.queue_statistics(uow=uow, clock=clock())
    except Exception:  # a database that does not answer is a reading here, not an error
        metrics.DATABASE_UP.set(0)
    else:
        metrics.DATABASE_UP.set(1)
        metrics.record_queue(queue.queued, queue.running, queue.oldest_due_age_seconds)
    last_backup = backups.newest_valid_backup_at(directory=settings.backup_directory)
    metrics.BACKUP_LAST_SUCCESS.set(last_backup.timestamp() if last_backup is not None else 0)
    body, content_type = metrics.exposition(settings.prometheus_multiproc_dir)
    return body, 200, {"Content-Type": content_type}
