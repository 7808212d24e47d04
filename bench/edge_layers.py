"""What the edge's layers cost in-process: `GET /api/v1/health` through the ASGI middleware
`create_app` installs in front of connexion (found in its middleware list, so any checkout's
edge is measured as installed), around a bare ASGI answer instead of connexion, with no network,
no wrk and no second process. Microseconds of CPU per request, on one event loop, from 10,000
client addresses (X-Forwarded-For from a trusted proxy), LOG_LEVEL=WARNING, as `bench.edge_cost`.

`bench.edge_cost` measures the same layers through uvicorn and wrk, where a change of tens of
microseconds disappears in a shared machine's noise; this isolates them.

Usage: ``python -m bench.edge_layers [--requests 20000] [--rounds 5] [--code-root PATH]
[--no-rate-limit]``. ``--code-root`` measures another checkout's edge (e.g. one made with
``git worktree add ../before <commit>``) in a child interpreter that imports its `server`.
Prints one line: the layers, the bare answer's cost, the cost with the edge and the difference.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

PATH = "/api/v1/health"
CLIENTS = 10_000


async def _bare(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """What connexion would do for the health check, minus its work: name the operation in the
    routing extension (read by the access log) and answer a small JSON body."""
    scope.setdefault("extensions", {}).setdefault("connexion_routing", {})["operation_id"] = "getHealth"
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", b"15")],
        }
    )
    await send({"type": "http.response.body", "body": b'{"status":"ok"}'})


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(_message: dict[str, Any]) -> None:
    return None


def _scope(index: int) -> dict[str, Any]:
    n = index % CLIENTS
    client = f"10.{n // 2500}.{n // 250 % 10}.{n % 250 + 1}".encode()
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": PATH,
        "raw_path": PATH.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1"), (b"user-agent", b"wrk"), (b"x-forwarded-for", client)],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "extensions": {},
    }


async def _microseconds(app: Any, requests: int) -> float:
    started = time.perf_counter()
    for index in range(requests):
        await app(_scope(index), _receive, _send)
    return (time.perf_counter() - started) / requests * 1e6


def measure(requests: int, rounds: int, rate_limit: bool) -> str:
    """Build the app of the `server` package on sys.path, wrap its edge layers around `_bare`,
    and time both alternately for `rounds` rounds of `requests` requests; the report line."""
    with tempfile.TemporaryDirectory(prefix="charter-edge-layers-") as scratch:
        return _measure(scratch, requests, rounds, rate_limit)


def _measure(scratch: str, requests: int, rounds: int, rate_limit: bool) -> str:
    os.environ.update(
        ENV="test",
        DATABASE_URL=f"sqlite:///{scratch}/bench.db",
        VAR_DIR=scratch,
        JWT_SECRET=secrets.token_urlsafe(48),
        LOG_LEVEL="WARNING",
        LOG_FORMAT="json",
        TRUSTED_PROXIES="127.0.0.1",
        RATE_LIMIT_ENABLED="true" if rate_limit else "false",
    )
    from server.app import create_app

    app = create_app()
    gc.collect()
    gc.freeze()  # as a serving process does (server.app.prepare_for_serving)
    layers = [
        layer
        for layer in app.middleware.middlewares
        if isinstance(layer, partial) and not layer.func.__module__.startswith("connexion")
    ]
    edge: Any = _bare
    for layer in reversed(layers):
        edge = layer(edge)

    async def run() -> tuple[float, float]:
        bare, wrapped = [], []
        for _ in range(rounds):
            for results, target in ((bare, _bare), (wrapped, edge)):
                await _microseconds(target, 500)  # warm-up
                results.append(await _microseconds(target, requests))
        return statistics.median(bare), statistics.median(wrapped)

    bare, wrapped = asyncio.run(run())
    app.app.extensions["charter"]["engine"].dispose()
    names = ", ".join(layer.func.__name__ for layer in layers)
    return (
        f"{len(layers)} layers ({names}); rate limit {'on' if rate_limit else 'off'}: "
        f"bare answer {bare:.1f} µs, with the edge {wrapped:.1f} µs, the edge costs {wrapped - bare:.1f} µs per request"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--code-root", type=Path, help="measure this checkout's edge instead of this one's")
    parser.add_argument("--no-rate-limit", action="store_true", help="RATE_LIMIT_ENABLED=false")
    args = parser.parse_args()
    if args.code_root is not None:
        # A child interpreter whose `server` is the other checkout's: this file runs as a script
        # (sys.path[0] is bench/, which holds no `server`), the checkout comes first after it.
        command = [sys.executable, __file__, "--requests", str(args.requests), "--rounds", str(args.rounds)]
        if args.no_rate_limit:
            command.append("--no-rate-limit")
        env = {**os.environ, "PYTHONPATH": str(args.code_root.resolve())}
        return subprocess.run(command, env=env, cwd=args.code_root, check=False).returncode
    print(measure(args.requests, args.rounds, rate_limit=not args.no_rate_limit))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
