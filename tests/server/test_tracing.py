"""Tracing (issue 18, "Tracing"; `server/tracing.py`), with the SDK's InMemorySpanExporter: one
request's span tree (the server span, named by its route, with the request's SQL statements
as its children, continuing an incoming `traceparent`), its trace id in the access log line
and in a problem's body (checked against the contract), a job's span with its statements under
it, an outgoing httpx call's span; OTLP export to a collector on 127.0.0.1 when
OTEL_EXPORTER_OTLP_ENDPOINT is set; and nothing installed at all when it is not."""

from __future__ import annotations

import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from pydantic import ValidationError
from starlette.testclient import TestClient

from persistence.unit_of_work import UnitOfWork
from server.app import create_app
from server.integration import request_context
from server.worker import Worker
from services import jobs as job_services
from services.clock import SystemClock
from tests.helpers import ROOT, ContractClient, make_settings, register_and_login, root_logging_kept

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN = "00f067aa0ba902b7"


def _hex(number: int, width: int) -> str:
    return format(number, f"0{width}x")


@pytest.fixture
def traced(database_url, tmp_path, openapi) -> Iterator[tuple[Any, ContractClient, InMemorySpanExporter]]:
    """An app of its own tracing into memory, JSON logs; (app, client, exporter)."""
    exporter = InMemorySpanExporter()
    with root_logging_kept():
        settings = make_settings(database_url, tmp_path, log_format="json", log_level="INFO")
        app = create_app(settings, span_exporter=exporter)
        try:
            with TestClient(app, raise_server_exceptions=False) as test_client:
                yield app, ContractClient(test_client, openapi), exporter
        finally:
            app.app.extensions["charter_tracing"].shutdown()
            app.app.extensions["charter"].engine.dispose()


def _server_span(exporter: InMemorySpanExporter, name: str) -> Any:
    servers = [span for span in exporter.get_finished_spans() if span.kind is SpanKind.SERVER and span.name == name]
    assert len(servers) == 1, [(span.name, span.kind) for span in exporter.get_finished_spans()]
    return servers[0]


def _db_spans(exporter: InMemorySpanExporter, trace_id: int) -> list[Any]:
    return [
        span
        for span in exporter.get_finished_spans()
        if span.kind is SpanKind.CLIENT
        and span.context.trace_id == trace_id
        and ("db.system" in span.attributes or "db.system.name" in span.attributes)
    ]


def test_a_request_is_a_server_span_with_its_queries_as_children(traced, caplog) -> None:
    _, client, exporter = traced
    account = register_and_login(client)
    exporter.clear()
    caplog.clear()
    listed = client.get(account.tasks_path, headers=account.headers)
    assert listed.status_code == 200

    server = _server_span(exporter, "GET /api/v1/users/{user_id}/tasks")
    assert server.attributes["http.route"] == "/api/v1/users/{user_id}/tasks"
    assert server.attributes["charter.operation_id"] == "listTasks"
    queries = _db_spans(exporter, server.context.trace_id)
    assert queries, "no SQL span in the request's trace"
    assert {span.parent.span_id for span in queries} == {server.context.span_id}
    statements = " ".join(
        str(span.attributes.get("db.statement") or span.attributes.get("db.query.text")) for span in queries
    )
    assert "tasks" in statements
    # one span per request: no per-ASGI-message spans
    assert {span.kind for span in exporter.get_finished_spans()} == {SpanKind.SERVER, SpanKind.CLIENT}

    lines = [record.msg for record in caplog.records if isinstance(record.msg, dict)]
    access = [line for line in lines if line.get("event") == "request_completed"]
    assert len(access) == 1
    assert access[0]["trace_id"] == _hex(server.context.trace_id, 32)
    assert access[0]["request_id"] == listed.headers["x-request-id"]


def test_an_incoming_traceparent_is_continued(traced) -> None:
    _, client, exporter = traced
    exporter.clear()
    response = client.get("/api/v1/health", headers={"traceparent": f"00-{TRACE_ID}-{PARENT_SPAN}-01"})
    assert response.status_code == 200
    server = _server_span(exporter, "GET /api/v1/health")
    assert _hex(server.context.trace_id, 32) == TRACE_ID
    assert _hex(server.parent.span_id, 16) == PARENT_SPAN


def test_a_problem_carries_the_trace_id(traced) -> None:
    _, client, exporter = traced
    account = register_and_login(client)
    exporter.clear()
    missing = client.get(f"{account.tasks_path}/{uuid.uuid4()}", headers=account.headers)  # checked by the contract
    assert missing.status_code == 404
    server = _server_span(exporter, "GET /api/v1/users/{user_id}/tasks/{task_id}")
    assert missing.json()["trace_id"] == _hex(server.context.trace_id, 32)
    refused = client.get("/api/v1/auth/me")  # refused by connexion's security, before any handler
    assert refused.status_code == 401
    assert len(refused.json()["trace_id"]) == 32


def test_a_job_is_a_span_with_its_queries_inside(database_url, tmp_path) -> None:
    exporter = InMemorySpanExporter()
    with root_logging_kept():
        worker = Worker(make_settings(database_url, tmp_path), threads=1, span_exporter=exporter)
    try:
        with worker.unit_of_work() as uow:
            job = job_services.enqueue(
                uow=uow, clock=SystemClock(), engine=worker.engine, kind="maintenance.purge_expired", owner_id=None
            )
        exporter.clear()
        worker.handle(str(job.id))
        spans = exporter.get_finished_spans()
        jobs = [span for span in spans if span.kind is SpanKind.CONSUMER]
        assert [span.name for span in jobs] == ["job maintenance.purge_expired"]
        span = jobs[0]
        assert span.attributes["charter.job.id"] == str(job.id)
        assert span.attributes["charter.job.outcome"] == "succeeded"
        assert span.attributes["charter.job.attempt"] == 1
        queries = _db_spans(exporter, span.context.trace_id)
        assert len(queries) >= 3  # the claim, the purge, the outcome
        assert {query.parent.span_id for query in queries} == {span.context.span_id}
        with UnitOfWork(worker.session_factory) as uow:
            assert uow.jobs.get(job.id).status == "succeeded"
    finally:
        worker.tracing.shutdown()
        worker.db.dispose()


class _Collector(BaseHTTPRequestHandler):
    """An OTLP/HTTP collector double: keeps every POST's path, content type and body."""

    received: list[tuple[str, str, bytes]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append((self.path, self.headers["Content-Type"], body))  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    server.received = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_spans_go_to_the_otlp_endpoint_and_outgoing_calls_are_spans(database_url, tmp_path, collector) -> None:
    endpoint = f"http://127.0.0.1:{collector.server_address[1]}"
    with root_logging_kept():
        app = create_app(make_settings(database_url, tmp_path, otel_exporter_otlp_endpoint=endpoint + "/"))
    tracing = app.app.extensions["charter_tracing"]
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            assert client.get("/api/v1/health").status_code == 200
        with httpx.Client() as outgoing:  # what webhooks, crawls and the chat client use
            assert outgoing.get(f"{endpoint}/nothing").status_code == 501
        assert tracing.provider.force_flush(10_000)
    finally:
        tracing.shutdown()
        app.app.extensions["charter"].engine.dispose()
    assert collector.received
    names = set()
    for path, content_type, body in collector.received:
        assert (path, content_type) == ("/v1/traces", "application/x-protobuf")
        request = ExportTraceServiceRequest.FromString(body)
        for resource in request.resource_spans:
            service = {a.key: a.value.string_value for a in resource.resource.attributes}["service.name"]
            assert service == "charter"
            names |= {span.name for scoped in resource.scope_spans for span in scoped.spans}
    assert "GET /api/v1/health" in names
    assert "GET" in names  # the httpx client span


def test_without_an_endpoint_nothing_is_installed(app) -> None:
    """The session's app (no OTEL_EXPORTER_OTLP_ENDPOINT): no tracing object, no server-span
    middleware, no trace id reader, no engine listener, httpx untouched."""
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    assert app.app.extensions["charter_tracing"] is None
    middlewares = [entry[0] if isinstance(entry, tuple) else entry for entry in app.middleware.middlewares]
    assert all("opentelemetry" not in getattr(entry, "__module__", "") for entry in middlewares)
    assert request_context.current_trace_id() is None
    assert not HTTPXClientInstrumentor().is_instrumented_by_opentelemetry
    assert not SQLAlchemyInstrumentor().is_instrumented_by_opentelemetry
    engine = app.app.extensions["charter"].engine
    listeners = list(engine.dispatch.before_cursor_execute)
    assert all("opentelemetry" not in getattr(listener, "__module__", "") for listener in listeners)


def test_without_an_endpoint_no_instrumentation_is_imported(tmp_path) -> None:
    """Building an app without tracing imports no OpenTelemetry instrumentation, SDK tracing or
    exporter module (redis-py imports the API and the metrics SDK on its own: not ours), and
    its log chain's trace step (always there: structlog caches chains) adds nothing."""
    code = (
        "import sys\n"
        "from server.app import create_app\n"
        "import structlog\n"
        "from server.tracing import add_trace_ids\n"
        "create_app()\n"
        "print(add_trace_ids in structlog.get_config()['processors'], add_trace_ids(None, 'info', {'a': 1}))\n"
        "print(sorted(m for m in sys.modules if m.startswith(('opentelemetry.instrumentation',"
        " 'opentelemetry.sdk.trace', 'opentelemetry.exporter'))))\n"
    )
    environment = {
        "PATH": "/usr/bin:/bin",
        "DATABASE_URL": f"sqlite:///{tmp_path}/off.db",
        "VAR_DIR": str(tmp_path),
        "ENV": "test",
        "LOG_LEVEL": "ERROR",
    }
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-2:] == ["True {'a': 1}", "[]"]


@pytest.mark.parametrize(
    ("value", "expected"), [("", None), ("  ", None), ("http://collector:4318", "http://collector:4318")]
)
def test_an_empty_endpoint_is_unset(tmp_path, value: str, expected: str | None) -> None:
    settings = make_settings("sqlite:///unused.db", tmp_path, otel_exporter_otlp_endpoint=value)
    assert settings.otel_exporter_otlp_endpoint == expected


def test_an_endpoint_that_is_not_http_is_refused(tmp_path) -> None:
    with pytest.raises(ValidationError, match="otel_exporter_otlp_endpoint"):
        make_settings("sqlite:///unused.db", tmp_path, otel_exporter_otlp_endpoint="grpc://collector:4317")
