"""Serves the bundled contract at ``/api/v1/openapi.json`` and ``/api/v1/openapi.yaml``.

Connexion would serve its own copy with every ``$ref`` inlined (about 7x larger, named models
lost, `servers` rewritten); clients and SDK generators get the bundle instead, with its
``#/components/…`` references, byte for byte what `python -m server.contract` writes.
"""

from __future__ import annotations

import json
from typing import Any

import yaml
from starlette.types import ASGIApp, Receive, Scope, Send


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
