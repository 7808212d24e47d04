"""CORS for the origins in CORS_ORIGINS only: Starlette's middleware, with refused preflights
answered as problem+json."""

from __future__ import annotations

import json
from typing import Any

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response

from server.integration.problems import FORBIDDEN, problem_body

HTTP_VERBS = {"get", "put", "post", "delete", "patch"}
ALLOWED_HEADERS = ["Authorization", "Content-Type", "X-Request-ID"]
EXPOSED_HEADERS = [
    "X-Request-ID",
    "Location",
    "Retry-After",
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset",
]
MAX_AGE_SECONDS = 600
"""How long a browser may cache a preflight's answer."""


def contract_methods(spec: dict[str, Any]) -> list[str]:
    """The HTTP methods the contract's operations use (upper case, sorted): the methods a
    preflight may ask for."""
    return sorted({verb.upper() for item in spec["paths"].values() for verb in item if verb in HTTP_VERBS})


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
