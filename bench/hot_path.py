"""The hot path (issue 7): requests/second and p50/p99 latency of the service's common
operations, one uvicorn worker on PostgreSQL, next to references measured in the same run: a bare
ASGI hello (this machine's ceiling), a stock connexion FlaskApp hello with request and response
validation, and the FastAPI twin (issue 13, `bench.reference.twin`) answering the task page and
task creation on the same database with the same token and wrk options. Results are given as
ratios to the references, since absolute figures drift on a shared machine.

The database holds USERS accounts of TASKS_PER_USER tasks each (10 x 10,000); the bench user is
one of them. Before measuring, the twin's JSON is compared with Charter's (`compare_answers`):
a difference stops the run.

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
USERS = 10
TASKS_PER_USER = 10_000
TWIN_READY = "/openapi.json"
"""What the bench polls until the twin answers (FastAPI serves it by default)."""
PAGE, POST = "GET tasks (first page, 20)", "POST a task"
TWIN = "FastAPI twin: "
"""Prefix of the twin's rows; they measure Charter's PAGE and POST operations against the twin."""
PAGE_C8 = f"{PAGE}, 8 connections"


def _call(port: int, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
    return _exchange(port, method, path, body, token)[1]


def _exchange(port: int, method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
    """One JSON request to 127.0.0.1:`port`; (the status, the decoded body or None). Raises on 4xx/5xx."""
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
        return response.status, json.loads(raw) if raw else None


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
        {"name": PAGE, "path": f"{tasks_path}?limit=20", "headers": bearer},
        {
            "name": POST,
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
    """Warm up 2 s, then `wrk` for `seconds`; req/s and p50/p99 in ms (`bench.harness.wrk`).
    An operation's own "connections" overrides `connections`."""
    options = wrk_options(operation, operation.get("connections", connections))
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
    """A temporary PostgreSQL database on DATABASE_URL's server, migrated and seeded (bulk COPY)
    with USERS users of TASKS_PER_USER tasks each; yields (the server's environment, the first
    user's id, their email).

    Raises SystemExit when DATABASE_URL does not name PostgreSQL.
    """
    server_url = os.environ.get("DATABASE_URL", "")
    if not server_url.startswith("postgresql"):
        raise SystemExit("DATABASE_URL must name a PostgreSQL server (a temporary database is made there)")
    with temporary_postgres_database(server_url, prefix="charter_hot") as url:
        migrate(url)
        engine = make_engine(url)
        (user_id, email), *_ = seed(
            engine,
            users=USERS,
            tasks_per_user=TASKS_PER_USER,
            seed_value=3,
            password_hash=PasswordHasher(12).hash(PASSWORD),
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


def with_twin(operations: list[dict[str, Any]], twin_port: int) -> Iterator[dict[str, Any]]:
    """Charter's operations in order, each of PAGE and POST followed by the same request to the
    twin (its row: TWIN + name), and PAGE also by Charter's page at 8 connections (PAGE_C8)."""
    for operation in operations:
        yield operation
        if operation["name"] in (PAGE, POST):
            yield {**operation, "name": TWIN + operation["name"], "port": twin_port}
        if operation["name"] == PAGE:
            yield {**operation, "name": PAGE_C8, "connections": 8}


def compare_answers(charter_port: int, twin_port: int, page: dict[str, Any], post: dict[str, Any]) -> str:
    """Ask Charter and the twin the same PAGE and POST (same user, same token) and compare the JSON:
    the page must be equal (items, keys, order, tags, `next_cursor`); the created tasks must have
    the same status and keys, and the same values but `id`, `created_at` and `updated_at`.

    Returns a one-line summary; raises SystemExit naming the first difference.
    """
    token = page["headers"][0].removeprefix("Authorization: Bearer ")
    (status, charter), (twin_status, twin) = (
        _exchange(port, "GET", page["path"], token=token) for port in (charter_port, twin_port)
    )
    if (status, charter) != (twin_status, twin):
        pairs = zip(charter.get("items", []), twin.get("items", []), strict=False)
        first = next(((a, b) for a, b in pairs if a != b), (charter, twin))
        raise SystemExit(f"the twin's page differs from Charter's ({status}/{twin_status}): {first[0]} != {first[1]}")
    body = json.loads(post["env"]["BODY"])
    (status, created), (twin_status, twin_created) = (
        _exchange(port, "POST", post["path"], body, token) for port in (charter_port, twin_port)
    )
    own = {"id", "created_at", "updated_at"}
    if (
        status != twin_status
        or created.keys() != twin_created.keys()
        or any(created[key] != twin_created[key] for key in created.keys() - own)
    ):
        raise SystemExit(
            f"the twin's created task differs from Charter's ({status}/{twin_status}): {created} != {twin_created}"
        )
    return (
        f"JSON compared before measuring: the first page is equal on both ({len(charter['items'])} items, "
        f"{sum(bool(item['tags']) for item in charter['items'])} with tags; keys "
        f"{sorted(charter['items'][0])}, `next_cursor` {'equal' if charter['next_cursor'] else 'null on both'}); "
        f"a created task is {status} on both with the same keys and values but {', '.join(sorted(own))}."
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    results: dict[str, dict[str, float]] = {}
    with seeded_environment() as (env, user_id, email):
        results["bare ASGI hello (ceiling)"] = _reference("bare_asgi", "/", env, args.seconds, args.connections)
        results["stock connexion hello"] = _reference("stock_connexion", "/hello", env, args.seconds, args.connections)
        with (
            running_service(env, user_id, email, args.connections) as (_, operations),
            serving("fastapi_twin", env, ready_path=TWIN_READY) as (twin_port, _),
        ):
            named = {operation["name"]: operation for operation in operations}
            compared = compare_answers(named[PAGE]["port"], twin_port, named[PAGE], named[POST])
            for operation in with_twin(operations, twin_port):
                results[operation["name"]] = _measure(operation["port"], operation, args.seconds, args.connections)

    stamp = dt.datetime.now(dt.UTC)
    stock, ceiling = results["stock connexion hello"]["rps"], results["bare ASGI hello (ceiling)"]["rps"]
    ratios = {
        "Charter page / twin page, req/s": results[PAGE]["rps"] / results[TWIN + PAGE]["rps"],
        "Charter POST / twin POST, req/s": results[POST]["rps"] / results[TWIN + POST]["rps"],
        "Charter health / stock connexion hello, req/s": results["GET /api/v1/health"]["rps"] / stock,
        f"Charter page p99 / p50, {args.connections} connections": results[PAGE]["p99_ms"] / results[PAGE]["p50_ms"],
        "Charter page p99 / p50, 8 connections": results[PAGE_C8]["p99_ms"] / results[PAGE_C8]["p50_ms"],
    }
    lines = [
        f"## Hot path — {stamp:%Y-%m-%d %H:%M} UTC",
        "",
        f"`DATABASE_URL=postgresql+psycopg://… python -m bench.hot_path --seconds {args.seconds} --connections "
        f"{args.connections}`: one uvicorn worker, PostgreSQL, `wrk -c{args.connections} -d{args.seconds}s` "
        f"on the same {os.cpu_count()}-core machine; ratios to the references of the same run. "
        f"{USERS * TASKS_PER_USER:,} tasks, {TASKS_PER_USER:,} of them the bench user's.",
        "",
        "| operation | req/s | p50 ms | p99 ms | x stock connexion hello | x bare ASGI |",
        "|---|---:|---:|---:|---:|---:|",
        *(
            f"| {name} | {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['rps'] / stock:.2f} | "
            f"{r['rps'] / ceiling:.3f} |"
            for name, r in results.items()
        ),
        "",
        "| ratio | value |",
        "|---|---:|",
        *(f"| {name} | {value:.2f} |" for name, value in ratios.items()),
        "",
        compared,
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    out = ROOT / "bench" / "results" / f"hot-path-{stamp:%Y-%m-%d-%H%M}"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(
        json.dumps({"date": stamp.isoformat(), "args": vars(args), "results": results, "ratios": ratios}, indent=2)
    )
    out.with_suffix(".md").write_text(text)
    _chart(results, out.with_suffix(".png"), f"Charter hot path, {stamp:%Y-%m-%d %H:%M} UTC")
    summary = ROOT / "bench" / "RESULTS.md"
    previous = summary.read_text() if summary.exists() else "# Benchmark results\n"
    summary.write_text(previous.rstrip("\n") + "\n\n" + text + f"\n![chart](results/{out.name}.png)\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
