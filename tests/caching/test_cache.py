"""The cache port on both stores: the in-process one (cachetools, its time moved by hand) and
Redis on 127.0.0.1:6379 (shared with other suites: every test uses a key prefix of its own and
deletes only its own keys, never FLUSHDB). Values round-trip as JSON; a time-to-live ends an
entry; `get_or_compute` computes a missing value once however many threads (and "processes":
caches of their own on one Redis) ask at once; a Redis that cannot be reached, or a value that
does not decode, is a counted miss, never an error; and the question normalisation rule."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator

import pytest
import redis

from adapters.cache_memory import MemoryCacheBackend
from adapters.cache_redis import RETRY_SECONDS, RedisCacheBackend
from services import caching
from services.caching import Cache
from tests.processes import free_port

REDIS_URL = "redis://127.0.0.1:6379/0"
WAIT_SECONDS = 10.0


class Clock:
    """Seconds that move only when told (the in-process store's timer)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def shared_redis() -> redis.Redis:
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    return client


@pytest.fixture
def prefix() -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards (by pattern, its own only)."""
    value = f"charter-test-cache-{uuid.uuid4().hex}"
    yield value
    try:
        client = redis.Redis.from_url(REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
        keys = list(client.scan_iter(match=f"{value}:*", count=500))
        if keys:
            client.delete(*keys)
    except redis.RedisError:
        pass


@pytest.fixture(params=["memory", "redis"])
def store(request, prefix) -> tuple[Cache, Counter]:
    """A cache on each store, counting its reads by (cache, outcome)."""
    counts: Counter = Counter()
    backend = MemoryCacheBackend() if request.param == "memory" else RedisCacheBackend(client=shared_redis())
    cache = Cache(backend, prefix=prefix, observe=lambda name, outcome: counts.update([(name, outcome)]))
    return cache, counts


def test_values_round_trip_as_json_and_reads_are_counted(store):
    cache, counts = store
    value = {"name": "Shop", "questions": ["How long?", "Où ?"], "n": 3, "ok": True, "none": None}

    assert cache.get("things", "a") is None
    cache.set("things", "a", value, ttl_seconds=60)
    assert cache.get("things", "a") == value
    cache.delete("things", "a")
    assert cache.get("things", "a") is None
    assert counts == Counter({("things", "miss"): 2, ("things", "hit"): 1})


def test_a_ttl_of_zero_caches_nothing(store):
    cache, _counts = store
    cache.set("things", "a", {"x": 1}, ttl_seconds=0)
    assert cache.get("things", "a") is None
    calls = []
    assert cache.get_or_compute("things", "b", lambda: calls.append(1) or 7, ttl_seconds=0) == 7
    assert cache.get_or_compute("things", "b", lambda: calls.append(1) or 7, ttl_seconds=0) == 7
    assert len(calls) == 2


def test_the_in_process_store_forgets_an_entry_when_its_ttl_ends():
    clock = Clock()
    cache = Cache(MemoryCacheBackend(timer=clock), prefix="p")
    cache.set("things", "short", 1, ttl_seconds=10)
    cache.set("things", "long", 2, ttl_seconds=100)

    clock.now += 9.9
    assert (cache.get("things", "short"), cache.get("things", "long")) == (1, 2)
    clock.now += 0.2
    assert (cache.get("things", "short"), cache.get("things", "long")) == (None, 2)
    clock.now += 90
    assert cache.get("things", "long") is None


def test_the_in_process_store_is_bounded():
    backend = MemoryCacheBackend(max_entries=3)
    cache = Cache(backend, prefix="p")
    for number in range(10):
        cache.set("things", str(number), number, ttl_seconds=60)
    assert len(backend) == 3
    assert [cache.get("things", str(number)) for number in (6, 7, 8, 9)] == [None, 7, 8, 9]


def test_redis_keeps_an_entry_for_its_ttl_under_the_prefix(prefix):
    client = shared_redis()
    cache = Cache(RedisCacheBackend(client=client), prefix=prefix)
    cache.set("answers", "k", {"text": "hi"}, ttl_seconds=30)

    assert client.get(f"{prefix}:answers:k") == b'{"text":"hi"}'
    assert 0 < client.pttl(f"{prefix}:answers:k") <= 30_000


@pytest.mark.parametrize("caches", [1, 3], ids=["one-process", "three-processes"])
def test_get_or_compute_computes_a_missing_value_once_for_concurrent_callers(store, prefix, caches):
    cache, counts = store
    if caches > 1:
        if cache.backend.name == "memory":
            pytest.skip("an in-process store is not shared between processes")
        # "Processes": caches of their own (their own in-process locks) on the one Redis.
        cache_list = [
            Cache(RedisCacheBackend(client=shared_redis()), prefix=prefix, observe=cache.observe) for _ in range(caches)
        ]
    else:
        cache_list = [cache]
    threads_count = 12
    started = threading.Barrier(threads_count, timeout=WAIT_SECONDS)
    computing = threading.Event()
    calls = []
    results = []
    lock = threading.Lock()

    def compute() -> dict:
        with lock:
            calls.append(1)
        computing.set()
        # Stay in here until every caller has started and had a chance to wait.
        started_all.wait(WAIT_SECONDS)
        return {"plans": ["free", "pro"]}

    started_all = threading.Event()

    def caller(index: int) -> None:
        started.wait()
        value = cache_list[index % len(cache_list)].get_or_compute("plans", "catalogue", compute, ttl_seconds=60)
        with lock:
            results.append(value)

    threads = [threading.Thread(target=caller, args=(index,)) for index in range(threads_count)]
    for thread in threads:
        thread.start()
    assert computing.wait(WAIT_SECONDS)
    # Every caller has found the value missing before the one computing it is let go.
    deadline = time.monotonic() + WAIT_SECONDS
    while counts[("plans", "miss")] < threads_count and time.monotonic() < deadline:
        time.sleep(0.01)
    assert counts[("plans", "miss")] == threads_count
    started_all.set()
    for thread in threads:
        thread.join(WAIT_SECONDS)
    assert not any(thread.is_alive() for thread in threads)

    assert len(calls) == 1
    assert results == [{"plans": ["free", "pro"]}] * threads_count


def test_a_redis_that_cannot_be_reached_is_a_counted_miss_and_values_are_computed():
    counts: Counter = Counter()
    clock = Clock()
    backend = RedisCacheBackend(f"redis://127.0.0.1:{free_port()}/0", timer=clock)  # nothing listens there
    cache = Cache(backend, prefix="p", observe=lambda name, outcome: counts.update([(name, outcome)]))
    tried = []
    connect = backend.client.connection_pool.get_connection

    def counting_connect(*args, **kwargs):
        tried.append(1)
        return connect(*args, **kwargs)

    backend.client.connection_pool.get_connection = counting_connect

    assert cache.get("answers", "k") is None
    cache.set("answers", "k", {"text": "hi"}, ttl_seconds=60)
    cache.delete("answers", "k")
    values = [cache.get_or_compute("plans", "catalogue", lambda: ["free"], ttl_seconds=60) for _ in range(3)]

    assert values == [["free"]] * 3
    assert counts[("answers", "error")] == 3  # read, write, delete
    assert counts[("plans", "error")] >= 3 and counts[("plans", "hit")] == 0
    # One connection was tried; after that failure the store fails fast for RETRY_SECONDS ...
    assert len(tried) == 1 and backend.failing
    clock.now += RETRY_SECONDS
    # ... then tries Redis again.
    assert cache.get("answers", "k") is None
    assert len(tried) == 2


def test_a_value_that_does_not_decode_is_a_counted_miss(prefix):
    client = shared_redis()
    counts: Counter = Counter()
    cache = Cache(RedisCacheBackend(client=client), prefix=prefix, observe=lambda n, o: counts.update([(n, o)]))
    client.set(f"{prefix}:answers:bad", b"\x80not json", px=30_000)

    assert cache.get("answers", "bad") is None
    assert counts == Counter({("answers", "error"): 1})


def test_a_compute_that_raises_caches_nothing(store):
    cache, _counts = store

    def broken() -> int:
        raise RuntimeError("database away")

    with pytest.raises(RuntimeError):
        cache.get_or_compute("plans", "catalogue", broken, ttl_seconds=60)
    assert cache.get_or_compute("plans", "catalogue", lambda: 5, ttl_seconds=60) == 5


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("How long do refunds take?", "how long do refunds take"),
        ("How long do refunds take?", "  HOW   long do\trefunds take ?!  "),
        ("Refund time\uff1f", "refund time"),  # a full-width question mark
        ("Versand nach Straße?", "VERSAND NACH STRASSE"),  # casefold: ß is ss
        ("What about gift cards...", "what about gift cards…"),
    ],
)
def test_questions_differing_in_case_spacing_and_trailing_punctuation_share_a_form(first, second):
    assert caching.normalise_question(first) == caching.normalise_question(second)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("refund time", "time of refund"),
        ("refunds, gift cards", "refunds gift cards"),  # inner punctuation counts
        ("Can I return it?", "Can I return it? No"),
    ],
)
def test_other_differences_keep_questions_apart(first, second):
    assert caching.normalise_question(first) != caching.normalise_question(second)


def test_answer_keys_name_the_owner_and_differ_by_owner_version_provider_and_settings():
    chatbot = uuid.uuid4()
    base = {
        "owner_id": uuid.uuid4(),
        "chatbot_id": chatbot,
        "knowledge_version": 3,
        "provider": "extractive",
        "settings": {"instructions": "", "passages_per_answer": 5, "min_score": 0.0, "max_words": 300},
        "question": "How long do refunds take?",
    }
    key = caching.answer_key(**base)
    assert key.startswith(f"{base['owner_id']}:{chatbot}:k3:")
    assert caching.answer_key(**{**base, "question": "how long do refunds take"}) == key
    for change in (
        {"owner_id": uuid.uuid4()},
        {"knowledge_version": 4},
        {"provider": "1:openai|http://127.0.0.1:1/v1|gpt-4o-mini|1024"},
        {"settings": {**base["settings"], "instructions": "Be brief."}},
        {"settings": {**base["settings"], "min_score": 0.2}},
        {"question": "How long does shipping take?"},
    ):
        assert caching.answer_key(**{**base, **change}) != key, change
