"""Logging: structlog for our lines, and the same renderer for the standard library's
(connexion, uvicorn, SQLAlchemy), so every line has one format (LOG_FORMAT) and threshold
(LOG_LEVEL), and carries the request id bound by `server.integration.request_context`."""

from __future__ import annotations

import logging
import sys

import structlog
from structlog.typing import Processor


def configure_logging(*, level: str = "INFO", fmt: str = "console", trace_ids: Processor | None = None) -> None:
    """Route structlog and stdlib logging to standard error as JSON lines or console text.

    Args:
        level: DEBUG, INFO, WARNING or ERROR.
        fmt: ``json`` (one object per line, for production) or ``console`` (for people).
        trace_ids: the processor that adds `trace_id` and `span_id` to lines logged inside a
            span (`server.tracing.add_trace_ids`, which does nothing until tracing starts: the
            wiring always passes it, since structlog caches each logger's chain at its first
            use); None: no such step at all.
    """
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    if trace_ids is not None:
        shared.append(trace_ids)
    renderer = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False, exception_formatter=structlog.dev.plain_traceback)
    )
    structlog.configure(
        # filter_by_level first: a line below LOG_LEVEL is dropped before any processor runs.
        processors=[structlog.stdlib.filter_by_level, *shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    final = [structlog.stdlib.ProcessorFormatter.remove_processors_meta]
    if fmt == "json":
        final.append(structlog.processors.format_exc_info)
    final.append(renderer)
    formatter = structlog.stdlib.ProcessorFormatter(foreign_pre_chain=shared, processors=final)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
