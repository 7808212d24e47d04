"""RFC 9457 problem details for every error, whoever raises it: connexion's validation and
security, the router, the services' domain errors, the database, and unexpected exceptions.

Every problem carries `type` (a relative URI documented in the README), `title`, `status`,
`detail`, `instance` (the request path) and `request_id`, plus `trace_id` when tracing is on
(`server.tracing`). Unexpected errors are logged with
their traceback under the request id and answered with no internals (Zalando rule 177).
"""

from __future__ import annotations

import json
from typing import Any

import structlog
from connexion import FlaskApp
from connexion.exceptions import ProblemException
from connexion.lifecycle import ConnexionRequest, ConnexionResponse
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException
from starlette.types import Send

from server.contract import RouteTable
from server.integration import metrics
from server.integration.request_context import current_request_id, current_trace_id
from services import errors
from services.errors import ProblemType

log = structlog.get_logger(__name__)

PROBLEM_JSON = "application/problem+json"


VALIDATION = errors.InvalidInput.problem
UNAUTHORIZED = errors.InvalidToken.problem
FORBIDDEN = errors.Forbidden.problem
NOT_FOUND = errors.NotFound.problem
CONFLICT = errors.Conflict.problem
METHOD_NOT_ALLOWED = ProblemType("/problems/method-not-allowed", "Method not allowed", 405)
PAYLOAD_TOO_LARGE = ProblemType("/problems/payload-too-large", "Payload too large", 413)
UNSUPPORTED_MEDIA_TYPE = ProblemType("/problems/unsupported-media-type", "Unsupported media type", 415)
RATE_LIMITED = ProblemType("/problems/rate-limited", "Too many requests", 429)
INTERNAL = ProblemType("/problems/internal-error", "Internal server error", 500)
SERVICE_UNAVAILABLE = ProblemType("/problems/service-unavailable", "Service unavailable", 503)
NOT_READY = ProblemType("/problems/not-ready", "Not ready", 503)

EDGE_PROBLEMS = (
    METHOD_NOT_ALLOWED,
    PAYLOAD_TOO_LARGE,
    UNSUPPORTED_MEDIA_TYPE,
    RATE_LIMITED,
    INTERNAL,
    SERVICE_UNAVAILABLE,
    NOT_READY,
)
"""The problems the HTTP edge answers on its own (the router, the body limit, the rate limiter,
the readiness probe, a bug); the services' errors declare theirs (`services.errors`)."""

_BY_STATUS = {
    p.status: p
    for p in (
        VALIDATION,
        UNAUTHORIZED,
        FORBIDDEN,
        NOT_FOUND,
        METHOD_NOT_ALLOWED,
        CONFLICT,
        PAYLOAD_TOO_LARGE,
        UNSUPPORTED_MEDIA_TYPE,
        RATE_LIMITED,
        INTERNAL,
        SERVICE_UNAVAILABLE,
    )
}
"""The problem for a status that connexion, Starlette or Werkzeug raise on their own."""


def known_problem_types() -> dict[str, ProblemType]:
    """Every problem type the service can answer, by type URI: the edge's own and the one each
    `DomainError` subclass declares (every subclass defined so far, in any module)."""
    found = {problem.type: problem for problem in EDGE_PROBLEMS}
    pending: list[type[errors.DomainError]] = [errors.DomainError]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if "problem" in vars(cls):
            found[cls.problem.type] = cls.problem
    return found


class RequestValidationProblem(Exception):
    """A request that breaks the contract, with one entry per invalid field or parameter.

    Args:
        detail: one sentence about the whole request.
        errors: dicts with `message` and either `pointer` (body) or `parameter` and `in`.
    """

    def __init__(self, detail: str, errors: list[dict[str, str]]) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors


class PayloadTooLarge(Exception):
    """A request body grew past MAX_BODY_BYTES while being read (raised by `server.edge.body_limit`)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"The request body is larger than {limit} bytes.")
        self.limit = limit


def problem_response(
    kind: ProblemType,
    detail: str,
    *,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    members: dict[str, Any] | None = None,
    **extensions: Any,
) -> ConnexionResponse:
    """A problem+json response of `kind` with `detail` and extension members (`extensions`
    without their None values; `members` as they are, nulls included)."""
    body: dict[str, Any] = {"type": kind.type, "title": kind.title, "status": kind.status, "detail": detail}
    if instance:
        body["instance"] = instance
    body["request_id"] = current_request_id()
    trace_id = current_trace_id()
    if trace_id is not None:
        body["trace_id"] = trace_id
    body.update({key: value for key, value in extensions.items() if value is not None})
    body.update(members or {})
    return ConnexionResponse(
        status_code=kind.status,
        mimetype=PROBLEM_JSON,
        content_type=PROBLEM_JSON,
        body=json.dumps(body),
        headers=headers or {},
    )


def problem_body(kind: ProblemType, detail: str, *, instance: str, **extensions: Any) -> dict[str, Any]:
    """The body of a problem, for handlers that answer a problem themselves (e.g. readiness)."""
    body = {
        "type": kind.type,
        "title": kind.title,
        "status": kind.status,
        "detail": detail,
        "instance": instance,
        "request_id": current_request_id(),
    }
    trace_id = current_trace_id()
    if trace_id is not None:
        body["trace_id"] = trace_id
    body.update(extensions)
    return body


async def asgi_problem(
    send: Send, kind: ProblemType, detail: str, *, instance: str, headers: dict[str, str] | None = None
) -> None:
    """Send a problem+json answer straight from ASGI middleware (before connexion runs)."""
    body = json.dumps(problem_body(kind, detail, instance=instance)).encode("utf-8")
    raw_headers = [(b"content-type", PROBLEM_JSON.encode()), (b"content-length", str(len(body)).encode())]
    raw_headers += [
        (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in (headers or {}).items()
    ]
    await send({"type": "http.response.start", "status": kind.status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


def _unauthorized_headers(status: int) -> dict[str, str]:
    return {"WWW-Authenticate": 'Bearer realm="charter"'} if status == 401 else {}


def _on_validation(request: ConnexionRequest, exc: RequestValidationProblem) -> ConnexionResponse:
    return problem_response(VALIDATION, exc.detail, instance=request.url.path, errors=exc.errors)


def _on_connexion_problem(request: ConnexionRequest, exc: ProblemException) -> ConnexionResponse:
    if exc.status >= 500:
        log.error("connexion_problem", status=exc.status, detail=exc.detail, title=exc.title)
        return problem_response(
            INTERNAL, "An unexpected error occurred. Quote the request id when reporting it.", instance=request.url.path
        )
    kind = _BY_STATUS.get(exc.status, ProblemType("about:blank", exc.title or "Error", exc.status))
    detail = exc.detail or kind.title
    extra: dict[str, Any] = {}
    if exc.status == 401:
        detail = "The access token is missing, invalid or expired."
    elif exc.status == 400:
        extra["errors"] = [{"pointer": "", "message": detail}]
    return problem_response(kind, detail, instance=request.url.path, headers=_unauthorized_headers(exc.status), **extra)


def _http_exception_handler(routes: RouteTable):
    def _on_http_exception(request: ConnexionRequest, exc: HTTPException) -> ConnexionResponse:
        kind = _BY_STATUS.get(exc.status_code, ProblemType("about:blank", "Error", exc.status_code))
        if exc.status_code >= 500:
            return _on_unexpected(request, exc)
        headers = dict(exc.headers or {})
        if exc.status_code == 404:
            detail = f"No operation matches {request.url.path}."
        elif exc.status_code == 405:
            detail = f"{request.method} is not allowed on {request.url.path}."
            headers["Allow"] = routes.allowed(request.url.path) or headers.get("Allow", "")
        else:
            detail = str(exc.detail) if exc.detail else kind.title
        return problem_response(kind, detail, instance=request.url.path, headers=headers)

    return _on_http_exception


def problem_body_for(exc: errors.DomainError, *, instance: str) -> dict[str, Any]:
    """The problem body a domain error would be answered with (for a bulk result)."""
    return problem_body(exc.problem, exc.detail, instance=instance, **_domain_extensions(exc), **exc.members())


def _domain_extensions(exc: errors.DomainError) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if isinstance(exc, errors.WeakPassword):
        extra["errors"] = [{"pointer": exc.pointer, "message": reason} for reason in exc.reasons]
    if isinstance(exc, errors.InvalidInput):
        entry = {"message": exc.detail}
        if exc.parameter:
            entry |= {"parameter": exc.parameter, "in": "query"}
        else:
            entry["pointer"] = exc.pointer or ""
        extra["errors"] = [entry]
    return extra


def _on_domain_error(request: ConnexionRequest, exc: errors.DomainError) -> ConnexionResponse:
    kind = exc.problem
    if isinstance(exc, errors.InvalidCredentials):
        metrics.LOGIN_FAILURES.inc()
    extra = _domain_extensions(exc)
    headers = _unauthorized_headers(kind.status)
    if isinstance(exc, errors.LoginLocked):
        headers["Retry-After"] = str(exc.retry_after)
    return problem_response(
        kind, exc.detail, instance=request.url.path, headers=headers, members=exc.members(), **extra
    )


def _on_unicode_error(request: ConnexionRequest, exc: UnicodeError) -> ConnexionResponse:
    # spec-first/connexion#1860: a body that is not UTF-8 must be a 400, not a 500.
    return problem_response(
        VALIDATION,
        "The request body is not valid UTF-8 text.",
        instance=request.url.path,
        errors=[{"pointer": "", "message": "not valid UTF-8"}],
    )


def _on_payload_too_large(request: ConnexionRequest, exc: PayloadTooLarge) -> ConnexionResponse:
    return problem_response(PAYLOAD_TOO_LARGE, str(exc), instance=request.url.path, headers={"Connection": "close"})


def _on_database_unavailable(request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
    log.error("database_unavailable", error=type(exc).__name__)
    return problem_response(
        SERVICE_UNAVAILABLE,
        "The database is unavailable. Retry later.",
        instance=request.url.path,
        headers={"Retry-After": "5"},
    )


def _on_integrity_error(request: ConnexionRequest, exc: IntegrityError) -> ConnexionResponse:
    log.warning("integrity_conflict", error=type(exc.orig).__name__ if exc.orig else None)
    return problem_response(
        CONFLICT, "The request conflicts with the current state of the resource.", instance=request.url.path
    )


def _on_unexpected(request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
    log.error("unhandled_exception", exc_info=exc, path=request.url.path)
    return problem_response(
        INTERNAL, "An unexpected error occurred. Quote the request id when reporting it.", instance=request.url.path
    )


def install_problem_handlers(app: FlaskApp, spec: dict[str, Any]) -> None:
    """Register the handlers that turn every error into problem+json on `app`.

    Args:
        spec: the bundled contract, for the `Allow` header of 405 answers.
    """
    app.add_error_handler(RequestValidationProblem, _on_validation)
    app.add_error_handler(ProblemException, _on_connexion_problem)
    app.add_error_handler(HTTPException, _http_exception_handler(RouteTable(spec)))
    app.add_error_handler(errors.DomainError, _on_domain_error)
    app.add_error_handler(UnicodeError, _on_unicode_error)
    app.add_error_handler(PayloadTooLarge, _on_payload_too_large)
    app.add_error_handler(IntegrityError, _on_integrity_error)
    for unavailable in (OperationalError, InterfaceError, PoolTimeoutError):
        app.add_error_handler(unavailable, _on_database_unavailable)
    app.add_error_handler(Exception, _on_unexpected)
