"""Event streams through the whole Charter stack, served by uvicorn on 127.0.0.1: the edge
(request id, access log, metrics, security headers, CORS, rate limit, body limit), connexion
(routing, access policy, response validation) and the bridge (issue 16, "Streaming (SSE)").

How the streaming operation gets in without entering the public contract: the app is built by
`create_app` from the bundled contract plus one test-only operation, `GET
/api/v1/stream-probes` (tag `stream-probes`, public), whose handler module
`handlers.stream_probes` exists only in this test's `sys.modules`. It declares both
`application/json` and `text/event-stream` and picks one by `Accept`, as a conversation's
`POST …/messages` will. `openapi/` is untouched, so no other test sees it.
"""

from __future__ import annotations

import copy
import logging
import sys
import threading
import types
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import httpx_sse
import pytest

import server.app
from handlers.responses import json_answer
from server.app import create_app
from server.contract import bundle
from server.integration.event_stream import event_stream_response, wants_event_stream
from tests.helpers import make_settings
from tests.served import serve
from tests.server.test_event_streams import WAIT, Producer

ORIGIN = "https://app.example"
PATH = "/api/v1/stream-probes"
PRODUCERS: dict[str, Producer] = {}
"""The producer each request names with `?probe=`; the tests register them."""


def stream_probe(probe: str) -> Any:
    """The test-only handler: the probe's events as a stream, or a JSON document."""
    if wants_event_stream():
        return event_stream_response(PRODUCERS[probe].events())
    return json_answer({"probe": probe})


def spec_with_stream_probe() -> dict[str, Any]:
    """The bundled contract plus the test-only streaming operation."""
    spec = copy.deepcopy(bundle())
    ok_headers = {
        name: {"$ref": f"#/components/headers/{name}"}
        for name in ("X-Request-ID", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")
    }
    spec["tags"].append({"name": "stream-probes", "description": "Test only."})
    spec["paths"][PATH] = {
        "get": {
            "operationId": "streamProbe",
            "x-access": "public",
            "tags": ["stream-probes"],
            "summary": "Test only",
            "description": "Test only.",
            "security": [],
            "parameters": [
                {"name": "probe", "in": "query", "required": True, "schema": {"type": "string", "maxLength": 40}}
            ],
            "responses": {
                "200": {
                    "description": "A document, or its events.",
                    "headers": ok_headers,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "additionalProperties": False,
                                "required": ["probe"],
                                "properties": {"probe": {"type": "string"}},
                            }
                        },
                        "text/event-stream": {"schema": {"type": "string"}},
                    },
                },
                "400": {"$ref": "#/components/responses/BadRequest"},
                "429": {"$ref": "#/components/responses/TooManyRequests"},
                "500": {"$ref": "#/components/responses/InternalError"},
            },
        }
    }
    return spec


class AccessLines(logging.Handler):
    """Keeps the `request_completed` entries of the access log (structlog's event dicts)."""

    def __init__(self) -> None:
        super().__init__()
        self.entries: list[dict[str, Any]] = []
        self.added = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        if isinstance(record.msg, dict) and record.msg.get("event") == "request_completed":
            with self.added:
                self.entries.append(dict(record.msg))
                self.added.notify_all()

    def wait_for(self, request_id: str) -> dict[str, Any]:
        """The entry of `request_id`, waiting for it (bounded): a stream's line is written after
        its last chunk has been sent, possibly after the client has read it."""
        with self.added:
            found = self.added.wait_for(
                lambda: [entry for entry in self.entries if entry.get("request_id") == request_id], timeout=WAIT
            )
        assert found, f"no access log line for {request_id}"
        return found[0]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, AccessLines]]:
    workdir = tmp_path_factory.mktemp("streams")
    module = types.ModuleType("handlers.stream_probes")
    module.stream_probe = stream_probe  # type: ignore[attr-defined]
    access = AccessLines()
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(sys.modules, "handlers.stream_probes", module)
        patch.setattr(server.app, "bundle", spec_with_stream_probe)
        settings = make_settings(
            f"sqlite:///{workdir / 'streams.db'}",
            workdir / "var",
            log_level="INFO",
            log_format="json",
            cors_origins=[ORIGIN],
            wsgi_threads=4,
        )
        app = create_app(settings)
        logging.getLogger("charter.access").addHandler(access)
        try:
            with serve(app) as url:
                yield url, access
        finally:
            logging.getLogger("charter.access").removeHandler(access)


def register(producer: Producer) -> str:
    name = f"p{len(PRODUCERS)}"
    PRODUCERS[name] = producer
    return name


def test_a_stream_passes_every_edge_layer_unbuffered_and_is_logged_at_its_end(served) -> None:
    url, access = served
    producer = Producer()
    probe = register(producer)
    headers = {"Accept": "text/event-stream", "Accept-Encoding": "gzip, br", "Origin": ORIGIN}
    body = b""
    with (
        httpx.Client(base_url=url, timeout=WAIT) as client,
        client.stream("GET", PATH, params={"probe": probe}, headers=headers) as response,
    ):
        assert response.status_code == 200
        chunks = response.iter_raw()
        while b"\n\n" not in body:  # the first event, bounded by WAIT
            body += next(chunks)
        assert not producer.finished.is_set()  # it waits for `go`: the edge did not buffer
        producer.go.set()
        body += b"".join(chunks)
    got = response.headers
    assert got["content-type"].startswith("text/event-stream")
    assert got["cache-control"] == "no-cache"
    assert got["x-accel-buffering"] == "no"
    assert "content-length" not in got
    assert "content-encoding" not in got
    assert got["x-content-type-options"] == "nosniff"
    assert got["content-security-policy"].startswith("default-src 'none'")
    assert got["access-control-allow-origin"] == ORIGIN
    assert int(got["ratelimit-remaining"]) >= 0
    assert body.startswith(b'event: message_start\ndata: {"n":0}\n\n')
    assert body.endswith(b'event: message_end\ndata: {"n":2}\n\n')
    entry = access.wait_for(got["x-request-id"])
    assert entry["status"] == 200
    assert entry["operation_id"] == "streamProbe"
    assert entry["bytes"] == len(body)


def test_the_same_operation_answers_json_when_json_is_accepted(served) -> None:
    url, access = served
    producer = Producer()
    probe = register(producer)
    with httpx.Client(base_url=url, timeout=WAIT) as client:
        response = client.get(PATH, params={"probe": probe}, headers={"Accept": "application/json"})
    assert response.status_code == 200
    assert response.json() == {"probe": probe}
    assert response.headers["content-length"] == str(len(response.content))
    assert access.wait_for(response.headers["x-request-id"])["bytes"] == len(response.content)
    assert not producer.finished.is_set()  # never iterated


def test_leaving_mid_stream_closes_the_producer(served) -> None:
    url, _ = served
    producer = Producer(rest=100_000, payload_bytes=1024)
    producer.go.set()
    probe = register(producer)
    with (
        httpx.Client(base_url=url, timeout=WAIT) as client,
        httpx_sse.connect_sse(client, "GET", PATH, params={"probe": probe}) as source,
    ):
        assert next(source.iter_sse()).event == "message_start"
    assert producer.finished.wait(WAIT)
    assert producer.cancelled.is_set()
    assert producer.produced < 100_000


def test_fifty_streams_at_once_while_json_requests_are_still_answered(served) -> None:
    """Four handler threads (WSGI_THREADS=4), fifty open streams: streams are pumped by their own
    pool, so the handlers stay free for other requests."""
    url, _ = served
    streams = 50
    producers = [Producer() for _ in range(streams)]
    probes = [register(producer) for producer in producers]
    started = threading.Barrier(streams + 1, timeout=WAIT)

    def read_stream(i: int) -> list[str]:
        with (
            httpx.Client(base_url=url, timeout=WAIT) as client,
            httpx_sse.connect_sse(client, "GET", PATH, params={"probe": probes[i]}) as source,
        ):
            events = source.iter_sse()
            names = [next(events).event]
            started.wait()  # every stream has its first event and is still open
            names += [event.event for event in events]
            return names

    with ThreadPoolExecutor(max_workers=streams, thread_name_prefix="reader") as pool:
        results = [pool.submit(read_stream, i) for i in range(streams)]
        started.wait()
        assert sum(producer.finished.is_set() for producer in producers) == 0  # all fifty still open
        with httpx.Client(base_url=url, timeout=WAIT) as client:
            statuses = [client.get("/api/v1/health").status_code for _ in range(20)]
        assert statuses == [200] * 20
        for producer in producers:
            producer.go.set()
        answers = [result.result(timeout=WAIT) for result in results]
    assert answers == [["message_start", "delta", "message_end"]] * streams
    assert sum(producer.waited_in_vain for producer in producers) == 0
