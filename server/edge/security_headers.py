"""The security headers every answer carries, errors and docs included (briefs 000/001), and
the Content-Security-Policy of each kind of page."""

from __future__ import annotations

import base64
from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

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
    """The policy of the Redoc reference page at /api/v1/docs (`server.edge.docs`), which is one
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
