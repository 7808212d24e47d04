"""The security headers every answer carries, errors and docs included (briefs 000/001), and
the Content-Security-Policy of each kind of page; `server.edge.middleware` adds them."""

from __future__ import annotations

import base64
from collections.abc import Iterable

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

_API_HEADERS = (*SECURITY_HEADERS, (b"content-security-policy", API_CSP.encode()))
_DOCS_HEADERS = (*SECURITY_HEADERS, (b"content-security-policy", DOCS_CSP.encode()))


def security_headers(path: str) -> tuple[tuple[bytes, bytes], ...]:
    """The security headers of an answer to `path`, Content-Security-Policy last: the docs
    policy under DOCS_PREFIX (Swagger UI), the API policy anywhere else. An answer that already
    has one of these headers (the Redoc page sets its own policy) keeps its own."""
    return _DOCS_HEADERS if path.startswith(DOCS_PREFIX) else _API_HEADERS
