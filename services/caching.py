"""Caching (issue 18, briefs 002 and 004): read-mostly data kept in Redis (REDIS_URL) or, without
it, in this process's memory, for a time-to-live.

Rules and where they come from:

* **A cache is never needed** (issue 18): every value can be computed again from the database;
  a cache that cannot be reached (Redis down, a timeout, a value that does not decode) is a
  *miss*: it is logged, counted (`outcome` ``error``) and the value is computed as if nothing
  were cached. No request fails because of the cache.
* **A port and two adapters** (ARCHITECTURE, adapters): `CacheBackend` holds bytes under keys
  with a time-to-live; `adapters.cache_redis.RedisCacheBackend` (REDIS_URL set: shared by every
  process, so an invalidation reaches them all) and `adapters.cache_memory.MemoryCacheBackend`
  (unset: one process, bounded, least recently used first out).
* **Values are JSON** (orjson), never pickles: a shared Redis must not be a way to run code.
  Cache representations (dicts, lists, strings, numbers), not ORM objects.
* **Keys** are ``CACHE_KEY_PREFIX:<cache name>:<key>``; the cache name (``answers``,
  ``public_chatbots``, ``plans``, …) labels the hit/miss/error counters (`/metrics`:
  ``charter_cache_requests_total{cache, outcome}``). Keys of private data always include the
  owner (`answer_key`).
* **Stampede protection** (`Cache.get_or_compute`): on a miss, one caller per key computes
  while the others wait for its value (an in-process lock per key, and a Redis lock across
  processes when Redis holds the cache), up to `STAMPEDE_WAIT_SECONDS`; after that they compute
  it themselves rather than wait longer.

A read-mostly lookup is cached with one call (the plan catalogue, the public chatbot settings)::

    plans = cache.get_or_compute("plans", "catalogue", lambda: [plan_dict(p) for p in ...], ttl_seconds=300)

and invalidated with ``cache.delete("plans", "catalogue")`` after the change commits
(``uow.after_commit(lambda: cache.delete(...))``, `invalidate_after_commit`).
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import unicodedata
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol, TypeVar

import orjson

from persistence.unit_of_work import UnitOfWork
from services.jobs import JobEngine

log = logging.getLogger(__name__)

T = TypeVar("T")

STAMPEDE_WAIT_SECONDS = 5.0
"""How long a caller waits for another caller computing the same missing value before it
computes the value itself (`Cache.get_or_compute`)."""
OUTCOMES = ("hit", "miss", "error")
"""What a cache read comes to: found, not found, or the cache could not be read (a miss too)."""
_LOCK_STRIPES = 64


class CacheBackend(Protocol):
    """Where cached bytes live (Redis or this process's memory). Any method may raise when the
    store cannot be reached; `Cache` turns that into a miss."""

    @property
    def name(self) -> str:
        """``redis`` or ``memory`` (the logs say which failed)."""
        ...

    def get(self, key: str) -> bytes | None:
        """The bytes stored under `key`, or None when there are none (or they expired)."""
        ...

    def set(self, key: str, value: bytes, ttl_seconds: float) -> None:
        """Store `value` under `key` for `ttl_seconds` (more than 0)."""
        ...

    def delete(self, *keys: str) -> None:
        """Forget the keys (those not stored are ignored)."""
        ...

    def lock(self, key: str, *, timeout_seconds: float) -> AbstractContextManager[bool]:
        """A lock shared by every process using the store, held at most `timeout_seconds`;
        the context yields whether it was taken within that time."""
        ...


Observer = Callable[[str, str], None]
"""Told each read's cache name and outcome (one of `OUTCOMES`): the wiring counts them."""


def _ignore(_cache: str, _outcome: str) -> None:
    return None


class Cache:
    """JSON values under named caches on a `CacheBackend`, every failure a logged, counted miss.

    Args:
        backend: the store.
        prefix: the start of every key (CACHE_KEY_PREFIX; tests use one of their own).
        observe: told each read's cache name and outcome (the `/metrics` counters).
    """

    def __init__(self, backend: CacheBackend, *, prefix: str = "charter-cache", observe: Observer = _ignore) -> None:
        self.backend = backend
        self.prefix = prefix
        self.observe = observe
        self._locks = [threading.Lock() for _ in range(_LOCK_STRIPES)]

    def key(self, cache: str, key: str) -> str:
        """The store's key of `key` in the named cache: ``prefix:cache:key``."""
        return f"{self.prefix}:{cache}:{key}"

    def _failed(self, operation: str, cache: str, error: Exception) -> None:
        log.warning(
            "cache %s failed (%s, %s): %s; treated as a miss",
            operation,
            self.backend.name,
            cache,
            type(error).__name__,
        )
        self.observe(cache, "error")

    def get(self, cache: str, key: str) -> Any | None:
        """The value cached under `key` in `cache`, or None: not there, expired, or the store
        failed (logged and counted as ``error``). Counts a ``hit`` or a ``miss``."""
        try:
            raw = self.backend.get(self.key(cache, key))
            value = None if raw is None else orjson.loads(raw)
        except Exception as error:  # a cache that cannot be read is a miss (module rules)
            self._failed("read", cache, error)
            return None
        self.observe(cache, "miss" if value is None else "hit")
        return value

    def set(self, cache: str, key: str, value: Any, *, ttl_seconds: float) -> None:
        """Cache `value` (JSON-serialisable, not None) under `key` in `cache` for `ttl_seconds`;
        nothing when `ttl_seconds` is 0 or less. A store that fails is logged, not raised."""
        if ttl_seconds <= 0 or value is None:
            return
        try:
            self.backend.set(self.key(cache, key), orjson.dumps(value), ttl_seconds)
        except Exception as error:  # module rules: never fail the caller
            self._failed("write", cache, error)

    def delete(self, cache: str, *keys: str) -> None:
        """Forget `keys` in `cache`. A store that fails is logged, not raised (its entries then
        live until their time-to-live ends)."""
        if not keys:
            return
        try:
            self.backend.delete(*(self.key(cache, key) for key in keys))
        except Exception as error:  # module rules: never fail the caller
            self._failed("delete", cache, error)

    @contextmanager
    def _shared_lock(self, cache: str, key: str) -> Iterator[bool]:
        try:
            lock = self.backend.lock(self.key(cache, key) + ":lock", timeout_seconds=STAMPEDE_WAIT_SECONDS)
            taken = lock.__enter__()
        except Exception as error:  # no shared lock: compute anyway
            self._failed("lock", cache, error)
            yield False
            return
        try:
            yield taken
        finally:
            try:
                lock.__exit__(None, None, None)
            except Exception as error:  # its timeout frees it
                self._failed("unlock", cache, error)

    def get_or_compute(self, cache: str, key: str, compute: Callable[[], T], *, ttl_seconds: float) -> T:
        """The value cached under `key` in `cache`, or `compute()`'s, cached for `ttl_seconds`
        (0 or less: always computed, nothing cached). A None from `compute` is not cached.

        On a miss one caller per key computes (stampede protection, module rules): callers in
        this process wait on a lock of the key, callers in other processes on the store's
        shared lock; each looks again once it holds them, so a value computed meanwhile is used.

        Raises:
            Whatever `compute` raises (nothing is cached then); never the cache's own errors.
        """
        if ttl_seconds <= 0:
            return compute()
        found = self.get(cache, key)
        if found is not None:
            return found  # type: ignore[no-any-return]  # what compute() gave earlier, as JSON
        stripe = self._locks[int(hashlib.blake2b(key.encode(), digest_size=2).hexdigest(), 16) % _LOCK_STRIPES]
        taken_here = stripe.acquire(timeout=STAMPEDE_WAIT_SECONDS)
        try:
            with self._shared_lock(cache, key) as taken_everywhere:
                if taken_here or taken_everywhere:
                    again = self._peek(cache, key)
                    if again is not None:
                        return again  # type: ignore[no-any-return]
                value = compute()
                self.set(cache, key, value, ttl_seconds=ttl_seconds)
                return value
        finally:
            if taken_here:
                stripe.release()

    def _peek(self, cache: str, key: str) -> Any | None:
        """`get` without counting a second miss (a value computed while this caller waited is
        a hit; not finding it was counted already)."""
        try:
            raw = self.backend.get(self.key(cache, key))
            value = None if raw is None else orjson.loads(raw)
        except Exception as error:
            self._failed("read", cache, error)
            return None
        if value is not None:
            self.observe(cache, "hit")
        return value


PUBLIC_CHATBOTS = "public_chatbots"
"""The cache name of public chatbots' settings, by `public_id` (`services.public_chatbots`)."""


def cache_of(engine: JobEngine) -> Cache | None:
    """The process's cache, which the wiring puts in the job engine's `context` (None: none)."""
    cache = engine.context.get("cache")
    return cache if isinstance(cache, Cache) else None


def invalidate_after_commit(uow: UnitOfWork, cache: Cache | None, name: str, *keys: str) -> None:
    """Forget `keys` of the named cache once `uow` commits (not before: a reader could cache the
    old value again between the forgetting and the commit). Nothing when `cache` is None."""
    if cache is None or not keys:
        return
    uow.after_commit(lambda: cache.delete(name, *keys))


# --- answers ----------------------------------------------------------------------------------

_SPACES = re.compile(r"\s+")
_TRAILING = re.compile(r"[\s.?!,;:\u3002]+$")  # after NFKC: full-width ? ! and … are ASCII already


def normalise_question(question: str) -> str:
    """The form of a question two askings share when they differ only in case, spacing and the
    punctuation they end with: Unicode NFKC, case-folded (`str.casefold`), every run of
    whitespace one space, no leading or trailing spaces, and trailing ``. ? ! , ; :`` (and
    their full-width forms, ``…`` and the ideographic full stop) dropped. Nothing else
    changes: inner punctuation, word order and spelling still tell questions apart
    (``"Refund time?"`` and ``"refund   TIME"`` share an answer; ``"refund time"`` and
    ``"time of refund"`` do not)."""
    text = unicodedata.normalize("NFKC", question).casefold()
    text = _SPACES.sub(" ", text).strip()
    return _TRAILING.sub("", text)


def answer_key(
    *,
    owner_id: uuid.UUID,
    chatbot_id: uuid.UUID,
    knowledge_version: int,
    provider: str,
    settings: dict[str, Any],
    question: str,
) -> str:
    """The `answers` cache's key of a question: the chatbot's owner, the chatbot, the version of
    its knowledge, and a SHA-256 over the provider (name, model, its settings), the chatbot's
    settings that change an answer (`settings`: instructions, passages per answer, minimum
    score, the most words) and the normalised question (`normalise_question`).

    The owner, chatbot and knowledge version are in the clear, so an operator can see whose
    entries a key holds; the question is only hashed (it may be private)."""
    digest = hashlib.sha256(
        orjson.dumps(
            {"provider": provider, "settings": settings, "question": normalise_question(question)},
            option=orjson.OPT_SORT_KEYS,
        )
    ).hexdigest()
    return f"{owner_id}:{chatbot_id}:k{knowledge_version}:{digest}"
