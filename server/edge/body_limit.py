"""The request body limit (MAX_BODY_BYTES): a larger body gets 413 problem+json and is never
read into memory; the rest of it is read and discarded first (up to 64 MiB or 5 s; not from a
client waiting for "100 Continue") so that the client can read the answer."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.integration.problems import PAYLOAD_TOO_LARGE, PayloadTooLarge, asgi_problem

DRAIN_MAX_BYTES = 64 * 1024 * 1024
"""The most of an oversized body read (and discarded) before the 413 is sent: nginx's
lingering close, which lets clients that send the whole body before reading (Python's
http.client and urllib, many SDKs) read the answer instead of a connection reset."""

DRAIN_MAX_SECONDS = 5.0
"""How long an oversized body may take to be drained, however little of it has come."""


async def drain_body(receive: Receive) -> None:
    """Read and discard the rest of the request body until it ends, DRAIN_MAX_BYTES have been
    read or DRAIN_MAX_SECONDS have passed, whichever comes first."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DRAIN_MAX_SECONDS
    drained = 0
    while drained <= DRAIN_MAX_BYTES:
        try:
            message = await asyncio.wait_for(receive(), timeout=max(deadline - loop.time(), 0))
        except TimeoutError:
            return
        if message["type"] != "http.request":
            return
        drained += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


class BodyLimitMiddleware:
    """ASGI middleware: a body over `max_bytes` gets 413 problem+json, never read into memory.

    A declared `Content-Length` above the limit is refused before the body is used; a chunked
    body is counted as it streams in and the read fails with `PayloadTooLarge` (answered 413 by
    `server.integration.problems`) as soon as it passes the limit. Either way the rest of the body is first
    read and discarded (`drain_body`: up to 64 MiB or 5 s), then the answer closes the
    connection: a client that sends its whole body before reading the answer (Python's
    http.client) gets the 413, not ECONNRESET. A client that sent `Expect: 100-continue` is
    answered at once and never asked for the body (RFC 9110 section 10.1.1).

    Args:
        app: the next ASGI app.
        max_bytes: the largest body accepted.
        routes: (method, path pattern, largest body) for the routes whose limit differs (a
            document upload's: DOCUMENT_MAX_BYTES plus the multipart framing); the first whose
            method and pattern (matched whole) fit the request applies.
    """

    def __init__(
        self, app: ASGIApp, *, max_bytes: int, routes: Sequence[tuple[str, re.Pattern[str], int]] = ()
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.routes = tuple(routes)

    def limit_for(self, scope: Scope) -> int:
        """The largest body accepted for this request: its route's, else `max_bytes`."""
        method, path = scope.get("method", ""), scope.get("path", "")
        for route_method, pattern, max_bytes in self.routes:
            if method == route_method and pattern.fullmatch(path):
                return max_bytes
        return self.max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes = self.limit_for(scope)
        headers = Headers(scope=scope)
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_bytes:
            waits_for_continue = headers.get("expect", "").lower() == "100-continue"
            if not waits_for_continue and int(declared) <= DRAIN_MAX_BYTES:
                await drain_body(receive)  # the server sends "100 Continue" on a read: not for those
            await asgi_problem(
                send,
                PAYLOAD_TOO_LARGE,
                f"The request body is larger than {max_bytes} bytes.",
                instance=scope.get("path", ""),
                headers={"Connection": "close"},
            )
            return
        received = 0

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_bytes:
                    if message.get("more_body", False):
                        await drain_body(receive)
                    raise PayloadTooLarge(max_bytes)
            return message

        await self.app(scope, counted_receive, send)
