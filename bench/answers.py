"""Answers (issue 16: "answers per second and time to first delta with the extractive provider
and with the fake OpenAI server, next to the JSON health endpoint in the same run").

A temporary database (a SQLite file by default; a temporary PostgreSQL database on the server of
DATABASE_URL when it names one) gets one user, one active chatbot knowing two short sources, and
`--conversations` conversations with it. The fake OpenAI-compatible server
(`tests.llm_double.FakeLLM`) serves on 127.0.0.1 from this process. For each provider
(ANSWER_PROVIDER=extractive, then openai pointed at the fake) one uvicorn worker serves the API
and wrk measures, in the same run:

* ``GET /api/v1/health`` (the reference: the JSON health endpoint);
* ``POST /api/v1/conversations/{id}/messages`` (a whole cited answer, JSON), cycling through the
  conversations (`bench/answers.lua`);

and, in this process, the **time to first delta**: `services.conversations.answer_stream` with the
configuration the wiring builds (`server.worker.make_conversation_config`), timed from the
request to its first `Delta` event, `--samples` times one after another. (Measured at the service
because the `text/event-stream` form of the operation is not on this branch; it forwards the same
events.) The fake streams its default reply in 3-character deltas with no delay, so the openai
figures are the glue's and the HTTP round trip's cost, not a model's.

Usage: ``python -m bench.answers [--seconds 10] [--connections 8] [--conversations 64]
[--samples 200] [--no-save]`` (``DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test`` for
PostgreSQL). Writes bench/results/answers-<database>-<date>.json and a table in bench/RESULTS.md.
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

from bench.harness import save_results, server_environment, serving, wrk
from bench.knowledge_search import PASSWORD, login, temporary_database
from persistence.database import make_engine, make_session_factory
from persistence.seed import seed
from persistence.unit_of_work import UnitOfWork
from server.worker import make_conversation_config
from services import chatbots, conversations, knowledge, subscriptions
from services.audit import RequestMeta
from services.clock import SystemClock
from services.passwords import PasswordHasher
from tests.helpers import make_settings
from tests.llm_double import FakeLLM

BENCH_PLAN = "business_yearly"
"""The plan the bench user is on: it measures the work, not the quotas (a free plan allows 100
messages and 100 crawled pages a month; this one 600,000 of each a year)."""

HERE = Path(__file__).resolve().parent
QUESTION = "When are refunds paid and how long does shipping take?"
SOURCES = {
    "Returns": (
        "Our shop accepts returns of unused items within 30 days. Refunds are paid within 14 days of the "
        "return reaching our warehouse. Gift cards cannot be refunded."
    ),
    "Shipping manual": (
        "Parcels leave the warehouse every weekday. Shipping to Europe takes three to five days. "
        "Express shipping costs 12 euros."
    ),
}


class _Chunk:
    def __init__(self, text: str) -> None:
        self.text = text
        self.words = len(text.split())
        self.page = None
        self.heading = None


def load(url: str, *, conversation_count: int) -> tuple[str, uuid.UUID, list[uuid.UUID]]:
    """The bench user (its email), an active chatbot knowing `SOURCES`, and its conversations."""
    engine = make_engine(url)
    clock, meta = SystemClock(), RequestMeta()
    try:
        ((user_id, email),) = seed(
            engine, users=1, tasks_per_user=0, password_hash=PasswordHasher(4).hash(PASSWORD), seed_value=1
        )
        with UnitOfWork(make_session_factory(engine)) as uow:
            owner = uow.users.get(user_id)
            assert owner is not None
            subscriptions.current_subscription(uow, owner_id=owner.id, clock=clock, lock=True).plan_code = BENCH_PLAN
            chatbot = chatbots.create_chatbot(uow=uow, clock=clock, caller=owner, data={"name": "Bench"}, meta=meta)
            chatbots.update_chatbot(
                uow=uow,
                clock=clock,
                caller=owner,
                chatbot_id=chatbot.id,
                changes={"status": "active"},
                expected_versions=None,
                meta=meta,
            )
            for title, text in SOURCES.items():
                knowledge.index_source(
                    uow=uow,
                    clock=clock,
                    chatbot_id=chatbot.id,
                    source=knowledge.KnowledgeSource("document", uuid.uuid4(), title=title),
                    passages=[_Chunk(text)],
                )
            ids = [
                conversations.create_conversation(uow=uow, clock=clock, caller=owner, chatbot_id=chatbot.id).id
                for _ in range(conversation_count)
            ]
            chatbot_id = chatbot.id
        return email, chatbot_id, ids
    finally:
        engine.dispose()


def first_delta_ms(url: str, settings_overrides: dict, conversation_id: uuid.UUID, *, samples: int) -> dict:
    """p50/p99 milliseconds from asking to the first `Delta` of `answer_stream`, `samples` answers
    one after another in one conversation, with the configuration the wiring builds."""
    engine = make_engine(url)
    factory = make_session_factory(engine)
    with tempfile.TemporaryDirectory(prefix="charter-bench-") as var_dir:
        config = make_conversation_config(make_settings(url, Path(var_dir), **settings_overrides))
    clock = SystemClock()
    timings: list[float] = []
    providers: set[str] = set()
    try:
        with UnitOfWork(factory) as uow:
            conversation = uow.conversations.get(conversation_id, owner_id=conversations.ANY_OWNER)
            assert conversation is not None
            owner = uow.users.get(conversation[0].owner_id)
            uow.session.expunge_all()
        for _ in range(samples):
            started = time.perf_counter()
            events = conversations.answer_stream(
                units=lambda: UnitOfWork(factory),
                clock=clock,
                config=config,
                caller=owner,
                conversation_id=conversation_id,
                content=QUESTION,
            )
            first: float | None = None
            for event in events:
                if first is None and isinstance(event, conversations.Delta):
                    first = (time.perf_counter() - started) * 1000
                if isinstance(event, conversations.MessageEnd):
                    providers.add(event.message.provider or "")
                    if event.message.fallback:
                        raise SystemExit("an answer fell back: the measurement would be the extractive provider's")
            if first is None:
                raise SystemExit("an answer had no delta")
            timings.append(first)
    finally:
        engine.dispose()
    timings.sort()
    return {
        "samples": samples,
        "providers": sorted(providers),
        "p50_ms": statistics.median(timings),
        "p99_ms": timings[min(len(timings) - 1, int(len(timings) * 0.99))],
    }


def main() -> int:
    """CLI; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--conversations", type=int, default=64)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--no-save", action="store_true", help="print the table only (a trial)")
    args = parser.parse_args()
    server_url = os.environ.get("DATABASE_URL", "")
    database = "PostgreSQL" if server_url.startswith("postgresql") else "SQLite"
    figures: dict[str, dict] = {}
    with temporary_database(server_url) as url, FakeLLM() as llm:
        email, _chatbot_id, conversation_ids = load(url, conversation_count=args.conversations + 1)
        timed, asked = conversation_ids[0], conversation_ids[1:]
        # The answer cache off (ANSWER_CACHE_TTL_SECONDS=0): these figures are of composed answers;
        # bench.answer_cache puts cached ones beside them.
        providers = {
            "extractive": {"answer_provider": "extractive", "answer_cache_ttl_seconds": 0},
            "openai (fake server)": {
                "answer_provider": "openai",
                "llm_base_url": llm.base_url,
                "llm_api_key": llm.api_key,
                "answer_cache_ttl_seconds": 0,
            },
        }
        for name, overrides in providers.items():
            env = server_environment(url) | {key.upper(): str(value) for key, value in overrides.items()}
            with serving("with_edge", env) as (port, _server):
                token = login(port, email)
                headers = [f"Authorization: Bearer {token}"]
                wrk_env = os.environ | {
                    "CONVERSATIONS": ",".join(str(item) for item in asked),
                    "BODY": json.dumps({"content": QUESTION}),
                }
                wrk(port, "/api/v1/health", seconds=1, connections=args.connections)  # warm-up
                health = wrk(port, "/api/v1/health", seconds=args.seconds, connections=args.connections)
                before = llm.request_count
                answers = wrk(
                    port,
                    "/",
                    seconds=args.seconds,
                    connections=args.connections,
                    headers=headers,
                    script=HERE / "answers.lua",
                    env=wrk_env,
                )
                answers["llm_requests"] = llm.request_count - before
                if overrides["answer_provider"] == "openai" and answers["llm_requests"] == 0:
                    raise SystemExit("the openai provider never reached the fake server: the measurement is void")
            figures[name] = {
                "health": health,
                "answers": answers,
                "first_delta": first_delta_ms(url, overrides, timed, samples=args.samples),
            }
    stamp = dt.datetime.now(dt.UTC)
    lines = [
        f"## Answers: extractive and openai (fake server) ({database}) — {stamp:%Y-%m-%d %H:%M} UTC",
        "",
        f"`{'DATABASE_URL=postgresql+psycopg://… ' if database == 'PostgreSQL' else ''}python -m bench.answers "
        f"--seconds {args.seconds} --connections {args.connections} --conversations {args.conversations} "
        f"--samples {args.samples}`: one uvicorn worker per provider (edge on, rate limits off), {database} and "
        f"the fake OpenAI-compatible server on the same {os.cpu_count()}-core machine (1-minute load average "
        f"{os.getloadavg()[0]:.1f}), `wrk -t1 -c{args.connections} -d{args.seconds}s`; a cited answer to a "
        "two-passage question, JSON, cycling through the conversations; time to first delta measured at "
        "`answer_stream`, answers one after another.",
        "",
        "| provider | health req/s | health p50 ms | answers/s | answer p50 ms | answer p99 ms "
        "| first delta p50 ms | first delta p99 ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, figure in figures.items():
        health, answers, first = figure["health"], figure["answers"], figure["first_delta"]
        lines.append(
            f"| {name} | {health['rps']:.0f} | {health['p50_ms']:.1f} | {answers['rps']:.1f} "
            f"| {answers['p50_ms']:.1f} | {answers['p99_ms']:.1f} | {first['p50_ms']:.1f} | {first['p99_ms']:.1f} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.no_save:
        return 0
    save_results(
        f"answers-{database.lower()}-{stamp:%Y-%m-%d-%H%M}",
        {"date": stamp.isoformat(), "args": vars(args), "figures": figures},
        text,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
