"""Operations of the `analytics` tag: usage analytics for administrators (issue 18)."""

from __future__ import annotations

from typing import Any

from handlers.responses import json_answer, timestamp
from server.integration.context import clock, unit_of_work
from services import analytics


def get_usage_analytics(since: str | None = None, until: str | None = None) -> tuple:
    """GET /api/v1/admin/analytics — administrators; the rolled-up days from `since` to `until`."""
    result = analytics.report(uow=unit_of_work(), clock=clock(), since=since, until=until)
    return json_answer(
        {
            "since": result.since.isoformat(),
            "until": result.until.isoformat(),
            "days": [_day(day) for day in result.days],
        }
    )


def _day(day: analytics.DayReport) -> dict[str, Any]:
    return {
        "day": day.day.isoformat(),
        "requests": day.requests,
        "errors_4xx": day.errors_4xx,
        "errors_5xx": day.errors_5xx,
        "active_users": day.active_users,
        "rolled_up_at": timestamp(day.rolled_up_at),
        "operations": [
            {
                "operation_id": op.operation_id,
                "requests": op.requests,
                "errors_4xx": op.errors_4xx,
                "errors_5xx": op.errors_5xx,
                "p95_ms": op.p95_ms,
            }
            for op in day.operations
        ],
        "jobs": [
            {"kind": jobs.kind, "succeeded": jobs.succeeded, "failed": jobs.failed, "cancelled": jobs.cancelled}
            for jobs in day.jobs
        ],
    }
