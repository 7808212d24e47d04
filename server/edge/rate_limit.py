"""The edge rate limit: every request counts against its client address in moving windows
(`limits`), including the ones connexion rejects before any handler runs (a bad token, an
invalid body), so a token cannot be brute-forced around the limit (API_STYLE, Rate limits).
Probes (`/api/v1/health*`, `/metrics`) have a budget of their own, so a load balancer polling
every second does not eat its own client's budget. The route limits (login, register, refresh,
per user) are flask-limiter's, in `server.integration.route_limits`.

Counters live in memory, or in Redis when REDIS_URL is set so limits hold across workers and
machines. When Redis stops answering the counters fall back to in-process memory, the fall is
logged, and readiness reports Redis as degraded; they go back to Redis once it answers again.
Answers carry `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` (seconds) of the
most constraining limit (IETF draft "RateLimit header fields for HTTP"); a 429 adds
`Retry-After`.
"""

from __future__ import annotations

import inspect
import math
import time
from typing import Any

import structlog
from limits import RateLimitItem, RateLimitItemPerHour, RateLimitItemPerMinute
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter as AsyncMovingWindow
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter as MovingWindow
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.integration import metrics
from server.integration.problems import RATE_LIMITED, asgi_problem
from server.integration.rate_limit_headers import Decision

log = structlog.get_logger(__name__)

PROBE_PATHS = ("/api/v1/health", "/metrics")
REDIS_RETRY_SECONDS = 5.0


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
