"""Edge middleware from briefs 000/001: security headers on every answer, CORS from an
allow-list, and a request body size limit that never reads an oversized body into memory."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterable

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.problems import FORBIDDEN, PAYLOAD_TOO_LARGE, PayloadTooLarge, asgi_problem, problem_body

API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
"""JSON answers need nothing: a browser that renders one by mistake runs nothing and loads nothing."""

DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
)
"""Swagger UI is served from our own files (no CDN); its page starts with an inline script and
style, so only the docs pages allow inline code."""

DOCS_PREFIX = "/api/v1/ui"


def reference_docs_csp(inline_script_sha256: Iterable[bytes]) -> str:
    """The policy of the Redoc reference page at /api/v1/docs (`server.docs`), which is one
    self-contained file: its inline scripts are allowed by their SHA-256 digests only (no
    'unsafe-inline' for scripts); styles inline (Redoc writes `<style>` elements as it renders);
    fonts and icons as data: URLs; the download button's blob: URL; nothing from another origin.

    Args:
        inline_script_sha256: the SHA-256 digest of each inline script of the page.
    """
    hashes = " ".join(f"'sha256-{base64.b64encode(digest).decode()}'" for digest in inline_script_sha256)
    return (
        f"default-src 'none'; script-src {hashes}; style-src 'unsafe-inline'; font-src data:; "
        "img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    )


SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"strict-transport-security", b"max-age=31536000; includeSubDomains"),
    (b"referrer-policy", b"no-referrer"),
    (
        b"permissions-policy",
        b"accelerometer=(), camera=(), geolocation=(), gyroscope=(), microphone=(), payment=(), usb=()",
    ),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"x-xss-protection", b"0"),
]
"""`X-XSS-Protection: 0` turns off the XSS auditor of old browsers, which is deprecated and could
itself be abused to leak data (OWASP Secure Headers Project); CSP is the protection instead."""


class SecurityHeadersMiddleware:
    """ASGI middleware adding the security headers to every answer, errors and docs included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        csp = (DOCS_CSP if scope.get("path", "").startswith(DOCS_PREFIX) else API_CSP).encode()

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(name, value) for name, value in SECURITY_HEADERS if name not in present]
                if b"content-security-policy" not in present:
                    extra.append((b"content-security-policy", csp))
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)


class AllowListCORSMiddleware(CORSMiddleware):
    """Starlette's CORS middleware, except that a refused preflight (an origin, method or
    header that is not allowed) gets a 403 problem+json with no `Access-Control-Allow-*` header
    at all; Starlette would answer a text/plain 400 that still carries the allow headers."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code == 200:
            return response
        refused = bytes(response.body).decode("utf-8", "replace").removeprefix("Disallowed CORS ")
        body = problem_body(FORBIDDEN, f"This cross-origin request is not allowed ({refused}).", instance="")
        body.pop("instance")
        return Response(
            content=json.dumps(body).encode("utf-8"),
            status_code=403,
            media_type="application/problem+json",
            headers={"Vary": "Origin"},
        )


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
    `server.problems`) as soon as it passes the limit. Either way the rest of the body is first
    read and discarded (`drain_body`: up to 64 MiB or 5 s), then the answer closes the
    connection: a client that sends its whole body before reading the answer (Python's
    http.client) gets the 413, not ECONNRESET. A client that sent `Expect: 100-continue` is
    answered at once and never asked for the body (RFC 9110 section 10.1.1).

    Args:
        app: the next ASGI app.
        max_bytes: the largest body accepted.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            waits_for_continue = headers.get("expect", "").lower() == "100-continue"
            if not waits_for_continue and int(declared) <= DRAIN_MAX_BYTES:
                await drain_body(receive)  # the server sends "100 Continue" on a read: not for those
            await asgi_problem(
                send,
                PAYLOAD_TOO_LARGE,
                f"The request body is larger than {self.max_bytes} bytes.",
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
                if received > self.max_bytes:
                    if message.get("more_body", False):
                        await drain_body(receive)
                    raise PayloadTooLarge(self.max_bytes)
            return message

        await self.app(scope, counted_receive, send)
