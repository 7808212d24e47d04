"""Operations of the `health` tag: liveness and readiness probes (brief 001)."""

from __future__ import annotations

import time

from handlers.responses import json_answer, now_timestamp
from server.integration.context import state
from server.integration.problems import NOT_READY, PROBLEM_JSON, problem_body
from services import health


def get_health() -> tuple:
    """GET /api/v1/health — the process answers; no dependency is checked."""
    return json_answer({"status": "healthy", "version": state().service_info.version, "timestamp": now_timestamp()})


def get_liveness() -> tuple:
    """GET /api/v1/health/live — alive, with seconds since start (monotonic clock)."""
    app = state()
    return json_answer(
        {
            "status": "alive",
            "version": app.service_info.version,
            "timestamp": now_timestamp(),
            "uptime_seconds": round(time.monotonic() - app.started_at, 3),
        }
    )


def get_readiness() -> tuple:
    """GET /api/v1/health/ready — 200 ``ready`` when every dependency answers; 200 ``degraded``
    when Redis does not or a dependency's circuit breaker is open (the instance still serves,
    with each dependency's fallback); 503 naming the database when it does not answer."""
    app = state()
    checks = health.check_dependencies(app.probes)
    breakers = app.breaker_states()
    if checks["database"] != "ok":
        body = problem_body(
            NOT_READY, "Unavailable: database.", instance="/api/v1/health/ready", checks=checks, breakers=breakers
        )
        return body, 503, {"Content-Type": PROBLEM_JSON, "Retry-After": "5"}
    status = health.readiness_status(checks, breakers)
    return json_answer(
        {
            "status": status,
            "version": app.service_info.version,
            "timestamp": now_timestamp(),
            "checks": checks,
            "breakers": breakers,
        }
    )
