"""Event streams through the WSGI bridge (issue 16, "Streaming (SSE)"): forwarded as they are
produced, stopped when the client leaves, kept alive by pings; other answers still buffered.

A test-only WSGI app (the SSE encoder's Flask response, or plain WSGI callables) wrapped by the
bridge and served by a real uvicorn on 127.0.0.1; clients read with httpx and httpx-sse. No
assertion is about time: the producers wait on events the tests set, and every wait is bounded.
The full Charter stack (edge, connexion, response validation) is in
`test_event_streams_served.py`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import flask
import httpx
import httpx_sse
import pytest

from server.integration.event_stream import encode_event, event_stream_response, wants_event_stream
from server.integration.wsgi_bridge import PING, BufferedWSGIBridge
from tests.served import serve

WAIT = 30.0
"""The longest any test waits for anything (never reached when the code works)."""


class Producer:
    """A generator of events whose progress the test controls and observes: it yields `first`,
    then waits for `go` (bounded), then yields the rest; `finished` is set in its ``finally``,
    `cancelled` when it got ``GeneratorExit``, `produced` counts its events."""

    def __init__(self, *, rest: int = 1, payload_bytes: int = 10) -> None:
        self.go = threading.Event()
        self.finished = threading.Event()
        self.cancelled = threading.Event()
        self.waited_in_vain = False
        self.produced = 0
        self.rest = rest
        self.payload = "x" * payload_bytes

    def events(self) -> Iterator[tuple[str, Any]]:
        try:
            self.produced += 1
            yield "message_start", {"n": 0}
            self.waited_in_vain = not self.go.wait(WAIT)
            for n in range(1, self.rest + 1):
                self.produced += 1
                yield "delta", {"n": n, "text": self.payload}
            yield "message_end", {"n": self.rest + 1}
        except GeneratorExit:
            self.cancelled.set()
            raise
        finally:
            self.finished.set()


def flask_app(producer: Producer) -> flask.Flask:
    """A Flask app answering `/stream` with the producer's events and `/json` with a document."""
    app = flask.Flask(__name__)

    @app.get("/stream")
    def stream() -> flask.Response:
        return event_stream_response(producer.events())

    @app.get("/json")
    def document() -> flask.Response:
        return flask.jsonify({"ok": True})

    return app


@pytest.fixture
def producer() -> Producer:
    return Producer()


def test_events_arrive_before_the_producer_has_finished(producer: Producer) -> None:
    bridge = BufferedWSGIBridge(flask_app(producer), workers=2)
    with (
        serve(bridge) as url,
        httpx.Client(base_url=url, timeout=WAIT) as client,
        httpx_sse.connect_sse(client, "GET", "/stream") as source,
    ):
        assert source.response.headers["content-type"].startswith("text/event-stream")
        assert "content-length" not in source.response.headers
        assert source.response.headers["cache-control"] == "no-cache"
        assert source.response.headers["x-accel-buffering"] == "no"
        events = source.iter_sse()
        first = next(events)
        # The producer is still waiting for `go`, which only this line sets: the first event
        # was sent while it was unfinished.
        assert not producer.finished.is_set()
        producer.go.set()
        rest = list(events)
    assert (first.event, first.json()) == ("message_start", {"n": 0})
    assert [(event.event, event.json()) for event in rest] == [
        ("delta", {"n": 1, "text": "x" * 10}),
        ("message_end", {"n": 2}),
    ]
    assert producer.finished.wait(WAIT)
    assert not producer.waited_in_vain
    assert not producer.cancelled.is_set()  # it ran to its end: no GeneratorExit


def test_a_client_that_leaves_mid_stream_stops_and_closes_the_producer() -> None:
    """The producer would send 100,000 events of 1 KB (100 MB, far more than socket buffers
    hold): backpressure holds it once the client stops reading, and the disconnect closes it
    at its `yield` (GeneratorExit), in its own thread."""
    producer = Producer(rest=100_000, payload_bytes=1024)
    producer.go.set()
    bridge = BufferedWSGIBridge(flask_app(producer), workers=2, queue_chunks=4)
    with serve(bridge) as url, httpx.Client(base_url=url, timeout=WAIT) as client:
        with httpx_sse.connect_sse(client, "GET", "/stream") as source:
            first = next(source.iter_sse())
            assert first.event == "message_start"
        # leaving the block closes the connection mid-stream
        assert producer.finished.wait(WAIT)
    assert producer.cancelled.is_set()
    assert producer.produced < 100_000


def test_a_silent_stream_gets_a_ping_comment_between_events(producer: Producer) -> None:
    bridge = BufferedWSGIBridge(flask_app(producer), workers=2, ping_seconds=0.05)
    with (
        serve(bridge) as url,
        httpx.Client(base_url=url, timeout=WAIT) as client,
        client.stream("GET", "/stream") as response,
    ):
        lines = response.iter_lines()
        seen = []
        for line in lines:  # bounded by the producer, which waits WAIT seconds at most
            seen.append(line)
            if line == ": ping":
                break
        producer.go.set()
        seen += list(lines)
    assert seen[:3] == ["event: message_start", 'data: {"n":0}', ""]
    assert seen[3] == ": ping"
    assert [line for line in seen[4:] if line not in (": ping", "")] == [
        "event: delta",
        'data: {"n":1,"text":"xxxxxxxxxx"}',
        "event: message_end",
        'data: {"n":2}',
    ]
    assert not producer.waited_in_vain


def test_other_answers_are_still_sent_whole_with_their_length(producer: Producer) -> None:
    bridge = BufferedWSGIBridge(flask_app(producer), workers=2)
    with serve(bridge) as url, httpx.Client(base_url=url, timeout=WAIT) as client:
        response = client.get("/json")
    assert response.status_code == 200
    assert response.json() == {"ok": True}
    assert response.headers["content-length"] == str(len(response.content))
    assert not producer.finished.is_set()  # nothing streamed


# --- the bridge at the ASGI level: the messages it sends ---------------------------------------


def run_asgi(app: Any, *, disconnect: asyncio.Event | None = None) -> list[dict[str, Any]]:
    """Run `app` for one GET; `receive` gives the (empty) request, then waits for `disconnect`
    (never set: the client stays) before answering ``http.disconnect``. The messages sent."""
    sent: list[dict[str, Any]] = []

    async def main() -> None:
        gone = disconnect or asyncio.Event()
        requested = False

        async def receive() -> dict[str, Any]:
            nonlocal requested
            if not requested:
                requested = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await gone.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "http_version": "1.1",
            "method": "GET",
            "path": "/",
            "root_path": "",
            "query_string": b"",
            "headers": [],
            "client": ("127.0.0.1", 5000),
            "server": ("127.0.0.1", 8000),
        }
        await asyncio.wait_for(app(scope, receive, send), timeout=WAIT)

    asyncio.run(main())
    return sent


def test_each_chunk_of_a_stream_is_its_own_message_and_the_length_is_dropped() -> None:
    closed: list[str] = []

    class Chunks:
        def __iter__(self) -> Iterator[bytes]:
            yield b"event: a\ndata: 1\n\n"
            yield b""  # empty chunks are skipped
            yield b"event: b\ndata: 2\n\n"

        def close(self) -> None:
            closed.append(threading.current_thread().name)

    def app(environ: dict[str, Any], start_response: Any) -> Chunks:
        start_response("200 OK", [("Content-Type", "text/event-stream; charset=utf-8"), ("Content-Length", "36")])
        return Chunks()

    sent = run_asgi(BufferedWSGIBridge(app, workers=1))
    assert sent == [
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/event-stream; charset=utf-8")],
        },
        {"type": "http.response.body", "body": b"event: a\ndata: 1\n\n", "more_body": True},
        {"type": "http.response.body", "body": b"event: b\ndata: 2\n\n", "more_body": True},
        {"type": "http.response.body", "body": b"", "more_body": False},
    ]
    assert len(closed) == 1 and closed[0].startswith("WSGI-stream")  # closed where it was iterated


def test_a_generator_app_that_starts_its_answer_lazily_is_streamed_too() -> None:
    def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/event-stream")])  # PEP 3333: at the first chunk
        yield b"data: 1\n\n"
        yield b"data: 2\n\n"

    sent = run_asgi(BufferedWSGIBridge(app, workers=1))
    assert [message.get("body") for message in sent] == [None, b"data: 1\n\n", b"data: 2\n\n", b""]


def test_an_error_after_the_stream_started_propagates_after_close() -> None:
    closed = threading.Event()

    def events() -> Iterator[bytes]:
        try:
            yield b"data: 1\n\n"
            raise RuntimeError("boom")
        finally:
            closed.set()

    def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/event-stream")])
        return events()

    with pytest.raises(RuntimeError, match="boom"):
        run_asgi(BufferedWSGIBridge(app, workers=1))
    assert closed.is_set()


def test_the_encoder_frames_events_as_the_html_standard_says() -> None:
    assert encode_event("delta", {"text": "a\nb é"}) == b'event: delta\ndata: {"text":"a\\nb \xc3\xa9"}\n\n'
    for bad in ("", "two\nlines", "cr\r"):
        with pytest.raises(ValueError, match="one non-empty line"):
            encode_event(bad, {})


@pytest.mark.parametrize(
    ("accept", "streams"),
    [
        (None, False),
        ("*/*", False),
        ("application/json", False),
        ("text/event-stream", True),
        ("text/event-stream, application/json;q=0.5", True),
        ("application/json, text/event-stream;q=0.5", False),
        ("text/html", False),
    ],
)
def test_a_handler_picks_the_stream_by_the_accept_header(accept: str | None, streams: bool) -> None:
    app = flask.Flask(__name__)
    headers = {"Accept": accept} if accept is not None else {}
    with app.test_request_context("/", headers=headers):
        assert wants_event_stream() is streams


def test_the_keep_alive_is_a_comment() -> None:
    assert PING.startswith(b":") and PING.endswith(b"\n\n")
