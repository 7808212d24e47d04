"""Per-request state shared by the edge (`server.edge`) and the Flask handler thread: the
request id (read from or made for every request by the edge, returned as `X-Request-ID`) and
the authenticated user, for logs, metrics and problem bodies.

It lives outside `server.edge` because the layers inside the edge read it (problem bodies,
the security handler, handlers' audit metadata) and must not depend on the edge package.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar, Token
from dataclasses import dataclass

import structlog


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


def enter_request(request_id: str) -> Token[RequestState | None]:
    """Start serving a request in this context: its state becomes current and every log line
    carries `request_id` until `leave_request` is given the token returned here."""
    token = _state.set(RequestState(request_id=request_id))
    structlog.contextvars.bind_contextvars(request_id=request_id)
    return token


def leave_request(token: Token[RequestState | None]) -> None:
    """End what `enter_request` started: the previous state (usually none) is current again."""
    structlog.contextvars.unbind_contextvars("request_id")
    _state.reset(token)


_trace_id_reader: Callable[[], str | None] | None = None
"""Reads the current trace id; set by `server.tracing` only when tracing is on."""


def set_trace_id_reader(reader: Callable[[], str | None] | None) -> None:
    """Install (or, with None, remove) what `current_trace_id` asks: `server.tracing` does when
    tracing is on, so nothing here imports OpenTelemetry."""
    global _trace_id_reader
    _trace_id_reader = reader


def current_trace_id() -> str | None:
    """The trace id of the span being served (32 hex digits), or None: tracing off, or no span."""
    return _trace_id_reader() if _trace_id_reader is not None else None
