"""Serves the bundled contract at ``/api/v1/openapi.json`` and ``/api/v1/openapi.yaml``, and the
Redoc reference page that ``make docs`` builds at ``/api/v1/docs``.

Connexion would serve its own copy with every ``$ref`` inlined (about 7x larger, named models
lost, `servers` rewritten); clients and SDK generators get the bundle instead, with its
``#/components/…`` references, byte for byte what `python -m server.contract` writes.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from connexion.middleware.main import ConnexionMiddleware
from connexion.middleware.swagger_ui import SwaggerUIMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from server.edge.security_headers import reference_docs_csp
from server.integration.problems import NOT_FOUND, asgi_problem

REFERENCE_PAGE = Path(__file__).resolve().parents[2] / "build" / "docs" / "index.html"
"""Where `make docs` writes the Redoc page (`redocly build-docs --inlineBundle`; not committed)."""


class ContractDocumentMiddleware:
    """ASGI middleware answering GET/HEAD on the document paths; everything else passes through.

    Args:
        app: the next ASGI app.
        spec: the bundled contract.
        json_path, yaml_path: where to serve it.
    """

    def __init__(self, app: ASGIApp, *, spec: dict[str, Any], json_path: str, yaml_path: str) -> None:
        self.app = app
        self._documents = {
            json_path: (json.dumps(spec, ensure_ascii=False).encode("utf-8"), b"application/json"),
            yaml_path: (
                yaml.safe_dump(spec, sort_keys=False, allow_unicode=True).encode("utf-8"),
                b"application/yaml",
            ),
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        document = self._documents.get(scope.get("path", "")) if scope["type"] == "http" else None
        if document is None or scope["method"] not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        body, media_type = document
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", media_type),
                    (b"content-length", str(len(body)).encode()),
                    (b"cache-control", b"public, max-age=300"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body if scope["method"] == "GET" else b""})


_INLINE_SCRIPT = re.compile(rb"<script(?![^>]*\ssrc=)[^>]*>(.*?)</script>", re.S | re.I)


@dataclass(frozen=True)
class _Page:
    modified_ns: int
    body: bytes
    csp: bytes


class ReferencePageMiddleware:
    """ASGI middleware answering GET/HEAD on `path` (and below it: Redoc links to sections as
    sub-paths) with the built Redoc page; everything else passes through.

    The page is one self-contained HTML file (its scripts, styles and the contract inlined, so
    no CDN and no other request). It is read again when the file changes, so `make docs` needs
    no restart. Its Content-Security-Policy allows exactly its own inline scripts, by SHA-256.
    Before the page is built the path answers 404 problem+json saying how to build it.

    Args:
        app: the next ASGI app.
        path: where to serve the page, e.g. ``/api/v1/docs``.
        html_file: the page `make docs` builds.
    """

    def __init__(self, app: ASGIApp, *, path: str, html_file: Path = REFERENCE_PAGE) -> None:
        self.app = app
        self.path = path.rstrip("/")
        self.html_file = html_file
        self._page: _Page | None = None

    def _load(self) -> _Page | None:
        """The page as built now (re-read after a rebuild), or None when it has not been built."""
        try:
            modified_ns = self.html_file.stat().st_mtime_ns
        except OSError:
            return None
        if self._page is None or self._page.modified_ns != modified_ns:
            body = self.html_file.read_bytes()
            hashes = [hashlib.sha256(script).digest() for script in _INLINE_SCRIPT.findall(body)]
            self._page = _Page(modified_ns, body, reference_docs_csp(hashes).encode())
        return self._page

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not (path == self.path or path.startswith(self.path + "/")) or scope["method"] not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        page = self._load()
        if page is None:
            await asgi_problem(
                send,
                NOT_FOUND,
                "The reference documentation has not been built on this server: run `make docs`. "
                "Swagger UI at /api/v1/ui/ needs no build.",
                instance=path,
            )
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/html; charset=utf-8"),
                    (b"content-length", str(len(page.body)).encode()),
                    (b"cache-control", b"no-cache"),
                    (b"content-security-policy", page.csp),
                ],
            }
        )
        await send({"type": "http.response.body", "body": page.body if scope["method"] == "GET" else b""})


SWAGGER_UI_PATH = "/api/v1/ui"
"""Where connexion's Swagger UI is served (`SwaggerUIOptions.swagger_ui_path` in `server.app`)."""


class SwaggerUIOnItsPath(SwaggerUIMiddleware):
    """Connexion's Swagger UI middleware, asked only about its own paths.

    The stock one copies the scope, sets a context variable and runs a Starlette router with a
    mount at the API's base path ("" here, so it matches every request) before it hands each
    API request on: about 6 % of a health check's CPU (issue 13). The UI lives under
    `SWAGGER_UI_PATH` only, so every other request goes straight to the next layer. Passed to
    connexion in place of `SwaggerUIMiddleware` (``FlaskApp(middlewares=...)``).
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Route UI paths as connexion does; pass anything else on untouched."""
        if scope["type"] == "http" and not scope["path"].startswith(SWAGGER_UI_PATH):
            await self.app(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def connexion_middlewares() -> list[type]:
    """Connexion's default middleware stack with `SwaggerUIOnItsPath` for its Swagger UI layer."""
    return [
        SwaggerUIOnItsPath if layer is SwaggerUIMiddleware else layer
        for layer in ConnexionMiddleware.default_middlewares
    ]
