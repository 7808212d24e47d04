"""Do task queries stay fast when one user has a million tasks? (issue: "Performance").

On a temporary PostgreSQL database (on the server of DATABASE_URL), one user gets 10,000
tasks, then 1,000,000; after each load, one uvicorn worker serves the API and wrk measures,
one after another: the first page of the list (limit 50), a page deep in the cursor chain
(the middle of the list), a filtered list, a search, and the statistics. Writes
bench/results/tasks-scale-<date>.json and the table in bench/RESULTS.md.

Usage: ``DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test python -m bench.tasks_scale
[--seconds 10] [--connections 16] [--small 10000] [--large 1000000]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import uuid

from sqlalchemy import select
from tqdm import tqdm

from bench.harness import free_port, save_results, serve, server_environment, wrk
from persistence.database import make_engine
from persistence.seed import add_tasks, seed
from persistence.tasks.models import Task
from server.cli import migrate
from services.cursors import encode_values
from services.passwords import PasswordHasher
from tests.helpers import temporary_postgres_database

PASSWORD = "benchmark passphrase of some length"  # noqa: S105 - a throw-away benchmark account


def _queries(user_id: uuid.UUID, deep_cursor: str) -> dict[str, str]:
    base = f"/api/v1/users/{user_id}/tasks"
    return {
        "first page": f"{base}?limit=50",
        "deep page": f"{base}?limit=50&cursor={deep_cursor}",
        "filtered": f"{base}?limit=50&completed=false&priority=high&priority=urgent&tag=work",
        "search": f"{base}?limit=50&q=quarterly%20report",
        "stats": f"{base}/stats",
    }


def _middle_cursor(engine, user_id: uuid.UUID, total: int) -> str:
    with engine.connect() as connection:
        created_at, task_id = connection.execute(
            select(Task.created_at, Task.id)
            .where(Task.owner_id == user_id)
            .order_by(Task.created_at.desc(), Task.id.desc())
            .offset(total // 2)
            .limit(1)
        ).one()
    return encode_values([created_at, task_id], scope="created_at:desc")


def _measure(url: str, env: dict[str, str], user_id: uuid.UUID, email: str, deep_cursor: str, args) -> dict:
    import urllib.request

    port = free_port()
    server = serve("with_edge", port, env)
    try:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/v1/auth/login",
            method="POST",
            data=json.dumps({"email": email, "password": PASSWORD}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            token = json.loads(response.read())["access_token"]
        headers = [f"Authorization: Bearer {token}"]
        results = {}
        for name, path in _queries(user_id, deep_cursor).items():
            wrk(port, path, seconds=2, connections=args.connections, headers=headers)  # warm-up
            results[name] = wrk(port, path, seconds=args.seconds, connections=args.connections, headers=headers)
        return results
    finally:
        server.terminate()
        server.wait(timeout=10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    args = parser.parse_args()
    server_url = os.environ.get("DATABASE_URL", "")
    if not server_url.startswith("postgresql"):
        raise SystemExit("DATABASE_URL must name a PostgreSQL server (a temporary database is made there)")
    figures: dict[str, dict] = {}
    with temporary_postgres_database(server_url, prefix="charter_bench") as url:
        migrate(url)
        engine = make_engine(url)
        env = server_environment(url)
        with tqdm(total=args.small, unit="task", unit_scale=True, desc="seeding", file=sys.stderr) as bar:
            ((user_id, email),) = seed(
                engine,
                users=1,
                tasks_per_user=args.small,
                progress=bar.update,
                password_hash=PasswordHasher(4).hash(PASSWORD),
                seed_value=1,
            )
        figures[f"{args.small:,} tasks"] = _measure(
            url, env, user_id, email, _middle_cursor(engine, user_id, args.small), args
        )
        with tqdm(total=args.large - args.small, unit="task", unit_scale=True, desc="seeding", file=sys.stderr) as bar:
            add_tasks(engine, owner_id=user_id, count=args.large - args.small, progress=bar.update)
        figures[f"{args.large:,} tasks"] = _measure(
            url, env, user_id, email, _middle_cursor(engine, user_id, args.large), args
        )
        engine.dispose()

    small, large = figures[f"{args.small:,} tasks"], figures[f"{args.large:,} tasks"]
    stamp = dt.datetime.now(dt.UTC)
    lines = [
        f"## Tasks at scale — {stamp:%Y-%m-%d %H:%M} UTC",
        "",
        f"`DATABASE_URL=postgresql+psycopg://… python -m bench.tasks_scale --seconds {args.seconds} "
        f"--connections {args.connections}`: one user, one uvicorn worker (edge middleware on, rate limits off), "
        f"PostgreSQL on the same {os.cpu_count()}-core machine, `wrk -t1 -c{args.connections} -d{args.seconds}s`.",
        "",
        f"| query | req/s at {args.small:,} | p50 ms | p99 ms | req/s at {args.large:,} | p50 ms | p99 ms "
        "| slowdown (p50) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in small:
        a, b = small[name], large[name]
        lines.append(
            f"| {name} | {a['rps']:.0f} | {a['p50_ms']:.1f} | {a['p99_ms']:.1f} | {b['rps']:.0f} | "
            f"{b['p50_ms']:.1f} | {b['p99_ms']:.1f} | {b['p50_ms'] / a['p50_ms']:.2f}x |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    save_results(
        f"tasks-scale-{stamp:%Y-%m-%d}", {"date": stamp.isoformat(), "args": vars(args), "figures": figures}, text
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
