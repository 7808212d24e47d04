"""CORS for the visitor operations of public chatbots (issue 16): each chatbot names the
origins its widget may be embedded on (`allowed_origins`), so these paths follow the
chatbot's list instead of CORS_ORIGINS.

For a request with an `Origin` header to ``<prefix>/public/chatbots/{public_id}[/…]`` or
``<prefix>/public/conversations/{conversation_id}/…``, the chatbot's origins are read (the
chatbot must be `active` and `public`; otherwise it allows none):

* a preflight from an allowed origin, for a method of the path and the headers a visitor sends,
  is answered 200 with the `Access-Control-Allow-*` headers; any other preflight is refused as
  the edge refuses one (403 problem+json without any `Access-Control-Allow-*` header);
* an actual request from an allowed origin goes on, and its answer gets
  `Access-Control-Allow-Origin` (that origin), `Access-Control-Expose-Headers` and `Vary:
  Origin`; one from another origin is refused with 403 problem+json and changes nothing.

Requests without `Origin` (servers, curl) pass untouched; the other paths are left to
`server.edge.cors`. No credentials are allowed: visitors send their token in `Authorization`.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

import anyio.to_thread
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.edge.cors import EXPOSED_HEADERS, MAX_AGE_SECONDS
from server.integration.problems import FORBIDDEN, SERVICE_UNAVAILABLE, asgi_problem

VISITOR_HEADERS = ("authorization", "content-type", "x-request-id", "if-none-match")
"""The request headers a visitor's browser may send cross-origin (lower case)."""

OriginsOf = Callable[[str | None, uuid.UUID | None], list[str]]
"""``(public_id, conversation_id) -> allowed origins``: one of the two is given (a blocking read)."""


class PublicChatbotCORSMiddleware:
    """ASGI middleware: CORS for the public chatbots' paths by each chatbot's `allowed_origins`.

    Args:
        app: the next ASGI app.
        prefix: the API's path prefix, e.g. ``/api/v1``.
        origins_of: reads a chatbot's allowed origins (`OriginsOf`); it runs in a worker thread.
    """

    def __init__(self, app: ASGIApp, *, prefix: str, origins_of: OriginsOf) -> None:
        self.app = app
        self.origins_of = origins_of
        base = re.escape(prefix) + "/public"
        self.routes: list[tuple[re.Pattern[str], str, tuple[str, ...]]] = [
            (re.compile(base + r"/chatbots/([^/]+)"), "public_id", ("GET",)),
            (re.compile(base + r"/chatbots/([^/]+)/conversations"), "public_id", ("POST",)),
            (re.compile(base + r"/conversations/([^/]+)/messages"), "conversation_id", ("GET", "POST")),
        ]

    def _route(self, path: str) -> tuple[str | None, uuid.UUID | None, tuple[str, ...]] | None:
        for pattern, kind, methods in self.routes:
            match = pattern.fullmatch(path)
            if match is None:
                continue
            value = match.group(1)
            if kind == "public_id":
                return value, None, methods
            try:
                return None, uuid.UUID(value), methods
            except ValueError:
                return None, None, methods
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {name.lower(): value for name, value in scope["headers"]}
        origin_raw = headers.get(b"origin")
        route = self._route(scope.get("path", "")) if origin_raw is not None else None
        if route is None or origin_raw is None:
            await self.app(scope, receive, send)
            return
        origin = origin_raw.decode("latin-1")
        public_id, conversation_id, methods = route
        path = scope.get("path", "")
        preflight = scope["method"] == "OPTIONS" and b"access-control-request-method" in headers
        try:
            allowed = (
                await anyio.to_thread.run_sync(self.origins_of, public_id, conversation_id)
                if public_id is not None or conversation_id is not None
                else []
            )
        except Exception:  # the database is away: the app would answer 503 too
            await asgi_problem(
                send, SERVICE_UNAVAILABLE, "The service cannot check this origin now; retry.", instance=path
            )
            return
        vary = {"Vary": "Origin"}
        if origin not in allowed:
            await asgi_problem(
                send,
                FORBIDDEN,
                "This origin may not call this chatbot (its allowed_origins).",
                instance=path,
                headers=vary,
            )
            return
        if preflight:
            method = headers[b"access-control-request-method"].decode("latin-1").upper()
            asked = headers.get(b"access-control-request-headers", b"").decode("latin-1")
            names = {name.strip().lower() for name in asked.split(",") if name.strip()}
            if method not in methods or not names <= set(VISITOR_HEADERS):
                await asgi_problem(
                    send,
                    FORBIDDEN,
                    "This cross-origin request is not allowed (method or headers).",
                    instance=path,
                    headers=vary,
                )
                return
            await _preflight_ok(send, origin, methods)
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [
                    (name, value)
                    for name, value in message.get("headers", [])
                    if not name.lower().startswith(b"access-control-")
                ]
                kept += [
                    (b"access-control-allow-origin", origin_raw),
                    (b"access-control-expose-headers", ", ".join(EXPOSED_HEADERS).encode("latin-1")),
                    (b"vary", b"Origin"),
                ]
                message["headers"] = kept
            await send(message)

        await self.app(scope, receive, send_with_cors)


async def _preflight_ok(send: Send, origin: str, methods: tuple[str, ...]) -> None:
    headers = [
        (b"access-control-allow-origin", origin.encode("latin-1")),
        (b"access-control-allow-methods", ", ".join(methods).encode("latin-1")),
        (b"access-control-allow-headers", b"Authorization, Content-Type, X-Request-ID, If-None-Match"),
        (b"access-control-max-age", str(MAX_AGE_SECONDS).encode("latin-1")),
        (b"vary", b"Origin"),
        (b"content-length", b"0"),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b""})
