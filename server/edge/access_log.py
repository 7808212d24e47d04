"""One log line and one set of metrics per request, whoever answers it (a handler, connexion's
validation or security, a rate limit, the body limit); `server.edge.middleware` calls it."""

from __future__ import annotations

import logging
import time
from typing import Any

import structlog
from prometheus_client import Counter, Histogram
from starlette.types import Scope

from server.contract import RouteTable
from server.integration import metrics
from server.integration.request_context import current_state
from services.analytics import RequestStats

LOGGER = "charter.access"
log = structlog.get_logger(LOGGER)
_stdlib_log = logging.getLogger(LOGGER)

ROUTING = "connexion_routing"
"""The scope extension connexion's router fills with the matched operation (`operation_id`)."""


METRIC_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
"""Methods that get a metric label of their own; any other is counted as ``OTHER``."""


class AccessLog:
    """Logs ``request_completed`` (method, route template, operationId, status, duration_ms,
    bytes (of the body sent), client address, user id; request_id comes from the context) and records the request in the
    Prometheus metrics (`server.integration.metrics`: requests, latency, in flight).

    Only these fields are logged: never a body, a query string or a header, so no password,
    token or `Authorization` value can reach a log line. A line below LOG_LEVEL is not built at
    all (the same test as structlog's `filter_by_level`, made before the call).

    Args:
        routes: the contract's operations, to name requests connexion did not route (answered
            by the rate limit or the body limit, or refused before routing).
        request_stats: where each request is also counted for the usage analytics, in memory
            (`services.analytics.RequestStats`; flushed to the database by a thread of its own,
            never per request); None: not counted.
    """

    def __init__(self, *, routes: RouteTable, request_stats: RequestStats | None = None) -> None:
        self.routes = routes
        self.request_stats = request_stats
        self._series: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        """(operationId, method, status) -> its request counter and latency histogram: looked up
        once, not through `labels()` (a lock and a tuple of strings) on every request."""

    def started(self, scope: Scope) -> tuple[dict[str, Any], float]:
        """Count the request in flight; returns what `completed` needs: the routing dict
        connexion fills in (shared: its router copies the scope but fills this same object) and
        the start time from `time.perf_counter` (seconds)."""
        routing: dict[str, Any] = scope.setdefault("extensions", {}).setdefault(ROUTING, {})
        metrics.IN_FLIGHT.inc()
        return routing, time.perf_counter()

    def completed(
        self, scope: Scope, routing: dict[str, Any], started: float, status: int, *, sent_bytes: int = 0
    ) -> None:
        """Record the request `started` returned for, answered with `status` (500 when no answer
        was sent: the exception then goes on to the server) and `sent_bytes` of body."""
        metrics.IN_FLIGHT.dec()
        duration = time.perf_counter() - started
        method = scope["method"]
        operation_id = routing.get("operation_id")
        if operation_id:
            route = self.routes.templates.get(operation_id, "unmatched")
        else:
            operation_id, route = self.routes.match(method, scope.get("path", "")) or ("unmatched", "unmatched")
        # The method label is bounded: a client may send any token as a method, and each new
        # label value would be a new time series (and a new entry here) for as long as we run.
        label = method if method in METRIC_METHODS else "OTHER"
        series = self._series.get((operation_id, label, status))
        if series is None:
            labels = (operation_id, label, str(status))
            series = self._series[operation_id, label, status] = (
                metrics.REQUESTS.labels(*labels),
                metrics.LATENCY.labels(*labels),
            )
        series[0].inc()
        series[1].observe(duration)
        state = current_state()
        if self.request_stats is not None:
            self.request_stats.record(operation_id, status, duration, state.user_id if state else None)
        if not _stdlib_log.isEnabledFor(logging.INFO):
            return
        log.info(
            "request_completed",
            method=method,
            route=route,
            operation_id=operation_id,
            status=status,
            duration_ms=round(duration * 1000, 3),
            bytes=sent_bytes,
            client=(scope.get("client") or ("unknown", 0))[0],
            user_id=state.user_id if state else None,
        )
