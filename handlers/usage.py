"""Operations of the `usage` tag (issue 17, "Usage and quotas"): ``GET /api/v1/billing/usage``,
what the caller used of each meter of their plan; and the `usage` section of their data export."""

from __future__ import annotations

import uuid
from typing import Any

from handlers.responses import json_answer, timestamp
from server.integration.context import clock, principal, unit_of_work
from services import usage


def _export_usage(user_id: uuid.UUID) -> list[dict[str, Any]]:
    return [
        {
            "meter": counter.meter,
            "period_start": timestamp(counter.period_start),
            "used": counter.used,
            "notified_percent": counter.notified_percent,
            "updated_at": timestamp(counter.updated_at),
        }
        for counter in usage.exported_counters(uow=unit_of_work(), owner_id=user_id)
    ]


EXPORT_SECTIONS = {"usage": _export_usage}
"""The caller's usage counters in their data export (`handlers.data_export`)."""


def get_usage() -> tuple:
    """GET /api/v1/billing/usage — the caller's plan, period and every meter."""
    report = usage.usage_report(uow=unit_of_work(), owner_id=principal().id, clock=clock())
    return json_answer(
        {
            "plan_code": report.plan_code,
            "period_start": timestamp(report.period_start),
            "period_end": timestamp(report.period_end),
            "meters": [
                {
                    "meter": item.meter.name,
                    "unit": item.meter.unit,
                    "periodic": item.meter.periodic,
                    "description": item.meter.description,
                    "used": item.used,
                    "limit": item.limit,
                    "remaining": item.remaining,
                    "reset_at": timestamp(item.reset_at),
                }
                for item in report.meters
            ],
        }
    )
