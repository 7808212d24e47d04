"""Distributed tracing with OpenTelemetry, only when it is asked for (README "Tracing").

With OTEL_EXPORTER_OTLP_ENDPOINT set (or a span exporter given, in tests), a process gets a
`Tracing`: a tracer provider of its own (the global one is never set), spans exported over OTLP
(HTTP/protobuf, `<endpoint>/v1/traces`) in batches, and

- a server span per request: opentelemetry-instrumentation-asgi's middleware, outermost in the
  stack (so a request refused by the edge or by connexion has one too), named
  ``METHOD /route/{template}`` from the contract and continuing an incoming `traceparent`;
- a client span per SQL statement: opentelemetry-instrumentation-sqlalchemy on the process's
  engine (the request's span reaches the handler thread with the copied context, so queries
  are its children);
- a client span per outgoing httpx request (webhooks, crawls, the chat server):
  opentelemetry-instrumentation-httpx;
- a consumer span per job delivery (`job_span`, around `services.jobs.run` in the worker);
- the trace id in every log line made inside a span (`add_trace_ids`, a structlog processor)
  and in problem details (`trace_id`, through `request_context.set_trace_id_reader`).

Without it nothing of this is installed: no middleware, no engine listener, httpx untouched,
no log processor; `create_app` and the worker do not import this module's OpenTelemetry
imports at all (they are inside `start_tracing`).
"""

from __future__ import annotations

import atexit
import contextlib
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from server.contract import RouteTable
from server.integration import request_context

JOB_SPAN = "job"
"""The job span's name until its kind is known; then ``job <kind>``."""


@dataclass
class Tracing:
    """A process's tracing: its tracer provider and what was instrumented with it."""

    provider: Any  # opentelemetry.sdk.trace.TracerProvider
    instrumented: list[Callable[[], None]] = field(default_factory=list)

    def tracer(self) -> Any:
        from opentelemetry import trace

        return trace.get_tracer("charter", tracer_provider=self.provider)

    def instrument_engine(self, engine: Any) -> None:
        """Spans for every statement `engine` runs (opentelemetry-instrumentation-sqlalchemy).

        `skip_dep_check`: the instrumentation declares ``sqlalchemy < 2.1`` while we run 2.1;
        it hooks `before/after_cursor_execute`, which 2.1 keeps (tests/server/test_tracing.py
        checks the spans)."""
        from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

        instrumentor = SQLAlchemyInstrumentor()
        if instrumentor.is_instrumented_by_opentelemetry:  # a second app in one process (tests)
            instrumentor.uninstrument()
        instrumentor.instrument(engine=engine, tracer_provider=self.provider, skip_dep_check=True)
        self.instrumented.append(instrumentor.uninstrument)

    def instrument_httpx(self) -> None:
        """Spans for every httpx request of this process (opentelemetry-instrumentation-httpx)."""
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

        instrumentor = HTTPXClientInstrumentor()
        if instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.uninstrument()
        instrumentor.instrument(tracer_provider=self.provider)
        self.instrumented.append(instrumentor.uninstrument)

    def asgi_middleware(self, routes: RouteTable) -> tuple[type, dict[str, Any]]:
        """The server-span middleware and its arguments, for `app.add_middleware`."""
        from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

        def name_by_route(span: Any, scope: MutableMapping[str, Any]) -> None:
            if scope.get("type") != "http" or not span.is_recording():
                return
            method = scope.get("method", "")
            matched = routes.match(method, scope.get("path", ""))
            if matched is None:
                span.update_name(method)
                return
            operation_id, template = matched
            span.update_name(f"{method} {template}")
            span.set_attribute("http.route", template)
            span.set_attribute("charter.operation_id", operation_id)

        return OpenTelemetryMiddleware, {
            "tracer_provider": self.provider,
            "server_request_hook": name_by_route,
            "exclude_spans": ["receive", "send"],  # one span per request, not one per ASGI message
        }

    @contextlib.contextmanager
    def job_span(self, job_id: str) -> Iterator[Any]:
        """A consumer span around one delivery of `job_id`; the caller names it by kind and sets
        its outcome (`name_job_span`)."""
        from opentelemetry.trace import SpanKind

        with self.tracer().start_as_current_span(
            JOB_SPAN, kind=SpanKind.CONSUMER, attributes={"charter.job.id": job_id}
        ) as span:
            yield span

    def shutdown(self) -> None:
        """Undo the instrumentation and flush and stop the exporter (at exit; tests)."""
        for undo in reversed(self.instrumented):
            undo()
        self.instrumented.clear()
        request_context.set_trace_id_reader(None)
        self.provider.shutdown()


def name_job_span(span: Any, *, kind: str | None, outcome: str, attempt: int, error: BaseException | None) -> None:
    """Name a `job_span` by the job's kind and record how the delivery ended."""
    from opentelemetry.trace import Status, StatusCode

    if kind:
        span.update_name(f"{JOB_SPAN} {kind}")
        span.set_attribute("charter.job.kind", kind)
    span.set_attribute("charter.job.outcome", outcome)
    span.set_attribute("charter.job.attempt", attempt)
    if error is not None:
        span.record_exception(error)
        span.set_status(Status(StatusCode.ERROR, type(error).__name__))


def current_trace_id() -> str | None:
    """The current span's trace id (32 lower-case hex digits), or None outside a valid span."""
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


_started = False
"""Whether `start_tracing` started tracing in this process (until then `add_trace_ids` imports
nothing and returns at once)."""


def add_trace_ids(logger: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: `trace_id` and `span_id` on a line logged inside a span. Always in
    the logging chain (structlog caches a logger's chain at its first use, so a step added by a
    later configuration would never reach it); it does nothing until tracing started."""
    if not _started:
        return event
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event.setdefault("trace_id", format(context.trace_id, "032x"))
        event.setdefault("span_id", format(context.span_id, "016x"))
    return event


def start_tracing(*, service_name: str, endpoint: str | None, exporter: Any = None) -> Tracing | None:
    """The process's `Tracing`, or None (and nothing imported or installed) when neither
    `endpoint` (OTEL_EXPORTER_OTLP_ENDPOINT) nor `exporter` is given.

    Args:
        service_name: `service.name` of the spans (OTEL_SERVICE_NAME).
        endpoint: the OTLP/HTTP collector's base URL; spans go to ``<endpoint>/v1/traces`` in
            batches (BatchSpanProcessor: a background thread, never the request's).
        exporter: a span exporter to use instead, synchronously (tests: InMemorySpanExporter).
    """
    if endpoint is None and exporter is None:
        return None
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{endpoint.rstrip('/')}/v1/traces")))
        atexit.register(provider.shutdown)
    request_context.set_trace_id_reader(current_trace_id)
    tracing = Tracing(provider)
    tracing.instrument_httpx()
    global _started
    _started = True
    return tracing
