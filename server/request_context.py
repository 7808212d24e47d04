"""Per-request state shared by the ASGI middleware and the Flask handler thread: the request
id (read from or made for every request, returned as `X-Request-ID`), the client address,
the matched operation and the authenticated user, for logs, metrics and problem bodies."""

from __future__ import annotations

import random
import re
from contextvars import ContextVar
from dataclasses import dataclass

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID_HEADER = b"x-request-id"
_VALID_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")
_random = random.Random()  # noqa: S311 - request ids are labels, not secrets; os.urandom per request costs more


@dataclass
class RequestState:
    """What is known about the request being served. The Flask thread gets a copy of the
    context, which refers to this same object, so what a handler sets here (the user) is
    seen by the middleware that logs the request."""

    request_id: str
    user_id: str | None = None


_state: ContextVar[RequestState | None] = ContextVar("request_state", default=None)


def current_request_id() -> str | None:
    """The id of the request being served in this context, or None outside a request."""
    state = _state.get()
    return state.request_id if state else None


def current_state() -> RequestState | None:
    """The state of the request being served, or None outside a request."""
    return _state.get()


class RequestIdMiddleware:
    """ASGI middleware: accept a well-formed client `X-Request-ID` (1-128 of ``A-Za-z0-9._:-``,
    so nothing can be injected into logs) or make a new one, and echo it on the response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = None
        for name, value in scope["headers"]:
            if name == REQUEST_ID_HEADER and _VALID_REQUEST_ID.match(value):
                request_id = value.decode("ascii")
                break
        request_id = request_id or f"{_random.getrandbits(128):032x}"
        token = _state.set(RequestState(request_id=request_id))
        structlog.contextvars.bind_contextvars(request_id=request_id)
        encoded = request_id.encode("ascii")

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != REQUEST_ID_HEADER]
                headers.append((REQUEST_ID_HEADER, encoded))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            structlog.contextvars.unbind_contextvars("request_id")
            _state.reset(token)
