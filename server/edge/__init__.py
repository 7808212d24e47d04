"""The edge: the ASGI middleware between uvicorn and connexion, installed by `install_edge`.

Outermost first (each layer sees what the ones inside it answer):

1. uvicorn's ProxyHeadersMiddleware, only with TRUSTED_PROXIES: the client address from
   `X-Forwarded-For`, for everything below.
2. `EdgeMiddleware` (`middleware`): the request id (`request_id`), the access log and the
   request metrics (`access_log`), the security headers (`security_headers`); one layer for the
   three, as they only read the request and add to the answer.
3. `CompressionMiddleware` (`compression`), unless COMPRESSION_ENABLED is false: gzip for
   JSON and other text answers of 1 KiB or more when accepted; never an event stream, an
   answer with an ETag, or what is not text. Inside the access log, which so counts the bytes
   sent on the wire.
4. `PublicChatbotCORSMiddleware` (`public_cors`): CORS for the public chatbots' visitor
   paths by each chatbot's `allowed_origins` (they never reach the next layer's CORS).
   `AllowListCORSMiddleware` (`cors`), only with CORS_ORIGINS: outside the limits, so a
   preflight spends no budget and a 429 or 413 is readable cross-origin.
5. `EdgeRateLimitMiddleware` (`rate_limit`), unless RATE_LIMIT_ENABLED is false: every request
   counts against its client, oversized ones included.
6. `BodyLimitMiddleware` (`body_limit`): 413 for a body over MAX_BODY_BYTES (a document upload:
   DOCUMENT_MAX_BYTES plus `UPLOAD_FRAMING_BYTES`), after the rate
   limit so that refusing (and draining) large bodies is rate limited too.
7. `ContractDocumentMiddleware` and `ReferencePageMiddleware` (`docs`): the bundled contract
   and the Redoc page, answered before connexion routes.

The layers sit before connexion's exception middleware: an error raised inside connexion is
answered by `server.integration.problems` and still passes through every layer on its way out.
"""

from __future__ import annotations

import re
from typing import Any

import connexion
from connexion.middleware import MiddlewarePosition
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from server.contract import RouteTable
from server.edge.access_log import AccessLog
from server.edge.body_limit import BodyLimitMiddleware
from server.edge.compression import CompressionMiddleware
from server.edge.cors import (
    ALLOWED_HEADERS,
    EXPOSED_HEADERS,
    MAX_AGE_SECONDS,
    AllowListCORSMiddleware,
    contract_methods,
)
from server.edge.docs import ContractDocumentMiddleware, ReferencePageMiddleware
from server.edge.middleware import EdgeMiddleware
from server.edge.public_cors import OriginsOf, PublicChatbotCORSMiddleware
from server.edge.rate_limit import EdgeLimiter, EdgeRateLimitMiddleware, FallbackStorage
from server.settings import Settings
from services.analytics import RequestStats

__all__ = ["install_edge"]


UPLOAD_FRAMING_BYTES = 64 * 1024
"""What a document upload's body may hold beyond the file (multipart boundaries, part headers,
the `title` field): its body limit is DOCUMENT_MAX_BYTES plus this; the file itself is held to
DOCUMENT_MAX_BYTES by `services.document_files.store_upload`."""


def install_edge(
    app: connexion.FlaskApp,
    settings: Settings,
    spec: dict[str, Any],
    storage: FallbackStorage,
    *,
    api_prefix: str,
    public_origins: OriginsOf | None = None,
    request_stats: RequestStats | None = None,
) -> None:
    """Add the edge's layers to `app`, in the order the module documentation gives.

    Args:
        app: the connexion app, before its middleware stack is built.
        settings: TRUSTED_PROXIES, COMPRESSION_ENABLED, CORS_ORIGINS, the RATE_LIMIT_* values and
            MAX_BODY_BYTES.
        spec: the bundled contract: the access log's route names, the methods CORS allows and
            the document served at ``<api_prefix>/openapi.{json,yaml}``.
        storage: where the edge rate limit keeps its counters.
        api_prefix: the API's path prefix, e.g. ``/api/v1``.
        public_origins: reads a public chatbot's allowed origins, for the visitor paths' CORS
            (None: no such layer; visitors' browsers then get no CORS headers).
        request_stats: the usage analytics' in-memory counts, which the access log feeds
            (None: not counted).
    """
    here = MiddlewarePosition.BEFORE_EXCEPTION
    if settings.trusted_proxies:
        app.add_middleware(ProxyHeadersMiddleware, position=here, trusted_hosts=settings.trusted_proxies)
    access_log = AccessLog(routes=RouteTable(spec), request_stats=request_stats)
    app.add_middleware(EdgeMiddleware, position=here, access_log=access_log)
    if settings.compression_enabled:
        app.add_middleware(CompressionMiddleware, position=here)
    if public_origins is not None:
        app.add_middleware(PublicChatbotCORSMiddleware, position=here, prefix=api_prefix, origins_of=public_origins)
    if settings.cors_origins:
        app.add_middleware(
            AllowListCORSMiddleware,
            position=here,
            allow_origins=settings.cors_origins,
            allow_credentials=True,
            allow_methods=contract_methods(spec),
            allow_headers=ALLOWED_HEADERS,
            expose_headers=EXPOSED_HEADERS,
            max_age=MAX_AGE_SECONDS,
        )
    if settings.rate_limit_enabled:
        app.add_middleware(
            EdgeRateLimitMiddleware,
            position=here,
            clients=EdgeLimiter(
                per_minute=settings.rate_limit_per_minute, per_hour=settings.rate_limit_per_hour, storage=storage
            ),
            probes=EdgeLimiter(
                per_minute=settings.rate_limit_probes_per_minute,
                per_hour=settings.rate_limit_probes_per_minute * 60,
                storage=storage,
            ),
        )
    upload = re.compile(re.escape(api_prefix) + r"/chatbots/[^/]+/documents")
    app.add_middleware(
        BodyLimitMiddleware,
        position=here,
        max_bytes=settings.max_body_bytes,
        routes=[("POST", upload, settings.document_max_bytes + UPLOAD_FRAMING_BYTES)],
    )
    app.add_middleware(
        ContractDocumentMiddleware,
        position=here,
        spec=spec,
        json_path=f"{api_prefix}/openapi.json",
        yaml_path=f"{api_prefix}/openapi.yaml",
    )
    app.add_middleware(ReferencePageMiddleware, position=here, path=f"{api_prefix}/docs")
