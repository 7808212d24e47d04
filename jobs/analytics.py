"""Usage analytics (issue 18): `analytics.rollup`, queued by every worker each
ANALYTICS_ROLLUP_INTERVAL_SECONDS (`server/worker.py`) unless one is already queued or running:
today's and yesterday's rollups recomputed from the raw per-day tables, and the retention applied
(`services.analytics.roll_up`)."""

from __future__ import annotations

from typing import Any

from services import analytics
from services.jobs import JobKind, JobRun, RetryPolicy

ROLLUP_KIND = "analytics.rollup"


def roll_up(run: JobRun) -> dict[str, Any]:
    """Recompute the daily rollups and prune; idempotent (a day's rollup is replaced whole).
    The retention comes from the engine's ``analytics`` context (`AnalyticsConfig`; its default
    when an engine is wired without it)."""
    config = run.engine.context.get("analytics")
    if not isinstance(config, analytics.AnalyticsConfig):
        config = analytics.AnalyticsConfig()
    with run.unit_of_work() as uow:
        return analytics.roll_up(uow=uow, clock=run.clock, retention_days=config.retention_days)


JOB_KINDS = [
    JobKind(ROLLUP_KIND, roll_up, RetryPolicy(max_attempts=3, base_delay_seconds=60, max_delay_seconds=900)),
]
