"""The in-process cache store (REDIS_URL unset): `cachetools.TLRUCache`, bounded in entries,
least recently used out first, each entry with its own time-to-live; one lock around it
(cachetools' caches are not thread-safe). One process only: another process has its own, so
an invalidation reaches this process's entries only (README, Caching)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from cachetools import TLRUCache

DEFAULT_MAX_ENTRIES = 10_000
"""Entries kept at most before the least recently used go."""


def _expires(_key: str, value: tuple[bytes, float], now: float) -> float:
    return now + value[1]


class MemoryCacheBackend:
    """Bytes by key in this process's memory (the services' `CacheBackend`).

    Args:
        max_entries: the most entries kept.
        timer: seconds on a monotonic clock (tests pass one they move).
    """

    name = "memory"

    def __init__(self, *, max_entries: int = DEFAULT_MAX_ENTRIES, timer: Callable[[], float] = time.monotonic) -> None:
        self._entries: TLRUCache[str, tuple[bytes, float]] = TLRUCache(max_entries, _expires, timer=timer)
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        """The bytes under `key` unless absent or expired."""
        with self._lock:
            entry = self._entries.get(key)
        return None if entry is None else entry[0]

    def set(self, key: str, value: bytes, ttl_seconds: float) -> None:
        """Keep `value` under `key` for `ttl_seconds`."""
        with self._lock:
            self._entries[key] = (value, float(ttl_seconds))

    def delete(self, *keys: str) -> None:
        """Forget the keys."""
        with self._lock:
            for key in keys:
                self._entries.pop(key, None)

    @contextmanager
    def lock(self, key: str, *, timeout_seconds: float) -> Iterator[bool]:
        """No other process shares this store: the caller's in-process lock is enough."""
        yield True

    def __len__(self) -> int:
        with self._lock:
            self._entries.expire()
            return len(self._entries)
