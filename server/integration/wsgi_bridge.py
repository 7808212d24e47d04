"""The bridge from connexion's ASGI middleware to the Flask (WSGI) application: one thread hop
per request, and event streams forwarded as they are produced.

connexion's FlaskApp runs Flask behind a2wsgi's ``WSGIMiddleware``, which streams: the WSGI
thread hands every ASGI message back to the event loop and blocks until the loop has taken it —
the response start, each body chunk, the end of the body, and every read of the request body.
That is four or more cross-thread round trips per request, each a GIL hand-over and a wake-up of
the loop; profiles of the hot path (issue 7) showed a2wsgi's ``Condition`` waits and notifies
among the top entries.

Charter's JSON answers are buffered anyway (response validation reads the whole body before it
lets a byte out) and request bodies are bounded at the edge by ``MAX_BODY_BYTES``. So this
bridge reads the request body on the loop, runs the WSGI application once in a thread pool,
collects the status, headers and body there, and sends them from the loop: one hop to the
thread and one back. Environ construction is a2wsgi's own (``a2wsgi.wsgi.build_environ``), so
Flask sees exactly what it saw before.

**Event streams** (issue 16). An answer whose ``Content-Type`` (from ``start_response``) is
``text/event-stream`` is not buffered: the handler thread returns as soon as the status and
headers are known, and the rest of the iterable is pumped by a thread of a second pool (so
long streams never take the handler threads that JSON requests need), chunk by chunk, through
a bounded hand-over to the loop, which sends each chunk as it comes (no ``Content-Length``;
uvicorn uses chunked transfer encoding):

- *Backpressure*: at most ``queue_chunks`` chunks are in flight (handed over but not yet
  taken by the server); the pumping thread blocks until one is sent. A client that reads
  nothing for ``send_timeout_seconds`` counts as gone (the thread and the loop wait no longer).
- *Disconnect*: while streaming the loop watches ``receive()`` for ``http.disconnect``; it then
  signals the thread, which stops iterating between chunks. ``generator.close()`` cannot be
  called from another thread while the generator runs, so the pumping thread itself closes it.
- *close()*: the iterable's ``close()`` is always called, in the thread that iterated it, when
  it is exhausted, fails, or is stopped (PEP 3333); a generator gets ``GeneratorExit`` there,
  so the producer can keep what it has (e.g. a message with ``finish_reason: cancelled``).
- *Keep-alive*: after ``ping_seconds`` without a chunk the loop sends the comment ``: ping``
  (WHATWG HTML, "Server-sent events": a line starting with a colon is ignored by clients),
  only at an event boundary (the last chunk sent ended with a blank line).
- An exception raised by the iterable after the answer started propagates to the server, which
  ends the connection without the final chunk: the client sees a truncated stream, not a
  complete one.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import io
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import structlog
from a2wsgi.wsgi import build_environ

log = structlog.get_logger(__name__)

EVENT_STREAM = b"text/event-stream"
PING = b": ping\n\n"
"""The keep-alive comment the bridge sends on a silent stream."""


class _Answer:
    """What the WSGI application said through ``start_response`` and its iterable."""

    __slots__ = ("chunks", "headers", "started", "status", "streaming")

    def __init__(self) -> None:
        self.status = 500
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: list[bytes] = []
        self.started = False
        self.streaming: Iterable[bytes] | None = None
        """The iterable still to be pumped, when the answer is an event stream."""

    def start_response(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        """PEP 3333 ``start_response``. Nothing has been sent yet when it is called again with
        ``exc_info``, so the later call simply replaces status and headers."""
        self.status = int(status.split(" ", 1)[0])
        self.headers = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers]
        self.started = True
        return self.chunks.append  # the legacy ``write`` callable

    def is_event_stream(self) -> bool:
        """Whether the answer's Content-Type is ``text/event-stream`` (parameters ignored)."""
        for name, value in self.headers:
            if name == b"content-type":
                return value.split(b";", 1)[0].strip().lower() == EVENT_STREAM
        return False


_END = object()
"""Put on a stream's queue after the last chunk (and after the iterable's close())."""


class _Stream:
    """The hand-over of one event stream's chunks from its pumping thread to the loop.

    ``credits`` bounds the chunks in flight (the thread takes one per chunk, the loop gives it
    back once the chunk is sent); ``stopped`` tells the thread to stop (client gone).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, *, queue_chunks: int, send_timeout: float) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.credits = threading.Semaphore(queue_chunks)
        self.queue_chunks = queue_chunks
        self.send_timeout = send_timeout
        self.stopped = threading.Event()

    def put(self, item: Any) -> None:
        """Hand `item` (a chunk, an exception or `_END`) to the loop; from the pumping thread."""
        self.loop.call_soon_threadsafe(self.queue.put_nowait, item)

    def stop(self) -> None:
        """Tell the pumping thread to stop, and wake it if it waits for a credit; from the loop."""
        self.stopped.set()
        for _ in range(self.queue_chunks):
            self.credits.release()

    def pump(self, iterator: Iterator[bytes], iterable: Iterable[bytes]) -> None:
        """Iterate the rest of the answer in this thread, handing each chunk over, until it
        ends, fails or is stopped; then close the iterable here and hand over `_END`."""
        try:
            try:
                for chunk in iterator:
                    if self.stopped.is_set():
                        break
                    if not chunk:
                        continue
                    if not self.credits.acquire(timeout=self.send_timeout):
                        log.warning("event_stream_client_too_slow", waited_seconds=self.send_timeout)
                        break
                    if self.stopped.is_set():
                        break
                    self.put(chunk)
            finally:
                close = getattr(iterable, "close", None)
                if close is not None:
                    close()
        except BaseException as error:
            self.put(error)
        self.put(_END)


class BufferedWSGIBridge:
    """An ASGI application that serves a WSGI application: the request buffered, the answer
    buffered, except event streams, which are forwarded as they are produced (module doc).

    Args:
        app: the WSGI callable (the Flask application).
        workers: threads in the pool that runs it (``WSGI_THREADS``; a2wsgi's default is also 10).
        stream_threads: threads in the pool that pumps event streams (``SSE_STREAM_THREADS``):
            the most streams producing at once; more wait for a thread.
        ping_seconds: silence on a stream after which ``: ping`` is sent (``SSE_PING_SECONDS``).
        queue_chunks: a stream's chunks in flight before its producer waits (backpressure).
        send_timeout_seconds: how long a stream may wait for a client that reads nothing
            (``SSE_SEND_TIMEOUT_SECONDS``) before it is treated as gone.

    Exceptions raised by the WSGI application propagate to the caller (connexion's exception
    middleware turns them into problem details), as with a2wsgi.
    """

    def __init__(
        self,
        app: Any,
        workers: int = 10,
        *,
        stream_threads: int = 100,
        ping_seconds: float = 15.0,
        queue_chunks: int = 16,
        send_timeout_seconds: float = 30.0,
    ) -> None:
        self.app = app
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="WSGI")
        self.stream_executor = ThreadPoolExecutor(max_workers=stream_threads, thread_name_prefix="WSGI-stream")
        self.ping_seconds = ping_seconds
        self.queue_chunks = queue_chunks
        self.send_timeout_seconds = send_timeout_seconds

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
        loop = asyncio.get_running_loop()
        answer = await loop.run_in_executor(self.executor, context.run, self._run, environ)
        if answer.streaming is not None:
            await self._stream(answer, context, receive, send)
            return
        await send({"type": "http.response.start", "status": answer.status, "headers": answer.headers})
        await send({"type": "http.response.body", "body": b"".join(answer.chunks)})

    def _run(self, environ: dict[str, Any]) -> _Answer:
        """Call the application; iterate its answer whole, unless it is an event stream (then
        only until the headers are known, leaving the rest in ``answer.streaming``)."""
        answer = _Answer()
        iterable = self.app(environ, answer.start_response)
        handed_over = False
        try:
            iterator = iter(iterable)
            if not answer.started:  # PEP 3333: start_response may wait for the first chunk
                for chunk in iterator:
                    answer.chunks.append(chunk)
                    if answer.started:
                        break
            if answer.is_event_stream():
                answer.streaming = iterable
                answer.chunks = [b"".join(answer.chunks), iterator]  # type: ignore[list-item]
                handed_over = True
                return answer
            answer.chunks.extend(iterator)
        finally:
            if not handed_over:
                close = getattr(iterable, "close", None)
                if close is not None:
                    close()
        return answer

    async def _stream(self, answer: _Answer, context: contextvars.Context, receive: Any, send: Any) -> None:
        """Send an event stream's start, then each chunk as its pumping thread produces it,
        pinging on silence, until it ends or the client leaves (module doc)."""
        loop = asyncio.get_running_loop()
        first, iterator = answer.chunks
        stream = _Stream(loop, queue_chunks=self.queue_chunks, send_timeout=self.send_timeout_seconds)
        headers = [(name, value) for name, value in answer.headers if name != b"content-length"]
        pumped = loop.run_in_executor(
            self.stream_executor,
            context.run,
            stream.pump,
            iterator,
            answer.streaming,  # type: ignore[arg-type]
        )

        async def send_within_timeout(message: dict[str, Any]) -> None:
            await asyncio.wait_for(send(message), timeout=self.send_timeout_seconds)

        async def watch_for_disconnect() -> None:
            while True:  # ends with the disconnect, or is cancelled when the stream ends
                if (await receive())["type"] == "http.disconnect":
                    stream.stop()
                    stream.queue.put_nowait(_END)
                    return

        watcher = asyncio.ensure_future(watch_for_disconnect())
        try:
            await send_within_timeout({"type": "http.response.start", "status": answer.status, "headers": headers})
            at_boundary = True
            if first:
                await send_within_timeout({"type": "http.response.body", "body": first, "more_body": True})
                at_boundary = first.endswith((b"\n\n", b"\r\n\r\n", b"\r\r"))
            while True:
                try:
                    item = await asyncio.wait_for(stream.queue.get(), timeout=self.ping_seconds)
                except TimeoutError:
                    if at_boundary:
                        await send_within_timeout({"type": "http.response.body", "body": PING, "more_body": True})
                    continue
                if item is _END:
                    break
                if isinstance(item, BaseException):
                    raise item
                await send_within_timeout({"type": "http.response.body", "body": item, "more_body": True})
                stream.credits.release()
                at_boundary = item.endswith((b"\n\n", b"\r\n\r\n", b"\r\r"))
            if not stream.stopped.is_set():
                await send_within_timeout({"type": "http.response.body", "body": b"", "more_body": False})
        except TimeoutError:
            log.warning("event_stream_client_too_slow", waited_seconds=self.send_timeout_seconds)
        finally:
            stream.stop()
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            await asyncio.shield(pumped)  # the iterable is closed before the request is done
