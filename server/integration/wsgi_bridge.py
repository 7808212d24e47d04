"""The bridge from connexion's ASGI middleware to the Flask (WSGI) application: one thread hop
per request.

connexion's FlaskApp runs Flask behind a2wsgi's ``WSGIMiddleware``, which streams: the WSGI
thread hands every ASGI message back to the event loop and blocks until the loop has taken it —
the response start, each body chunk, the end of the body, and every read of the request body.
That is four or more cross-thread round trips per request, each a GIL hand-over and a wake-up of
the loop; profiles of the hot path (issue 7) showed a2wsgi's ``Condition`` waits and notifies
among the top entries.

Charter's answers are JSON documents that are buffered anyway (response validation reads the
whole body before it lets a byte out) and request bodies are bounded at the edge by
``MAX_BODY_BYTES``. So this bridge reads the request body on the loop, runs the WSGI application
once in a thread pool, collects the status, headers and body there, and sends them from the
loop: one hop to the thread and one back. Environ construction is a2wsgi's own
(``a2wsgi.wsgi.build_environ``), so Flask sees exactly what it saw before.
"""

from __future__ import annotations

import asyncio
import contextvars
import io
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from a2wsgi.wsgi import build_environ


class _Answer:
    """What the WSGI application said through ``start_response`` and its iterable."""

    __slots__ = ("chunks", "headers", "status")

    def __init__(self) -> None:
        self.status = 500
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: list[bytes] = []

    def start_response(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        """PEP 3333 ``start_response``. Nothing has been sent yet when it is called again with
        ``exc_info``, so the later call simply replaces status and headers."""
        self.status = int(status.split(" ", 1)[0])
        self.headers = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers]
        return self.chunks.append  # the legacy ``write`` callable


class BufferedWSGIBridge:
    """An ASGI application that serves a WSGI application, buffering request and response.

    ``app``: the WSGI callable (the Flask application); ``workers``: threads in the pool that
    runs it (``WSGI_THREADS``; a2wsgi's default is also 10). Exceptions raised by the WSGI
    application propagate to the caller (connexion's exception middleware turns them into
    problem details), as with a2wsgi.
    """

    def __init__(self, app: Any, workers: int = 10) -> None:
        self.app = app
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="WSGI")

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":  # as a2wsgi: nothing to start or stop on the WSGI side
            await receive()
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            await send({"type": "websocket.close", "code": 1000})
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client left before its request was complete: nobody to answer
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        environ = build_environ(scope, io.BytesIO(bytes(body)))  # type: ignore[arg-type]
        # The whole body is in hand, so the stream is terminated (PEP 3333 extension honoured by
        # Werkzeug): a chunked request without Content-Length is read in full, not as empty.
        environ["wsgi.input_terminated"] = True
        context = contextvars.copy_context()
        answer = await asyncio.get_running_loop().run_in_executor(self.executor, context.run, self._run, environ)
        await send({"type": "http.response.start", "status": answer.status, "headers": answer.headers})
        await send({"type": "http.response.body", "body": b"".join(answer.chunks)})

    def _run(self, environ: dict[str, Any]) -> _Answer:
        answer = _Answer()
        iterable = self.app(environ, answer.start_response)
        try:
            answer.chunks.extend(iterable)
        finally:
            close = getattr(iterable, "close", None)
            if close is not None:
                close()
        return answer
