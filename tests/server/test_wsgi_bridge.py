"""The buffered ASGI→WSGI bridge that serves the Flask app inside connexion (issue 7)."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import subprocess
import sys
from typing import Any

import pytest

from server.app import create_app
from server.integration.wsgi_bridge import BufferedWSGIBridge
from tests.helpers import ROOT, TEST_SECRET, make_settings
from tests.processes import charter_environment

REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="none")


def scope(method: str = "POST", headers: list[tuple[bytes, bytes]] | None = None) -> dict[str, Any]:
    return {
        "type": "http",
        "http_version": "1.1",
        "method": method,
        "path": "/echo",
        "root_path": "",
        "query_string": b"a=1",
        "headers": headers or [],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
    }


def call(app: Any, request_scope: dict[str, Any], messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run the ASGI app with these incoming messages; the messages it sent."""
    incoming = list(messages)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def main() -> None:
        REQUEST_ID.set("abc123")
        await app(request_scope, receive, send)

    asyncio.run(main())
    return sent


def echo(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """Answers with what it read: the body (until the stream ends), the query, a context var."""
    body = environ["wsgi.input"].read() if environ.get("wsgi.input_terminated") else b""
    write = start_response("201 Created", [("Content-Type", "text/plain"), ("X-Request-Id", REQUEST_ID.get())])
    write(b"body=")
    return [body, b";query=", environ["QUERY_STRING"].encode()]


def test_a_chunked_request_body_reaches_the_app_whole_and_the_answer_is_sent_in_one_piece() -> None:
    sent = call(
        BufferedWSGIBridge(echo, workers=2),
        scope(headers=[(b"transfer-encoding", b"chunked")]),
        [
            {"type": "http.request", "body": b"hello ", "more_body": True},
            {"type": "http.request", "body": b"world", "more_body": False},
        ],
    )
    assert sent[0] == {
        "type": "http.response.start",
        "status": 201,
        "headers": [(b"content-type", b"text/plain"), (b"x-request-id", b"abc123")],
    }
    assert sent[1] == {"type": "http.response.body", "body": b"body=hello world;query=a=1"}
    assert len(sent) == 2


def test_the_app_runs_in_the_pool_with_the_callers_context() -> None:
    seen: dict[str, Any] = {}

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        import threading

        seen["thread"] = threading.current_thread().name
        seen["request_id"] = REQUEST_ID.get()
        start_response("200 OK", [])
        return [b""]

    call(BufferedWSGIBridge(app, workers=1), scope("GET"), [{"type": "http.request", "body": b""}])
    assert seen["thread"].startswith("WSGI")
    assert seen["request_id"] == "abc123"


def test_an_exception_in_the_app_propagates_and_nothing_is_sent() -> None:
    closed: list[bool] = []

    class Failing:
        def __iter__(self):
            raise RuntimeError("boom")

        def close(self) -> None:
            closed.append(True)

    def app(environ: dict[str, Any], start_response: Any) -> Failing:
        start_response("200 OK", [])
        return Failing()

    sent: list[dict[str, Any]] = []
    with pytest.raises(RuntimeError, match="boom"):
        sent = call(BufferedWSGIBridge(app), scope("GET"), [{"type": "http.request", "body": b""}])
    assert sent == []
    assert closed == [True]  # PEP 3333: close() is called whatever happened


def test_a_client_that_leaves_mid_body_gets_no_answer_and_the_app_is_not_run() -> None:
    ran: list[bool] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        ran.append(True)
        start_response("200 OK", [])
        return [b""]

    sent = call(BufferedWSGIBridge(app), scope(), [{"type": "http.request", "body": b"part", "more_body": True}])
    assert sent == []
    assert ran == []


def test_the_service_is_served_through_the_bridge_with_wsgi_threads_threads(tmp_path) -> None:
    app = create_app(make_settings(f"sqlite:///{tmp_path / 'bridge.db'}", tmp_path / "var", wsgi_threads=3))
    bridge = app._middleware_app.asgi_app
    assert isinstance(bridge, BufferedWSGIBridge)
    assert bridge.executor._max_workers == 3


def test_a_serving_process_freezes_its_start_up_heap(tmp_path) -> None:
    """`server.asgi` (what `charter serve` and uvicorn load) moves the start-up objects out of
    the collector's sight; the test process itself is left alone."""
    environment = charter_environment(
        DATABASE_URL=f"sqlite:///{tmp_path / 'frozen.db'}", ENV="test", JWT_SECRET=TEST_SECRET, VAR_DIR=str(tmp_path)
    )
    script = "import gc, server.asgi; print(gc.get_freeze_count())"
    result = subprocess.run(
        [sys.executable, "-c", script], env=environment, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.strip()) > 10_000  # the contract, validators and routes: tens of thousands
    assert gc.get_freeze_count() == 0
