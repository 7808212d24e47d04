"""Route limits with flask-limiter: each operation's own, declared in the contract
(`x-rate-limits`: login, register and refresh per client *and* per account, the email or the
refresh token presented), and every authenticated call per user. Moving windows, like the
edge limit every request counts against first (`server.edge.rate_limit`).

Counters live in memory, or in Redis when REDIS_URL is set; flask-limiter falls back to
in-process counters while Redis does not answer. `apply_headers` puts the `RateLimit-*`
headers of the tightest route limit on the answer, which the edge keeps when they are tighter
than its own; a 429 adds `Retry-After`.
"""

from __future__ import annotations

import hashlib
import math
import time
from typing import Any

import flask
from flask_limiter import Limiter
from flask_limiter.errors import RateLimitExceeded

from server.contract import route_limits
from server.integration import metrics
from server.integration.problems import RATE_LIMITED, problem_body
from server.integration.rate_limit_headers import Decision


def _client() -> str:
    return flask.request.remote_addr or "unknown"


def _digest(value: str) -> str:
    """Counters are keyed by a digest, so no email or token is ever stored in the limiter."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()[:32]


def user_or_client_key() -> str:
    """The authenticated user's id, else the client address."""
    user = flask.g.get("principal")
    return f"user:{user.id}" if user is not None else f"client:{_client()}"


def client_key() -> str:
    """The client address."""
    return f"client:{_client()}"


def account_key() -> str:
    """The account a login names (its lower-cased email, digested)."""
    body = flask.request.get_json(silent=True)
    email = body.get("email") if isinstance(body, dict) else None
    return "account:" + _digest(str(email).lower() if email else "")


def refresh_token_key() -> str:
    """The refresh token presented (digested)."""
    body = flask.request.get_json(silent=True)
    token = body.get("refresh_token") if isinstance(body, dict) else None
    return "refresh:" + _digest(str(token or ""))


def _not_authenticated() -> bool:
    return flask.g.get("principal") is None


def make_limiter(*, settings: Any) -> Limiter:
    """A flask-limiter for one app: per-user default limit on authenticated calls, moving
    windows, Redis or memory storage with in-memory fallback; headers are set by `apply_headers`."""
    storage_uri = settings.redis_url or "memory://"
    options: dict[str, Any] = {}
    if settings.redis_url:
        options = {"socket_timeout": 0.5, "socket_connect_timeout": 0.5}
    return Limiter(
        key_func=user_or_client_key,
        # An application limit counts across every operation (a default limit would count
        # per operation); anonymous requests are left to the edge limit.
        application_limits=[f"{settings.rate_limit_user_per_minute}/minute"],
        application_limits_exempt_when=_not_authenticated,
        strategy="moving-window",
        storage_uri=storage_uri,
        storage_options=options,
        in_memory_fallback_enabled=True,
        headers_enabled=False,
        key_prefix="charter-routes",
        enabled=settings.rate_limit_enabled,
    )


KEY_FUNCTIONS = {
    "client": client_key,
    "user": user_or_client_key,
    "account": account_key,
    "refresh_token": refresh_token_key,
}
"""A contract `x-rate-limits` ``per`` -> the function giving the counter's key."""


def limits_by_operation(spec: dict[str, Any], settings: Any) -> dict[str, list[tuple[str, Any, str]]]:
    """operationId -> [(limit string, key function, limit name)]: the operations' own limits
    declared in the contract (`x-rate-limits`; the stricter ones of the operations that guess at
    credentials or send mail, OWASP API4:2023). A setting ``rate_limit_<name>``, when the
    settings declare it and it is set, replaces the contract's figure."""
    return {
        operation_id: [
            (getattr(settings, f"rate_limit_{limit.name}", None) or limit.limit, KEY_FUNCTIONS[limit.per], limit.name)
            for limit in limits
        ]
        for operation_id, limits in route_limits(spec).items()
    }


def install_route_limits(flask_app: flask.Flask, limiter: Limiter, spec: dict[str, Any], settings: Any) -> None:
    """Attach the contract's route limits to connexion's view functions and the limiter to the app.

    Connexion registers one Flask endpoint per operation, named after its operationId; each
    named view is wrapped in a plain function flask-limiter can register by name. Each limit
    counts on its own (scope ``operationId:name``).

    Raises:
        server.contract.ContractError: a malformed `x-rate-limits`.
    """
    limits = limits_by_operation(spec, settings)
    for endpoint, view in list(flask_app.view_functions.items()):
        operation_id = endpoint.rsplit(".", 1)[-1]
        if operation_id not in limits:
            continue
        wrapped = _named_view(view, operation_id)
        for limit_value, key_func, name in limits[operation_id]:
            wrapped = limiter.limit(limit_value, key_func=key_func, scope=f"{operation_id}:{name}")(wrapped)
        flask_app.view_functions[endpoint] = wrapped
    limiter.init_app(flask_app)
    flask_app.register_error_handler(RateLimitExceeded, _too_many_requests)
    flask_app.after_request(lambda response: apply_headers(response, limiter))


def _named_view(view: Any, operation_id: str) -> Any:
    def route(*args: Any, **kwargs: Any) -> Any:
        return view(*args, **kwargs)

    route.__name__ = operation_id
    route.__qualname__ = operation_id
    route.__module__ = "charter.routes"
    route.__wrapped__ = view  # type: ignore[attr-defined]  # inspect.unwrap finds the operation
    return route


def _limit_headers(limiter: Limiter, *, refused: bool) -> dict[str, str]:
    """The RateLimit-* headers of the tightest route limit evaluated for this request: a
    breached one first, else the one with the fewest requests left."""
    evaluated = limiter.current_limits
    if not evaluated:
        return {}
    tightest = min(evaluated, key=lambda current: (not current.breached, current.remaining))
    reset_time, remaining = tightest.window
    reset = max(math.ceil(reset_time - time.time()), 0)
    return Decision(not refused, tightest.limit.amount, max(remaining, 0), reset).headers()


def apply_headers(response: flask.Response, limiter: Limiter) -> flask.Response:
    """After each request: the RateLimit-* headers of the route limit that applied, if any."""
    if response.status_code != 429:
        for name, value in _limit_headers(limiter, refused=False).items():
            response.headers[name] = value
    return response


def _too_many_requests(error: RateLimitExceeded) -> flask.Response:
    """429 problem+json for a route limit, with Retry-After and the RateLimit-* headers."""
    limiter: Limiter = flask.current_app.extensions["limiter"]
    limiter = next(iter(limiter)) if isinstance(limiter, set) else limiter
    metrics.RATE_LIMITED.labels(limiter="route").inc()
    body = problem_body(
        RATE_LIMITED,
        f"Too many requests: {error.limit.limit}. Retry after the time in Retry-After.",
        instance=flask.request.path,
    )
    headers = {"Content-Type": "application/problem+json", **_limit_headers(limiter, refused=True)}
    headers.setdefault("Retry-After", "60")
    return flask.Response(flask.json.dumps(body), status=429, headers=headers)
