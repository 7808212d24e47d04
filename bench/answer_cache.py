"""The answer cache (issue 18: "`make bench` shows the cached and uncached answer side by side").

A temporary database (a SQLite file by default; a temporary PostgreSQL database on the server of
DATABASE_URL when it names one) gets one user, one active chatbot knowing two short sources
(`bench.answers.load`) and enough empty conversations. For each provider (extractive; openai on
the fake OpenAI-compatible server, `tests.llm_double.FakeLLM`, on 127.0.0.1) and each cache
mode — **off** (ANSWER_CACHE_TTL_SECONDS=0), **memory** (REDIS_URL unset) and **redis**
(127.0.0.1:6379, a key prefix of this run's own, its keys deleted at the end; skipped when no
Redis answers) — in the same run:

* **HTTP**: one uvicorn worker serves the API and wrk drives `POST
  /api/v1/chatbots/{id}/chat/completions` with one user message (a stateless first question:
  cacheable), the same question every time, after one warm-up request (so the cached modes
  answer from the cache and the off mode composes every answer);
* **stateless**: `services.conversations.stateless_answer_stream` in this process (no HTTP,
  nothing stored: what the cache saves, retrieval and the provider, against what a hit costs),
  the same first question `--samples` times: p50 in µs;
* **service**: `services.conversations.answer_stream` with the configuration the wiring builds
  (`server.worker.make_conversation_config`), the first question of a new conversation each
  time (stored as usual: question and answer rows), `--samples` one after another: p50 and p99
  of the whole answer and of its first delta.

The ratio is the uncached figure over the cached one (answers per second: cached over uncached).
The fake streams its reply in 3-character deltas with no delay, so the openai gain is the glue's
and the HTTP round trip's cost saved, not a model's (a real model's seconds would be saved).

Usage: ``python -m bench.answer_cache [--seconds 10] [--connections 8] [--samples 200]
[--no-save]`` (``DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test`` for
PostgreSQL). Writes bench/results/answer-cache-<database>-<date>.json and a table in
bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import redis

from bench.answers import QUESTION, load
from bench.harness import save_results, server_environment, serving, wrk
from bench.knowledge_search import login, temporary_database
from persistence.chatbots.repository import ANY_OWNER as ANY_CHATBOT_OWNER
from persistence.database import make_engine, make_session_factory
from persistence.unit_of_work import UnitOfWork
from server.worker import make_conversation_config
from services import conversations
from services.clock import SystemClock
from tests.helpers import make_settings
from tests.llm_double import FakeLLM

HERE = Path(__file__).resolve().parent
REDIS_URL = "redis://127.0.0.1:6379/0"


def redis_answers() -> bool:
    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=1, socket_connect_timeout=1).ping()
    except redis.RedisError:
        return False
    return True


def forget_prefix(prefix: str) -> int:
    """Delete this run's keys (by its prefix only: the Redis is shared)."""
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=5, socket_connect_timeout=5)
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    if keys:
        client.delete(*keys)
    return len(keys)


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


def service_answers(url: str, overrides: dict, conversation_ids: list[uuid.UUID]) -> dict:
    """The first question of each conversation of `conversation_ids`, one after another, with the
    wiring's configuration under `overrides`; one warm-up answer first (in the first
    conversation), so a cached mode answers the others from the cache."""
    engine = make_engine(url)
    factory = make_session_factory(engine)
    with tempfile.TemporaryDirectory(prefix="charter-bench-") as var_dir:
        config = make_conversation_config(make_settings(url, Path(var_dir), **overrides))
    clock = SystemClock()
    totals: list[float] = []
    firsts: list[float] = []
    try:
        with UnitOfWork(factory) as uow:
            found = uow.conversations.get(conversation_ids[0], owner_id=conversations.ANY_OWNER)
            assert found is not None
            owner = uow.users.get(found[0].owner_id)
            uow.session.expunge_all()
        for index, conversation_id in enumerate(conversation_ids):
            started = time.perf_counter()
            first: float | None = None
            for event in conversations.answer_stream(
                units=lambda: UnitOfWork(factory),
                clock=clock,
                config=config,
                caller=owner,
                conversation_id=conversation_id,
                content=QUESTION,
            ):
                if first is None and isinstance(event, conversations.Delta):
                    first = (time.perf_counter() - started) * 1000
                if isinstance(event, conversations.MessageEnd) and event.message.fallback:
                    raise SystemExit("an answer fell back: the measurement would be the extractive provider's")
            if first is None:
                raise SystemExit("an answer had no delta")
            if index:  # the first is the warm-up
                totals.append((time.perf_counter() - started) * 1000)
                firsts.append(first)
    finally:
        engine.dispose()
    return {
        "samples": len(totals),
        "answer_p50_ms": statistics.median(totals),
        "answer_p99_ms": _percentile(totals, 0.99),
        "first_delta_p50_ms": statistics.median(firsts),
    }


def stateless_answers(url: str, overrides: dict, chatbot_id: uuid.UUID, *, samples: int) -> dict:
    """`stateless_answer_stream` (no HTTP, nothing stored: retrieval and the provider, or the
    cache) of the same first question `samples` times after one warm-up: p50 and p90 in µs."""
    engine = make_engine(url)
    factory = make_session_factory(engine)
    with tempfile.TemporaryDirectory(prefix="charter-bench-") as var_dir:
        config = make_conversation_config(make_settings(url, Path(var_dir), **overrides))
    timings: list[float] = []
    try:
        with UnitOfWork(factory) as uow:
            chatbot = uow.chatbots.get(chatbot_id, owner_id=ANY_CHATBOT_OWNER)
            assert chatbot is not None
            owner = uow.users.get(chatbot.owner_id)
            uow.session.expunge_all()
        for index in range(samples + 1):
            started = time.perf_counter()
            for _event in conversations.stateless_answer_stream(
                units=lambda: UnitOfWork(factory),
                clock=SystemClock(),
                config=config,
                caller=owner,
                chatbot_id=chatbot_id,
                content=QUESTION,
            ):
                pass
            if index:
                timings.append((time.perf_counter() - started) * 1e6)
    finally:
        engine.dispose()
    return {"samples": samples, "p50_us": statistics.median(timings), "p90_us": _percentile(timings, 0.9)}


def main() -> int:
    """CLI; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--no-save", action="store_true", help="print the table only (a trial)")
    args = parser.parse_args()
    server_url = os.environ.get("DATABASE_URL", "")
    database = "PostgreSQL" if server_url.startswith("postgresql") else "SQLite"
    prefix = f"charter-bench-cache-{uuid.uuid4().hex[:12]}"
    modes: dict[str, dict] = {
        "off": {"answer_cache_ttl_seconds": 0},
        "memory": {"answer_cache_ttl_seconds": 3600},
    }
    if redis_answers():
        modes["redis"] = {
            "answer_cache_ttl_seconds": 3600,
            "redis_url": REDIS_URL,
            "job_queue": "sqlite",
            "cache_key_prefix": prefix,
        }
    figures: dict[str, dict[str, dict]] = {}
    groups = len(modes) * 2
    try:
        with temporary_database(server_url) as url, FakeLLM() as llm:
            email, chatbot_id, conversation_ids = load(url, conversation_count=(args.samples + 1) * groups)
            batches = iter([conversation_ids[i::groups] for i in range(groups)])
            providers = {
                "extractive": {"answer_provider": "extractive"},
                "openai (fake server)": {
                    "answer_provider": "openai",
                    "llm_base_url": llm.base_url,
                    "llm_api_key": llm.api_key,
                },
            }
            body = json.dumps({"messages": [{"role": "user", "content": QUESTION}]})
            for provider, provider_settings in providers.items():
                figures[provider] = {}
                for mode, mode_settings in modes.items():
                    overrides = provider_settings | mode_settings
                    env = server_environment(url) | {key.upper(): str(value) for key, value in overrides.items()}
                    with serving("with_edge", env) as (port, _server):
                        headers = [f"Authorization: Bearer {login(port, email)}"]
                        path = f"/api/v1/chatbots/{chatbot_id}/chat/completions"
                        wrk_env = os.environ | {"BODY": body}
                        run = {"headers": headers, "script": HERE / "post_json.lua", "env": wrk_env}
                        wrk(port, path, seconds=1, connections=1, **run)  # warm-up (fills the cache)
                        before = llm.request_count
                        http = wrk(port, path, seconds=args.seconds, connections=args.connections, **run)
                        http["llm_requests"] = llm.request_count - before
                    service = service_answers(url, overrides, next(batches)[: args.samples + 1])
                    stateless = stateless_answers(url, overrides, chatbot_id, samples=args.samples)
                    figures[provider][mode] = {"http": http, "service": service, "stateless": stateless}
    finally:
        if "redis" in modes:
            forget_prefix(prefix)
    stamp = dt.datetime.now(dt.UTC)
    lines = [
        f"## Answer cache: cached and uncached answers side by side ({database}) — {stamp:%Y-%m-%d %H:%M} UTC",
        "",
        f"`{'DATABASE_URL=postgresql+psycopg://… ' if database == 'PostgreSQL' else ''}python -m bench.answer_cache "
        f"--seconds {args.seconds} --connections {args.connections} --samples {args.samples}`: one uvicorn worker "
        f"per row (edge on, rate limits off), {database}, Redis and the fake OpenAI-compatible server on the same "
        f"{os.cpu_count()}-core machine (1-minute load average {os.getloadavg()[0]:.1f}). HTTP: `wrk "
        f"-t1 -c{args.connections} -d{args.seconds}s` on the stateless chat completion of one first question "
        "(the same each time); service: `answer_stream`, the first question of a new conversation each time "
        "(question and answer stored), one after another. `off` is ANSWER_CACHE_TTL_SECONDS=0; ratios are "
        "against `off` in the same run.",
        "",
        "| provider | cache | HTTP answers/s | vs off | HTTP p50 ms | HTTP p99 ms | LLM requests "
        "| service answer p50 ms | vs off | service p99 ms | first delta p50 ms | stateless p50 µs | vs off |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for provider, by_mode in figures.items():
        off = by_mode["off"]
        for mode, figure in by_mode.items():
            http, service = figure["http"], figure["service"]
            rps_ratio = http["rps"] / off["http"]["rps"] if off["http"]["rps"] else 0.0
            time_ratio = off["service"]["answer_p50_ms"] / service["answer_p50_ms"] if service["answer_p50_ms"] else 0
            stateless = figure["stateless"]
            stateless_ratio = off["stateless"]["p50_us"] / stateless["p50_us"] if stateless["p50_us"] else 0
            figure["ratios"] = {"http_rps": rps_ratio, "service_p50": time_ratio, "stateless_p50": stateless_ratio}
            lines.append(
                f"| {provider} | {mode} | {http['rps']:.1f} | {rps_ratio:.2f} | {http['p50_ms']:.1f} "
                f"| {http['p99_ms']:.1f} | {http['llm_requests']} | {service['answer_p50_ms']:.2f} "
                f"| {time_ratio:.2f} | {service['answer_p99_ms']:.2f} | {service['first_delta_p50_ms']:.2f} "
                f"| {stateless['p50_us']:.0f} | {stateless_ratio:.2f} |"
            )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.no_save:
        return 0
    save_results(
        f"answer-cache-{database.lower()}-{stamp:%Y-%m-%d-%H%M}",
        {"date": stamp.isoformat(), "args": vars(args), "figures": figures},
        text,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
