"""The shared cache store (REDIS_URL set): plain Redis strings with a time-to-live (``SET …
PX``), read with ``GET`` and forgotten with ``DEL``; the stampede lock is redis-py's `Lock`
(``SET NX PX`` with a random token, released only by its holder).

Redis errors are raised to the caller (`services.caching.Cache` makes them misses). So that a
Redis that is down costs nothing per request, a circuit breaker (pybreaker) opens after
`BREAKER_FAILURES` failures in a row and fails fast for `BREAKER_RESET_SECONDS`, then lets one
call try again. The client's timeouts are the project's Redis convention (0.5 s to connect and
to answer, as the readiness probe's client)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress

import pybreaker
import redis

SOCKET_TIMEOUT_SECONDS = 0.5
"""Connect and answer timeout of every Redis call."""
BREAKER_FAILURES = 3
"""Failures in a row that open the breaker."""
BREAKER_RESET_SECONDS = 5.0
"""How long the open breaker fails fast before one call tries Redis again."""


class RedisCacheBackend:
    """Bytes by key in Redis (the services' `CacheBackend`), shared by every process.

    Args:
        url: REDIS_URL (``redis://host:port/db``).
        client: a client to use instead (tests).
    """

    name = "redis"

    def __init__(self, url: str | None = None, *, client: redis.Redis | None = None) -> None:
        if client is None:
            if url is None:
                raise ValueError("a Redis URL or client is needed")
            client = redis.Redis.from_url(
                url, socket_timeout=SOCKET_TIMEOUT_SECONDS, socket_connect_timeout=SOCKET_TIMEOUT_SECONDS
            )
        self.client = client
        self.breaker = pybreaker.CircuitBreaker(
            fail_max=BREAKER_FAILURES, reset_timeout=BREAKER_RESET_SECONDS, name="cache-redis"
        )

    def get(self, key: str) -> bytes | None:
        """``GET key``."""
        value = self.breaker.call(self.client.get, key)
        return value if isinstance(value, bytes) else None

    def set(self, key: str, value: bytes, ttl_seconds: float) -> None:
        """``SET key value PX ttl``."""
        self.breaker.call(self.client.set, key, value, px=max(1, int(ttl_seconds * 1000)))

    def delete(self, *keys: str) -> None:
        """``DEL key …``."""
        if keys:
            self.breaker.call(self.client.delete, *keys)

    @contextmanager
    def lock(self, key: str, *, timeout_seconds: float) -> Iterator[bool]:
        """redis-py's lock on `key`, held at most `timeout_seconds`, waited for as long."""
        lock = self.client.lock(key, timeout=timeout_seconds, blocking_timeout=timeout_seconds)
        taken = bool(self.breaker.call(lock.acquire))
        try:
            yield taken
        finally:
            if taken:
                with suppress(redis.exceptions.LockError):  # expired meanwhile: someone else may hold it now
                    lock.release()
