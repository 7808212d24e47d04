"""What the edge middleware stack costs: requests/second and latency of `GET /api/v1/health`
with and without it, one uvicorn worker each, measured with wrk in one run. The rate limits
run at their defaults, with the load spread over 1,000 client addresses.

Usage: ``python -m bench.edge_cost [--seconds 10] [--connections 32] [--rounds 2]``
(``make bench``). Rounds alternate the two apps so drift on the machine hits both alike.
Writes a Markdown table to standard output and to bench/results/edge-cost-<date>.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.harness import free_port, serve, wrk

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PATH = "/api/v1/health"
SCRIPT = Path(__file__).with_name("many_clients.lua")
APPS = {"with edge middleware": "with_edge", "without edge middleware": "without_edge"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk)")

    with tempfile.TemporaryDirectory(prefix="charter-bench-") as tmp:
        env = {
            **os.environ,
            "ENV": "test",
            "DATABASE_URL": f"sqlite:///{tmp}/bench.db",
            "VAR_DIR": tmp,
            "JWT_SECRET": secrets.token_urlsafe(48),
            "LOG_LEVEL": "WARNING",
            "LOG_FORMAT": "json",
            # The default limits stay on; wrk spreads the load over 1,000 client addresses
            # (bench/many_clients.lua, X-Forwarded-For from a trusted proxy) so no client is refused
            # and each counter holds what a real client's would.
            "TRUSTED_PROXIES": "127.0.0.1",
        }
        subprocess.run([str(BIN / "charter"), "migrate"], env=env, cwd=ROOT, check=True)
        results: dict[str, list[dict[str, float]]] = {name: [] for name in APPS}
        for _ in range(args.rounds):
            for name, factory in APPS.items():
                port = free_port()
                server = serve(factory, port, env)
                try:
                    wrk(port, PATH, seconds=2, connections=args.connections, script=SCRIPT)  # warm-up
                    results[name].append(
                        wrk(port, PATH, seconds=args.seconds, connections=args.connections, script=SCRIPT)
                    )
                finally:
                    server.terminate()
                    server.wait(timeout=10)

    rows = {
        name: {key: statistics.median(run[key] for run in runs) for key in runs[0]} for name, runs in results.items()
    }
    with_edge, without_edge = rows["with edge middleware"], rows["without edge middleware"]
    table = [
        f"`GET {PATH}`, one uvicorn worker, `wrk -t1 -c{args.connections} -d{args.seconds}s`, "
        f"median of {args.rounds} alternating rounds, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, "
        f"{os.cpu_count()} cores",
        "",
        "| app | requests/s | p50 ms | p99 ms |",
        "|---|---:|---:|---:|",
        *(f"| {name} | {row['rps']:.0f} | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} |" for name, row in rows.items()),
        "",
        f"The edge stack costs {100 * (1 - with_edge['rps'] / without_edge['rps']):.1f}% of throughput "
        f"({1e6 / with_edge['rps'] - 1e6 / without_edge['rps']:.0f} µs of server time per request).",
    ]
    text = "\n".join(table) + "\n"
    print(text)
    out = ROOT / "bench" / "results" / f"edge-cost-{dt.date.today()}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
