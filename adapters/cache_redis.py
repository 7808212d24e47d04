"""The shared cache store (REDIS_URL set): plain Redis strings with a time-to-live (``SET …
PX``), read with ``GET`` and forgotten with ``DEL``; the stampede lock is redis-py's `Lock`
(``SET NX PX`` with a random token, released only by its holder).

Redis errors are raised to the caller (`services.caching.Cache` makes them misses). So that a
Redis that is down costs nothing per request, a failure makes the store fail fast
(`RedisUnavailable`, no connection tried) for `RETRY_SECONDS`, then Redis is tried again: the
edge rate limiter's convention (`server.edge.rate_limit.FallbackStorage`). Not pybreaker: its
`call` holds one lock for the whole call, so every Redis call of a process would wait for the
one before it (and a blocking lock's wait would stall every read). The client's timeouts are
the project's Redis convention (0.5 s to connect and to answer, as the readiness client's)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

import redis

SOCKET_TIMEOUT_SECONDS = 0.5
"""Connect and answer timeout of every Redis call."""
RETRY_SECONDS = 5.0
"""After a failure, how long the store fails fast before trying Redis again."""


class RedisUnavailable(RuntimeError):
    """Redis failed less than `RETRY_SECONDS` ago: not tried."""


class RedisCacheBackend:
    """Bytes by key in Redis (the services' `CacheBackend`), shared by every process.

    Args:
        url: REDIS_URL (``redis://host:port/db``).
        client: a client to use instead (tests).
        timer: seconds on a monotonic clock (tests).
    """

    name = "redis"

    def __init__(
        self,
        url: str | None = None,
        *,
        client: redis.Redis | None = None,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        if client is None:
            if url is None:
                raise ValueError("a Redis URL or client is needed")
            client = redis.Redis.from_url(
                url, socket_timeout=SOCKET_TIMEOUT_SECONDS, socket_connect_timeout=SOCKET_TIMEOUT_SECONDS
            )
        self.client = client
        self.timer = timer
        self.retry_at = 0.0
        """Before this time (`timer`) Redis is not tried: it failed recently."""

    def _call(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self.timer() < self.retry_at:
            raise RedisUnavailable(f"Redis failed less than {RETRY_SECONDS:g} s ago")
        try:
            return function(*args, **kwargs)
        except redis.RedisError:
            self.retry_at = self.timer() + RETRY_SECONDS
            raise

    @property
    def failing(self) -> bool:
        """Whether the store is failing fast now (Redis failed less than `RETRY_SECONDS` ago)."""
        return self.timer() < self.retry_at

    def get(self, key: str) -> bytes | None:
        """``GET key``."""
        value = self._call(self.client.get, key)
        return value if isinstance(value, bytes) else None

    def set(self, key: str, value: bytes, ttl_seconds: float) -> None:
        """``SET key value PX ttl``."""
        self._call(self.client.set, key, value, px=max(1, int(ttl_seconds * 1000)))

    def delete(self, *keys: str) -> None:
        """``DEL key …``."""
        if keys:
            self._call(self.client.delete, *keys)

    @contextmanager
    def lock(self, key: str, *, timeout_seconds: float) -> Iterator[bool]:
        """redis-py's lock on `key`, held at most `timeout_seconds`, waited for as long."""
        lock = self.client.lock(key, timeout=timeout_seconds, blocking_timeout=timeout_seconds)
        taken = bool(self._call(lock.acquire))
        try:
            yield taken
        finally:
            if taken:
                with suppress(redis.exceptions.LockError):  # expired meanwhile: someone else may hold it now
                    lock.release()
