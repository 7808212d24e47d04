"""Route limits with flask-limiter, for the operations that guess at credentials or send mail
and for authenticated users: login, register and refresh per client *and* per account (email,
or the refresh token presented); every authenticated call per user. Moving windows, like the
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


def route_limits(settings: Any) -> dict[str, list[tuple[str, Any]]]:
    """operationId -> [(limit string, key function)]: the stricter limits of the operations
    that guess at credentials or send mail (OWASP API4:2023), per client and per account."""
    return {
        "login": [(settings.rate_limit_login, client_key), (settings.rate_limit_login_account, account_key)],
        "registerUser": [(settings.rate_limit_register, client_key)],
        "requestPasswordReset": [
            (settings.rate_limit_password_reset, client_key),
            (settings.rate_limit_password_reset_account, account_key),
        ],
        "confirmPasswordReset": [(settings.rate_limit_password_reset, client_key)],
        "changePassword": [(settings.rate_limit_password_change, user_or_client_key)],
        "refreshTokens": [
            (settings.rate_limit_refresh, client_key),
            (settings.rate_limit_refresh_session, refresh_token_key),
        ],
    }


def install_route_limits(flask_app: flask.Flask, limiter: Limiter, settings: Any) -> None:
    """Attach the route limits to connexion's view functions and the limiter to the app.

    Connexion registers one Flask endpoint per operation, named after its operationId; each
    named view is wrapped in a plain function flask-limiter can register by name.
    """
    limits_by_operation = route_limits(settings)
    for endpoint, view in list(flask_app.view_functions.items()):
        operation_id = endpoint.rsplit(".", 1)[-1]
        if operation_id not in limits_by_operation:
            continue
        wrapped = _named_view(view, operation_id)
        for limit_value, key_func in limits_by_operation[operation_id]:
            wrapped = limiter.limit(limit_value, key_func=key_func, scope=f"{operation_id}:{key_func.__name__}")(
                wrapped
            )
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
