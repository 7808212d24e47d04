"""Search latency over a chatbot's knowledge of 100,000 passages (issue 15: "search latency over
100k passages on both databases").

A temporary database (a SQLite file by default; a temporary PostgreSQL database on the server of
DATABASE_URL when it names one) gets one user, one chatbot and `--passages` passages of
`--words` words each, drawn from a Zipf-like vocabulary (a few words in most passages, most in
few) with a handful of rare phrases planted; then one uvicorn worker serves the API and wrk
measures `GET /api/v1/chatbots/{id}/search` for a common word, two words, a rare word and a
phrase. Writes bench/results/knowledge-search-<date>.json and a table in bench/RESULTS.md.

Usage: ``python -m bench.knowledge_search [--passages 100000] [--words 120] [--seconds 10]
[--connections 16]`` (``DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test`` for
PostgreSQL).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import random
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator

from sqlalchemy import insert, text

from bench.harness import save_results, server_environment, serving, wrk
from persistence.database import make_engine, make_session_factory
from persistence.knowledge.models import Passage
from persistence.seed import seed
from persistence.unit_of_work import UnitOfWork
from server.cli import migrate
from services import chatbots
from services.audit import RequestMeta
from services.clock import SystemClock
from services.passwords import PasswordHasher
from tests.helpers import temporary_postgres_database

PASSWORD = "benchmark passphrase of some length"  # noqa: S105 - a throw-away benchmark account
SYLLABLES = ["ka", "lo", "mi", "ne", "su", "ta", "ri", "po", "de", "va", "go", "be", "zu", "fi", "ho", "ja"]
COMMON = ["order", "refund", "shipping", "account", "warranty", "delivery", "payment", "return"]
RARE_PHRASE = "quantum espresso calibration"
QUERIES = {
    "common word": "refund",
    "two words": "refund shipping",
    "rare word": "espresso",
    "phrase": f'"{RARE_PHRASE}"',
}


def vocabulary(rng: random.Random, size: int = 5000) -> list[str]:
    """`size` words by falling frequency: made-up words of two to four syllables, with the
    support words of `COMMON` at ranks 100 to 107 — each then in about one passage in eight (a
    word in every passage would be a stop word, which no search looks for)."""
    words: list[str] = []
    while len(words) < size - len(COMMON):
        words.append("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))))
    return words[:100] + COMMON + words[100:]


def passage_texts(count: int, words: int, seed_value: int = 1) -> Iterator[str]:
    """`count` texts of `words` words drawn Zipf-like from `vocabulary`; one in 5,000 carries
    `RARE_PHRASE`."""
    rng = random.Random(seed_value)  # noqa: S311 - fake data, not secrets
    vocab = vocabulary(rng)
    weights = [1 / (rank + 1) for rank in range(len(vocab))]
    for number in range(count):
        chosen = rng.choices(vocab, weights=weights, k=words)
        if number % 5000 == 0:
            chosen[words // 2 : words // 2 + 3] = RARE_PHRASE.split()
        yield " ".join(chosen) + "."


@contextlib.contextmanager
def temporary_database(server_url: str) -> Iterator[str]:
    """A new migrated database: on the PostgreSQL server of `server_url`, else a SQLite file."""
    if server_url.startswith("postgresql"):
        with temporary_postgres_database(server_url, prefix="charter_bench") as url:
            migrate(url)
            yield url
    else:
        with tempfile.TemporaryDirectory(prefix="charter-bench-") as folder:
            url = f"sqlite:///{folder}/bench.db"
            migrate(url)
            yield url


def load(url: str, *, passages: int, words: int) -> tuple[uuid.UUID, str, uuid.UUID, float]:
    """One user and one chatbot with `passages` passages; (user id, email, chatbot id, seconds
    the passages took to load, their full-text index included)."""
    engine = make_engine(url)
    try:
        ((user_id, email),) = seed(
            engine, users=1, tasks_per_user=0, password_hash=PasswordHasher(4).hash(PASSWORD), seed_value=1
        )
        with UnitOfWork(make_session_factory(engine)) as uow:
            owner = uow.users.get(user_id)
            assert owner is not None
            chatbot_id = chatbots.create_chatbot(
                uow=uow, clock=SystemClock(), caller=owner, data={"name": "Bench"}, meta=RequestMeta()
            ).id
        now = dt.datetime.now(dt.UTC)
        started = time.monotonic()
        batch: list[dict] = []
        for position, body in enumerate(passage_texts(passages, words)):
            batch.append(
                {
                    "id": uuid.uuid4(),
                    "chatbot_id": chatbot_id,
                    "source_type": "document",
                    "source_id": uuid.UUID(int=position // 50),
                    "position": position % 50,
                    "text": body,
                    "words": words,
                    "title": f"Bench document {position // 50}",
                    "created_at": now,
                }
            )
            if len(batch) == 2000:
                with engine.begin() as connection:
                    connection.execute(insert(Passage), batch)
                batch = []
                print(f"\rloaded {position + 1:,} passages", end="", file=sys.stderr)
        if batch:
            with engine.begin() as connection:
                connection.execute(insert(Passage), batch)
        if engine.dialect.name == "postgresql":  # fresh statistics after a bulk load, as autovacuum would
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                connection.execute(text("VACUUM ANALYZE knowledge_passages"))
        print(file=sys.stderr)
        return user_id, email, chatbot_id, time.monotonic() - started
    finally:
        engine.dispose()


def login(port: int, email: str) -> str:
    """An access token of the bench account."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1/auth/login",
        method="POST",
        data=json.dumps({"email": email, "password": PASSWORD}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return str(json.loads(response.read())["access_token"])


def count_hits(port: int, path: str, token: str) -> int:
    """How many items a search answers (a search that finds nothing would measure nothing)."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return len(json.loads(response.read())["items"])


def main() -> int:
    """CLI; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passages", type=int, default=100_000)
    parser.add_argument("--words", type=int, default=120)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    server_url = os.environ.get("DATABASE_URL", "")
    database = "PostgreSQL" if server_url.startswith("postgresql") else "SQLite"
    figures: dict[str, dict] = {}
    with temporary_database(server_url) as url:
        user_id, email, chatbot_id, load_seconds = load(url, passages=args.passages, words=args.words)
        with serving("with_edge", server_environment(url)) as (port, _server):
            token = login(port, email)
            headers = [f"Authorization: Bearer {token}"]
            for name, query in QUERIES.items():
                path = f"/api/v1/chatbots/{chatbot_id}/search?" + urllib.parse.urlencode({"q": query, "limit": 10})
                hits = count_hits(port, path, token)
                if hits == 0:
                    raise SystemExit(f"the {name} search finds nothing: the measurement would be void")
                wrk(port, path, seconds=2, connections=args.connections, headers=headers)  # warm-up
                figures[name] = {
                    "query": query,
                    "hits": hits,
                    **wrk(port, path, seconds=args.seconds, connections=args.connections, headers=headers),
                }
    stamp = dt.datetime.now(dt.UTC)
    lines = [
        f"## Knowledge search over {args.passages:,} passages ({database}) — {stamp:%Y-%m-%d %H:%M} UTC",
        "",
        f"`{'DATABASE_URL=postgresql+psycopg://… ' if database == 'PostgreSQL' else ''}python -m "
        f"bench.knowledge_search --passages {args.passages} --words {args.words} --seconds {args.seconds} "
        f"--connections {args.connections}`: one chatbot's {args.passages:,} passages of {args.words} words "
        f"(loaded with their full-text index in {load_seconds:.0f} s), one uvicorn worker (edge on, rate limits "
        f"off), {database} on the same {os.cpu_count()}-core machine (1-minute load average "
        f"{os.getloadavg()[0]:.1f}), `wrk -t1 -c{args.connections} -d{args.seconds}s`, 10 hits asked.",
        "",
        "| search | q | hits | req/s | p50 ms | p99 ms |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name, figure in figures.items():
        lines.append(
            f"| {name} | `{figure['query']}` | {figure['hits']} | {figure['rps']:.0f} | {figure['p50_ms']:.1f} "
            f"| {figure['p99_ms']:.1f} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    save_results(
        f"knowledge-search-{database.lower()}-{stamp:%Y-%m-%d-%H%M}",
        {"date": stamp.isoformat(), "args": vars(args), "figures": figures},
        text,
    )
    del user_id
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
