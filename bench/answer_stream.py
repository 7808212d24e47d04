"""Conversation answers with the extractive provider (issue 16, "make bench"): time to the first
`delta` of a streamed answer (p50/p99) and answers per second, streamed and JSON, next to the
JSON health endpoint in the same run.

A temporary database (a SQLite file by default; a temporary PostgreSQL database on the server of
DATABASE_URL when it names one) gets one user and one active chatbot knowing `--passages`
passages; one uvicorn worker serves the API (edge on, rate limits off). `--clients` threads, each
with a conversation of its own, ask questions for `--seconds` seconds: first streamed
(`Accept: text/event-stream`, read with httpx-sse; the time from sending the request to the
first `delta` event, and to `message_end`), then as JSON (201 answers); then wrk drives
`GET /api/v1/health` with as many connections. Writes bench/results/answer-stream-<db>-<date>.json
and a table in bench/RESULTS.md.

Usage: ``python -m bench.answer_stream [--passages 200] [--seconds 10] [--clients 4]``
(``DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test`` for PostgreSQL).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import httpx_sse

from bench.harness import save_results, server_environment, serving, wrk
from bench.knowledge_search import PASSWORD, login, temporary_database
from persistence.database import make_engine, make_session_factory
from persistence.seed import seed
from persistence.unit_of_work import UnitOfWork
from services import chatbots, knowledge, subscriptions
from services.audit import RequestMeta
from services.clock import SystemClock
from services.passwords import PasswordHasher

BENCH_PLAN = "business_yearly"
"""The plan the bench user is on: it measures the work, not the quotas (a free plan allows 100
messages and 100 crawled pages a month; this one 600,000 of each a year)."""

TOPICS = ["refunds", "shipping", "warranty", "payment", "delivery", "returns", "accounts", "orders"]
QUESTIONS = [f"How long do {topic} take and what do they cost?" for topic in TOPICS]
MAX_ANSWERS = 100_000
"""No client asks more than this many questions, whatever `--seconds` says (a bound)."""


@dataclass(frozen=True)
class Chunk:
    """A passage to index (what `services.knowledge.PassageDraft` asks for)."""

    text: str
    words: int
    page: int | None = None
    heading: str | None = None


def load(url: str, *, passages: int) -> tuple[str, uuid.UUID]:
    """One user and one active chatbot knowing `passages` passages about `TOPICS`, in documents
    of 20 passages; (the user's email, the chatbot's id)."""
    engine = make_engine(url)
    try:
        ((user_id, email),) = seed(
            engine, users=1, tasks_per_user=0, password_hash=PasswordHasher(4).hash(PASSWORD), seed_value=1
        )
        clock = SystemClock()
        with UnitOfWork(make_session_factory(engine)) as uow:
            owner = uow.users.get(user_id)
            assert owner is not None
            subscriptions.current_subscription(uow, owner_id=owner.id, clock=clock, lock=True).plan_code = BENCH_PLAN
            chatbot = chatbots.create_chatbot(
                uow=uow, clock=clock, caller=owner, data={"name": "Bench"}, meta=RequestMeta()
            )
            chatbots.update_chatbot(
                uow=uow,
                clock=clock,
                caller=owner,
                chatbot_id=chatbot.id,
                changes={"status": "active"},
                expected_versions=None,
                meta=RequestMeta(),
            )
            chatbot_id = chatbot.id
        for document in range(0, passages, 20):
            texts = [
                f"Our {TOPICS[n % len(TOPICS)]} take {n % 14 + 1} days. They cost {n % 9 + 2} euros in zone {n}. "
                f"Ask the service desk about {TOPICS[(n + 3) % len(TOPICS)]} for order number {n}."
                for n in range(document, min(document + 20, passages))
            ]
            with UnitOfWork(make_session_factory(engine)) as uow:
                knowledge.index_source(
                    uow=uow,
                    clock=clock,
                    chatbot_id=chatbot_id,
                    source=knowledge.KnowledgeSource("document", uuid.uuid4(), title=f"Manual {document // 20}"),
                    passages=[Chunk(text, len(text.split()), page=1) for text in texts],
                )
        return email, chatbot_id
    finally:
        engine.dispose()


def percentile(values: list[float], share: float) -> float:
    """The `share` (0..1) percentile of `values` (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


def run_clients(
    clients: int, seconds: float, ask: Callable[[httpx.Client, int, int], tuple[float, float]], base_url: str
) -> tuple[list[tuple[float, float]], float]:
    """`clients` threads calling ``ask(client, i, n)`` until `seconds` have passed (each at most
    `MAX_ANSWERS` times); the (first byte-or-delta, whole answer) times of every call, and the
    seconds the run took."""
    results: list[list[tuple[float, float]]] = [[] for _ in range(clients)]
    barrier = threading.Barrier(clients + 1, timeout=60)
    deadline: list[float] = [0.0]

    failures: list[BaseException] = []

    def work(i: int) -> None:
        with httpx.Client(base_url=base_url, timeout=60) as client:
            client.get("/api/v1/health/live")
            barrier.wait()
            try:
                for n in range(MAX_ANSWERS):
                    if time.monotonic() >= deadline[0]:
                        return
                    results[i].append(ask(client, i, n))
            except BaseException as error:  # handed to the main thread, which stops the run
                failures.append(error)

    threads = [threading.Thread(target=work, args=(i,), name=f"asker-{i}") for i in range(clients)]
    for thread in threads:
        thread.start()
    deadline[0] = time.monotonic() + seconds
    started = time.monotonic()
    barrier.wait()
    for thread in threads:
        thread.join(seconds + 120)
    if failures:
        raise failures[0]
    return [item for per_client in results for item in per_client], time.monotonic() - started


def summary(times: list[tuple[float, float]], took: float) -> dict[str, float]:
    """Answers per second and p50/p99 of the first-delta and whole-answer times, in ms."""
    first = [item[0] * 1000 for item in times]
    whole = [item[1] * 1000 for item in times]
    return {
        "answers": len(times),
        "answers_per_s": len(times) / took,
        "first_p50_ms": statistics.median(first),
        "first_p99_ms": percentile(first, 0.99),
        "whole_p50_ms": statistics.median(whole),
        "whole_p99_ms": percentile(whole, 0.99),
    }


def main() -> int:
    """CLI; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passages", type=int, default=200)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()
    server_url = os.environ.get("DATABASE_URL", "")
    database = "PostgreSQL" if server_url.startswith("postgresql") else "SQLite"
    figures: dict[str, dict] = {}
    with temporary_database(server_url) as url:
        email, chatbot_id = load(url, passages=args.passages)
        # The answer cache off: the streams measured are composed (bench.answer_cache has cached ones).
        with serving("with_edge", server_environment(url) | {"ANSWER_CACHE_TTL_SECONDS": "0"}) as (port, _server):
            base_url = f"http://127.0.0.1:{port}"
            auth = {"Authorization": f"Bearer {login(port, email)}"}
            with httpx.Client(base_url=base_url, timeout=60) as http:
                conversations = []
                for _ in range(args.clients):
                    made = http.post(f"/api/v1/chatbots/{chatbot_id}/conversations", json={}, headers=auth)
                    made.raise_for_status()
                    conversations.append(made.json()["id"])

            def streamed(client: httpx.Client, i: int, n: int) -> tuple[float, float]:
                body = {"content": QUESTIONS[n % len(QUESTIONS)]}
                path = f"/api/v1/conversations/{conversations[i]}/messages"
                sent = time.perf_counter()
                first = None
                # a copy: connect_sse adds Accept: text/event-stream to the dict it is given
                with httpx_sse.connect_sse(client, "POST", path, json=body, headers=dict(auth)) as source:
                    if source.response.status_code != 201:
                        raise SystemExit(f"a streamed answer was {source.response.status_code}: the run is void")
                    names = []
                    for event in source.iter_sse():
                        names.append(event.event)
                        if event.event == "delta" and first is None:
                            first = time.perf_counter() - sent
                if names[-1] != "message_end" or first is None:
                    raise SystemExit(f"a stream ended with {names}: the run is void")
                return first, time.perf_counter() - sent

            def as_json(client: httpx.Client, i: int, n: int) -> tuple[float, float]:
                body = {"content": QUESTIONS[n % len(QUESTIONS)]}
                sent = time.perf_counter()
                answer = client.post(f"/api/v1/conversations/{conversations[i]}/messages", json=body, headers=auth)
                if answer.status_code != 201 or not answer.json()["citations"]:
                    raise SystemExit(f"a JSON answer was {answer.status_code} or uncited: the run is void")
                took = time.perf_counter() - sent
                return took, took

            run_clients(args.clients, 2, streamed, base_url)  # warm-up
            figures["streamed"] = summary(*run_clients(args.clients, args.seconds, streamed, base_url))
            figures["json"] = summary(*run_clients(args.clients, args.seconds, as_json, base_url))
            figures["health"] = wrk(port, "/api/v1/health", seconds=args.seconds, connections=args.clients)
    stamp = dt.datetime.now(dt.UTC)
    streamed_figures, json_figures, health = figures["streamed"], figures["json"], figures["health"]
    lines = [
        f"## Conversation answers, extractive provider ({database}) — {stamp:%Y-%m-%d %H:%M} UTC",
        "",
        f"`{'DATABASE_URL=postgresql+psycopg://… ' if database == 'PostgreSQL' else ''}python -m bench.answer_stream "
        f"--passages {args.passages} --seconds {args.seconds} --clients {args.clients}`: one chatbot knowing "
        f"{args.passages} passages, {args.clients} clients each asking in a conversation of its own for "
        f"{args.seconds} s, one uvicorn worker (edge on, rate limits off), {database} on the same "
        f"{os.cpu_count()}-core machine (1-minute load average {os.getloadavg()[0]:.1f}); the health endpoint "
        f"with `wrk -t1 -c{args.clients} -d{args.seconds}s` in the same run. First = first `delta` event "
        "(streamed) or the whole answer (JSON).",
        "",
        "| what | answers | per s | first p50 ms | first p99 ms | whole p50 ms | whole p99 ms |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, figure in (("streamed (SSE)", streamed_figures), ("JSON", json_figures)):
        lines.append(
            f"| {name} | {figure['answers']} | {figure['answers_per_s']:.1f} | {figure['first_p50_ms']:.1f} "
            f"| {figure['first_p99_ms']:.1f} | {figure['whole_p50_ms']:.1f} | {figure['whole_p99_ms']:.1f} |"
        )
    lines.append(
        f"| `GET /api/v1/health` | — | {health['rps']:.0f} | {health['p50_ms']:.1f} | {health['p99_ms']:.1f} | — | — |"
    )
    text = "\n".join(lines) + "\n"
    print(text)
    save_results(
        f"answer-stream-{database.lower()}-{stamp:%Y-%m-%d-%H%M}",
        {"date": stamp.isoformat(), "args": vars(args), "figures": figures},
        text,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
