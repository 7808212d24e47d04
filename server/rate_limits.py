"""Rate limits: an edge limit in ASGI middleware for every request, and route limits with
flask-limiter for the operations that guess at credentials and for authenticated users.

* **Edge** (`EdgeRateLimitMiddleware`, `limits` moving windows): every request counts against
  its client address, including the ones connexion rejects before any handler runs (a bad
  token, an invalid body), so a token cannot be brute-forced around the limit (API_STYLE,
  Rate limits). Probes (`/api/v1/health*`, `/metrics`) have a budget of their own, so a load
  balancer polling every second does not eat its own client's budget.
* **Routes** (flask-limiter, moving windows): login, register and refresh per client *and* per
  account (email, or the refresh token presented); every authenticated call per user.

Counters live in memory, or in Redis when REDIS_URL is set so limits hold across workers and
machines. When Redis stops answering both layers fall back to in-process counters, log it,
and readiness reports Redis as degraded; they go back to Redis once it answers again.
Answers carry `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` (seconds) of the
most constraining limit (IETF draft "RateLimit header fields for HTTP"); a 429 adds
`Retry-After`.
"""

from __future__ import annotations

import hashlib
import inspect
import math
import time
from dataclasses import dataclass
from typing import Any

import flask
import structlog
from flask_limiter import Limiter
from flask_limiter.errors import RateLimitExceeded
from limits import RateLimitItem, RateLimitItemPerHour, RateLimitItemPerMinute
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter as AsyncMovingWindow
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter as MovingWindow
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server import metrics
from server.problems import RATE_LIMITED, asgi_problem, problem_body

log = structlog.get_logger(__name__)

PROBE_PATHS = ("/api/v1/health", "/metrics")
REDIS_RETRY_SECONDS = 5.0
RATE_LIMIT_HEADERS = (b"ratelimit-limit", b"ratelimit-remaining", b"ratelimit-reset")


@dataclass(frozen=True)
class Decision:
    """The outcome of counting one request: allowed or not, and the most constraining window."""

    allowed: bool
    limit: int
    remaining: int
    reset_seconds: int

    def headers(self) -> dict[str, str]:
        """The RateLimit-* headers (and Retry-After when refused)."""
        values = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_seconds),
        }
        if not self.allowed:
            values["Retry-After"] = str(max(self.reset_seconds, 1))
        return values


class FallbackStorage:
    """Redis for the counters when configured, in-process memory while Redis does not answer.

    After a failure Redis is tried again every REDIS_RETRY_SECONDS; `degraded` says whether the
    counters are currently in memory although Redis is configured. Redis is used through
    `limits`' asyncio client (no blocking of the event loop on the network); memory through its
    thread-safe synchronous storage, whose operations take microseconds and, unlike the asyncio
    one, hold no lock bound to one event loop.
    """

    def __init__(self, redis_url: str | None, *, key_prefix: str) -> None:
        self.memory = MemoryStorage()
        self.redis: RedisStorage | None = None
        if redis_url:
            self.redis = RedisStorage(
                "async+" + redis_url,
                implementation="redispy",
                key_prefix=key_prefix,
                wrap_exceptions=True,
                socket_timeout=0.5,
                socket_connect_timeout=0.5,
            )
        self._retry_at = 0.0
        self.degraded = False

    def current(self) -> MemoryStorage | RedisStorage:
        """The storage to use now."""
        if self.redis is None or time.monotonic() < self._retry_at:
            return self.memory
        return self.redis

    def failed(self, error: Exception) -> None:
        """Record that Redis failed: use memory until the next retry."""
        if not self.degraded:
            log.warning(
                "rate_limit_storage_unavailable", storage="redis", error=type(error).__name__, fallback="memory"
            )
        self.degraded = True
        self._retry_at = time.monotonic() + REDIS_RETRY_SECONDS

    def succeeded(self, storage: MemoryStorage | RedisStorage) -> None:
        """Record that `storage` answered; Redis answering again ends the degraded mode."""
        if storage is self.redis and self.degraded:
            log.info("rate_limit_storage_recovered", storage="redis")
            self.degraded = False


class EdgeLimiter:
    """Counts requests per key in moving windows of a minute and an hour.

    A moving window is exact: the 61st request of any 60 seconds is refused, wherever the
    minute boundaries fall (a sliding-window *counter* only estimates that, and let tests of
    "the 61st request" pass or fail by the clock). Its cost grows with the requests a key has in
    the window, which the limit itself bounds (60 a minute by default); refused requests are not
    recorded.

    Args:
        per_minute, per_hour: requests allowed per key in each window.
        storage: where the counters live.
    """

    def __init__(self, *, per_minute: int, per_hour: int, storage: FallbackStorage) -> None:
        self.items: list[RateLimitItem] = [RateLimitItemPerMinute(per_minute), RateLimitItemPerHour(per_hour)]
        self.storage = storage

    async def hit(self, key: str) -> Decision:
        """Count one request for `key` and decide."""
        storage = self.storage.current()
        if storage is self.storage.memory:
            return await self._hit(MovingWindow(storage), key)
        try:
            decision = await self._hit(AsyncMovingWindow(storage), key)
        except Exception as error:  # any storage failure: keep answering from memory
            self.storage.failed(error)
            return await self._hit(MovingWindow(self.storage.memory), key)
        self.storage.succeeded(storage)
        return decision

    async def _hit(self, strategy: MovingWindow | AsyncMovingWindow, key: str) -> Decision:
        allowed = True
        for item in self.items:
            if not await _resolved(strategy.hit(item, key)):
                allowed = False
                break
        tightest: Decision | None = None
        for item in self.items:
            reset_at, remaining = await _resolved(strategy.get_window_stats(item, key))
            candidate = Decision(allowed, item.amount, max(remaining, 0), max(math.ceil(reset_at - time.time()), 0))
            if tightest is None or candidate.remaining < tightest.remaining:
                tightest = candidate
        assert tightest is not None
        return tightest


async def _resolved(value: Any) -> Any:
    """The value of a sync strategy call, or the awaited value of an async one."""
    return await value if inspect.isawaitable(value) else value


def _merge_headers(message: Message, decision: Decision) -> None:
    """Add the edge's RateLimit-* headers unless a route limit already set tighter ones."""
    headers = MutableHeaders(scope=message)
    inner = headers.get("ratelimit-remaining")
    if inner is not None and inner.isdigit() and int(inner) <= decision.remaining:
        return
    for name, value in decision.headers().items():
        headers[name] = value


class EdgeRateLimitMiddleware:
    """ASGI middleware: the per-client limit every request counts against (see module doc).

    Args:
        app: the next ASGI app.
        clients: the limiter for ordinary requests.
        probes: the limiter for health probes and metrics scrapes.
    """

    def __init__(self, app: ASGIApp, *, clients: EdgeLimiter, probes: EdgeLimiter) -> None:
        self.app = app
        self.clients = clients
        self.probes = probes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = (scope.get("client") or ("unknown", 0))[0]
        path = scope.get("path", "")
        is_probe = path.startswith(PROBE_PATHS)
        limiter = self.probes if is_probe else self.clients
        decision = await limiter.hit(("probe:" if is_probe else "client:") + client)
        if not decision.allowed:
            metrics.RATE_LIMITED.labels(limiter="edge").inc()
            await asgi_problem(
                send,
                RATE_LIMITED,
                "Too many requests from this client. Retry after the time in Retry-After.",
                instance=path,
                headers=decision.headers(),
            )
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                _merge_headers(message, decision)
            await send(message)

        await self.app(scope, receive, send_with_headers)


# --- route limits (flask-limiter) -----------------------------------------------------------


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
