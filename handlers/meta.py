"""Operations of the `meta` tag."""

from __future__ import annotations

from handlers.responses import json_answer
from server.integration import metrics
from server.integration.context import state
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
    """GET /metrics — Prometheus text format; 404 when METRICS_ENABLED is false."""
    settings = state().settings
    if not settings.metrics_enabled:
        raise NotFound("Metrics are not served by this instance.")
    metrics.record_breakers(state().breaker_states())
    body, content_type = metrics.exposition(settings.prometheus_multiproc_dir)
    return body, 200, {"Content-Type": content_type}
