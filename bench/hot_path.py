"""The hot path (issue 7): requests/second and p50/p99 latency of the service's common
operations, one uvicorn worker on PostgreSQL, next to two references measured in the same run:
a bare ASGI hello (this machine's ceiling) and a stock connexion FlaskApp hello with request and
response validation. Results are given as ratios to the references, since absolute figures
drift on a shared machine.

Usage: ``python -m bench.hot_path [--seconds 10] [--connections 32]`` with DATABASE_URL naming a
PostgreSQL server (a temporary database is made and dropped there). Writes
bench/results/hot-path-<date>.{json,md,png} and appends the table to bench/RESULTS.md.

Every operation goes through connexion's routing, security, request and response validation
and the edge middleware as a client's request would. Rate-limit counting is off here (one
client and one user would only measure 429s; `bench.edge_cost` measures the limits).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.harness import server_environment, serving, wrk
from persistence.database import make_engine
from persistence.seed import seed
from server.cli import migrate
from services.passwords import PasswordHasher
from tests.helpers import temporary_postgres_database

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
PASSWORD = "benchmark passphrase of some length"  # noqa: S105 - a throw-away benchmark account
TASKS = 200


def _call(port: int, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        method=method,
        headers=headers,
        data=json.dumps(body).encode() if body is not None else None,
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        raw = response.read()
    return json.loads(raw) if raw else None


def _operations(port: int, email: str, user_id: str, connections: int) -> list[dict[str, Any]]:
    login = {"email": email, "password": PASSWORD}
    access = _call(port, "POST", "/api/v1/auth/login", login)["access_token"]
    task = _call(port, "POST", f"/api/v1/users/{user_id}/tasks", {"title": "Benchmark me"}, access)
    refresh_tokens = [_call(port, "POST", "/api/v1/auth/login", login)["refresh_token"] for _ in range(connections)]
    bearer = [f"Authorization: Bearer {access}"]
    tasks_path = f"/api/v1/users/{user_id}/tasks"
    return [
        {"name": "GET /api/v1/health", "path": "/api/v1/health"},
        {"name": "GET /api/v1/auth/me", "path": "/api/v1/auth/me", "headers": bearer},
        {"name": "GET tasks (first page, 20)", "path": f"{tasks_path}?limit=20", "headers": bearer},
        {
            "name": "POST a task",
            "path": tasks_path,
            "headers": bearer,
            "script": HERE / "post_json.lua",
            "env": {"METHOD": "POST", "BODY": json.dumps({"title": "Benchmark task", "priority": "high"})},
        },
        {
            "name": "PATCH …/complete",
            "path": f"{tasks_path}/{task['id']}/complete",
            "headers": bearer,
            "script": HERE / "post_json.lua",
            "env": {"METHOD": "PATCH", "BODY": json.dumps({"completed": True})},
        },
        {
            "name": "POST /api/v1/auth/refresh",
            "path": "/api/v1/auth/refresh",
            "script": HERE / "refresh_chain.lua",
            "threads": connections,
            "env": {"TOKENS": ",".join(refresh_tokens)},
        },
    ]


def wrk_options(operation: dict[str, Any], connections: int) -> dict[str, Any]:
    """The keyword arguments of `bench.harness.wrk` that drive one of `_operations`."""
    return {
        "connections": connections,
        "headers": operation.get("headers", ()),
        "script": operation.get("script"),
        "threads": operation.get("threads", 1),
        "env": {**os.environ, **operation.get("env", {})},
    }


def _measure(port: int, operation: dict[str, Any], seconds: int, connections: int) -> dict[str, float]:
    options = wrk_options(operation, connections)
    if operation["name"] != "POST /api/v1/auth/refresh":  # a warm-up would use up the refresh chains
        wrk(port, operation["path"], seconds=2, **options)
    return wrk(port, operation["path"], seconds=seconds, **options)


def _reference(factory: str, path: str, env: dict[str, str], seconds: int, connections: int) -> dict[str, float]:
    with serving(factory, env, ready_path=path) as (port, _):
        wrk(port, path, seconds=2, connections=connections)
        return wrk(port, path, seconds=seconds, connections=connections)


def _chart(results: dict[str, dict[str, float]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    figure, (rps_axis, latency_axis) = plt.subplots(1, 2, figsize=(13, 5))
    rps_axis.barh(names, [results[n]["rps"] for n in names], color="#4c72b0")
    rps_axis.set_xscale("log")  # the bare ASGI ceiling is ~40x the rest: a linear axis hides them
    rps_axis.set_xlabel("requests / second (one worker, log scale)")
    stock = results.get("stock connexion hello", {}).get("rps")
    if stock:
        rps_axis.axvline(stock, color="#c44e52", linestyle="--", linewidth=1, label="stock connexion hello")
        rps_axis.legend(loc="lower right")
    rps_axis.invert_yaxis()
    positions = range(len(names))
    latency_axis.barh([p - 0.2 for p in positions], [results[n]["p50_ms"] for n in names], height=0.4, label="p50")
    latency_axis.barh([p + 0.2 for p in positions], [results[n]["p99_ms"] for n in names], height=0.4, label="p99")
    latency_axis.set_yticks(list(positions), [""] * len(names))
    latency_axis.invert_yaxis()
    latency_axis.set_xlabel("latency, ms")
    latency_axis.legend()
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


@contextlib.contextmanager
def seeded_environment() -> Iterator[tuple[dict[str, str], str, str]]:
    """A temporary PostgreSQL database on DATABASE_URL's server, migrated and seeded with one
    user owning TASKS tasks; yields (the server's environment, the user's id, the user's email).

    Raises SystemExit when DATABASE_URL does not name PostgreSQL.
    """
    server_url = os.environ.get("DATABASE_URL", "")
    if not server_url.startswith("postgresql"):
        raise SystemExit("DATABASE_URL must name a PostgreSQL server (a temporary database is made there)")
    with temporary_postgres_database(server_url, prefix="charter_hot") as url:
        migrate(url)
        engine = make_engine(url)
        ((user_id, email),) = seed(
            engine, users=1, tasks_per_user=TASKS, seed_value=3, password_hash=PasswordHasher(12).hash(PASSWORD)
        )
        engine.dispose()
        yield (
            server_environment(url),
            str(user_id),
            email,
        )


@contextlib.contextmanager
def running_service(env: dict[str, str], user_id: str, email: str, connections: int) -> Iterator[tuple[Any, list]]:
    """The service (`bench.apps:with_edge`, one uvicorn worker) on a free port; yields (its
    process, the operations to drive, as `_operations` gives them). Stops it on exit."""
    with serving("with_edge", env) as (port, server):
        yield server, [{**operation, "port": port} for operation in _operations(port, email, user_id, connections)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    results: dict[str, dict[str, float]] = {}
    with seeded_environment() as (env, user_id, email):
        results["bare ASGI hello (ceiling)"] = _reference("bare_asgi", "/", env, args.seconds, args.connections)
        results["stock connexion hello"] = _reference("stock_connexion", "/hello", env, args.seconds, args.connections)
        with running_service(env, user_id, email, args.connections) as (_, operations):
            for operation in operations:
                results[operation["name"]] = _measure(operation["port"], operation, args.seconds, args.connections)

    stamp = dt.datetime.now(dt.UTC)
    stock, ceiling = results["stock connexion hello"]["rps"], results["bare ASGI hello (ceiling)"]["rps"]
    lines = [
        f"## Hot path — {stamp:%Y-%m-%d %H:%M} UTC",
        "",
        f"`DATABASE_URL=postgresql+psycopg://… python -m bench.hot_path --seconds {args.seconds} --connections "
        f"{args.connections}`: one uvicorn worker, PostgreSQL, `wrk -c{args.connections} -d{args.seconds}s` "
        f"on the same {os.cpu_count()}-core machine; ratios to the references of the same run.",
        "",
        "| operation | req/s | p50 ms | p99 ms | x stock connexion hello | x bare ASGI |",
        "|---|---:|---:|---:|---:|---:|",
        *(
            f"| {name} | {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['rps'] / stock:.2f} | "
            f"{r['rps'] / ceiling:.3f} |"
            for name, r in results.items()
        ),
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    out = ROOT / "bench" / "results" / f"hot-path-{stamp:%Y-%m-%d-%H%M}"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(
        json.dumps({"date": stamp.isoformat(), "args": vars(args), "results": results}, indent=2)
    )
    out.with_suffix(".md").write_text(text)
    _chart(results, out.with_suffix(".png"), f"Charter hot path, {stamp:%Y-%m-%d %H:%M} UTC")
    summary = ROOT / "bench" / "RESULTS.md"
    previous = summary.read_text() if summary.exists() else "# Benchmark results\n"
    summary.write_text(previous.rstrip("\n") + "\n\n" + text + f"\n![chart](results/{out.name}.png)\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
