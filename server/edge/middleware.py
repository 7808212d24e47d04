"""The outermost layer of the edge: request id, access log and metrics, and security headers in
one ASGI middleware, so a request pays for one coroutine frame and one `send` wrapper for the
three instead of one each (issue 12; `bench/RESULTS.md`, 2026-12-02)."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.edge.access_log import AccessLog
from server.edge.request_id import REQUEST_ID_HEADER, request_id_of
from server.edge.security_headers import security_headers
from server.integration.request_context import enter_request, leave_request


class EdgeMiddleware:
    """ASGI middleware, for every HTTP request, in this order:

    1. the request id (`server.edge.request_id`) becomes the request's state and is bound to
       every log line of the request (`server.integration.request_context`);
    2. the answer's start gets the security headers it does not already have
       (`server.edge.security_headers`) and `X-Request-ID` (replacing any the app set), and its
       status is noted;
    3. when the app is done (for a streamed answer: after its last chunk), the request is
       logged and counted (`server.edge.access_log`) with the body bytes sent, with status 500
       if no answer was started (the exception goes on to the server). Body chunks pass
       through as they come: nothing here buffers a stream.

    Other scopes (lifespan) pass through untouched.

    Args:
        app: the next ASGI app.
        access_log: what records each finished request.
    """

    def __init__(self, app: ASGIApp, *, access_log: AccessLog) -> None:
        self.app = app
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(scope["headers"])
        echoed = request_id.encode("ascii")
        extra = security_headers(scope.get("path", ""))
        status = 500
        sent_bytes = 0

        async def send_at_the_edge(message: Message) -> None:
            nonlocal status, sent_bytes
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = _with_edge_headers(message.get("headers", []), extra, echoed)
            else:
                sent_bytes += len(message.get("body", b""))
            await send(message)

        token = enter_request(request_id)
        try:
            routing, started = self.access_log.started(scope)
            try:
                await self.app(scope, receive, send_at_the_edge)
            finally:
                self.access_log.completed(scope, routing, started, status, sent_bytes=sent_bytes)
        finally:
            leave_request(token)


def _with_edge_headers(
    headers: list[tuple[bytes, bytes]], extra: tuple[tuple[bytes, bytes], ...], request_id: bytes
) -> list[tuple[bytes, bytes]]:
    """The app's headers (less any `X-Request-ID`), then each of `extra` whose name they do not
    have, then `X-Request-ID: request_id`. Header names are compared in lower case."""
    present = set()
    kept = []
    for name, value in headers:
        lowered = name.lower()
        present.add(lowered)
        if lowered != REQUEST_ID_HEADER:
            kept.append((name, value))
    kept += [(name, value) for name, value in extra if name not in present]
    kept.append((REQUEST_ID_HEADER, request_id))
    return kept
