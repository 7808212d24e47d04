"""Server-sent events for handlers: choosing a stream over JSON from ``Accept``, and framing an
iterator of ``(event name, JSON-able data)`` as a ``text/event-stream`` Flask response.

The framing is the WHATWG HTML Standard's, section 9.2 "Server-sent events" (the event stream
format, 9.2.5, and its interpretation, 9.2.6): an event is ``event: <name>`` and one
``data: <line>`` per line of data, ended by a blank line; a line starting with ``:`` is a
comment (the bridge's ``: ping``). No library does this for WSGI/Flask that is kept up:
``sse-starlette`` is ASGI-only and ``flask-sse`` (last release 2021) is a Redis pub/sub
channel, not an encoder; it is a few lines.

The answer is streamed end to end: ``server.integration.wsgi_bridge`` forwards a
``text/event-stream`` answer chunk by chunk (one chunk per event), pings on silence, and stops
the iterator (``close()``, so a generator gets ``GeneratorExit``) when the client leaves.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import flask
import orjson

EVENT_STREAM = "text/event-stream"
JSON = "application/json"
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
"""Sent with every stream: no cache may keep it, and proxies such as nginx must pass each event
on at once instead of buffering (API_STYLE, Streams)."""


def wants_event_stream(request: flask.Request | None = None) -> bool:
    """Whether the request asks for ``text/event-stream`` rather than ``application/json``,
    by the ``Accept`` header's preferences (RFC 9110 section 12.5.1, through Werkzeug's
    ``accept_mimetypes.best_match``). No ``Accept``, ``*/*`` or a tie answers JSON.

    Args:
        request: the Flask request; the current one when omitted.
    """
    accept = (request or flask.request).accept_mimetypes
    return accept.best_match([JSON, EVENT_STREAM]) == EVENT_STREAM


def encode_event(name: str | None, data: Any) -> bytes:
    """One event: ``event: name``, ``data: <data as compact JSON>`` (one ``data:`` line per
    line, though compact JSON has none), a blank line; UTF-8.

    A `name` of None makes a data-only event (no ``event:`` field; a browser's ``EventSource``
    calls it ``message``), the wire format of OpenAI's streamed chat completions. `data` given
    as ``bytes`` is sent as it is instead of as JSON (OpenAI's closing ``data: [DONE]``).

    Raises:
        ValueError: `name` is empty or holds a line break (it would end the field early).
    """
    if name is not None and (not name or "\n" in name or "\r" in name):
        raise ValueError(f"an event name must be one non-empty line, not {name!r}")
    lines = (data if isinstance(data, bytes) else orjson.dumps(data)).splitlines() or [b""]
    field = b"" if name is None else b"event: " + name.encode("utf-8") + b"\n"
    return field + b"".join(b"data: " + line + b"\n" for line in lines) + b"\n"


def event_stream_response(
    events: Iterable[tuple[str | None, Any]], *, status: int = 200, headers: dict[str, str] | None = None
) -> flask.Response:
    """A streamed ``text/event-stream`` answer: each ``(name, data)`` of `events` encoded by
    `encode_event` as one chunk, sent when it is produced, with ``Cache-Control: no-cache`` and
    ``X-Accel-Buffering: no`` (never compressed; no ``Content-Length``).

    `events` is iterated after the handler has returned, in a thread of the bridge's stream
    pool; when the client leaves, iteration stops between events and `events` is closed (a
    generator gets ``GeneratorExit`` at its ``yield``). The request context is gone by then
    (its unit of work committed and closed) unless the producer is wrapped in
    ``flask.stream_with_context``.

    Args:
        events: ``(event name, JSON-able data)`` pairs (a None name, or bytes data: see
            `encode_event`).
        status: the HTTP status.
        headers: more headers for the answer.
    """
    return flask.Response(
        _Encoded(events), status=status, mimetype=EVENT_STREAM, headers={**STREAM_HEADERS, **(headers or {})}
    )


class _Encoded:
    """`events` encoded, closing `events` when closed itself (a generator expression would
    drop the inner generator's ``close()`` until garbage collection)."""

    def __init__(self, events: Iterable[tuple[str | None, Any]]) -> None:
        self.events = events
        self.iterator: Iterator[tuple[str | None, Any]] | None = None

    def __iter__(self) -> Iterator[bytes]:
        self.iterator = iter(self.events)
        return self

    def __next__(self) -> bytes:
        assert self.iterator is not None
        name, data = next(self.iterator)
        return encode_event(name, data)

    def close(self) -> None:
        """Close the events' iterator (or iterable) when it can be."""
        close = getattr(self.iterator if self.iterator is not None else self.events, "close", None)
        if close is not None:
            close()
