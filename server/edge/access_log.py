"""One log line and one set of metrics per request, whoever answers it (a handler, connexion's
validation or security, a rate limit, the body limit)."""

from __future__ import annotations

import time
from typing import Any

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server import metrics
from server.contract import RouteTable
from server.request_context import current_state

log = structlog.get_logger("charter.access")

ROUTING = "connexion_routing"


class AccessLogMiddleware:
    """ASGI middleware: logs ``request_completed`` (method, route template, operationId,
    status, duration_ms, client address, user id; request_id comes from the context) and
    records the request in the Prometheus metrics.

    Only these fields are logged: never a body, a query string or a header, so no password,
    token or `Authorization` value can reach a log line.

    Args:
        app: the next ASGI app.
        routes: the contract's operations, to name requests connexion did not route (answered
            by the rate limit or the body limit, or refused before routing).
    """

    def __init__(self, app: ASGIApp, *, routes: RouteTable) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Shared dicts: connexion's router copies the scope but fills these same objects in.
        routing: dict[str, Any] = scope.setdefault("extensions", {}).setdefault(ROUTING, {})
        started = time.perf_counter()
        status = 500
        metrics.IN_FLIGHT.inc()

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            metrics.IN_FLIGHT.dec()
            duration = time.perf_counter() - started
            method = scope["method"]
            operation_id = routing.get("operation_id")
            if operation_id:
                route = self.routes.templates.get(operation_id, "unmatched")
            else:
                operation_id, route = self.routes.match(method, scope.get("path", "")) or ("unmatched", "unmatched")
            metrics.REQUESTS.labels(operation_id, method, str(status)).inc()
            metrics.LATENCY.labels(operation_id, method, str(status)).observe(duration)
            state = current_state()
            log.info(
                "request_completed",
                method=method,
                route=route,
                operation_id=operation_id,
                status=status,
                duration_ms=round(duration * 1000, 3),
                client=(scope.get("client") or ("unknown", 0))[0],
                user_id=state.user_id if state else None,
            )
