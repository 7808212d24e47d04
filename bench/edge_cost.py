"""What the edge middleware stack costs: requests/second and latency of `GET /api/v1/health`
with and without it, one uvicorn worker each, measured with wrk in one run.

Usage: ``python -m bench.edge_cost [--seconds 10] [--connections 32] [--rounds 2]``
(``make bench``). Rounds alternate the two apps so drift on the machine hits both alike.
Writes a Markdown table to standard output and to bench/results/edge-cost-<date>.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PATH = "/api/v1/health"
APPS = {"with edge middleware": "with_edge", "without edge middleware": "without_edge"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _serve(factory: str, port: int, env: dict[str, str]) -> subprocess.Popen:
    command = [
        str(BIN / "uvicorn"),
        "--factory",
        f"bench.apps:{factory}",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    server = subprocess.Popen(command, env=env, cwd=ROOT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{PATH}", timeout=1):
                return server
        except OSError:
            time.sleep(0.2)
    server.kill()
    raise SystemExit(f"{factory} did not start")


def _seconds(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value).groups()
    return float(number) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[unit]


def _wrk(port: int, seconds: int, connections: int) -> dict[str, float]:
    output = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", f"http://127.0.0.1:{port}{PATH}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    p50 = _seconds(re.search(r"^\s+50%\s+(\S+)", output, re.MULTILINE).group(1))
    p99 = _seconds(re.search(r"^\s+99%\s+(\S+)", output, re.MULTILINE).group(1))
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    if non_2xx:
        raise SystemExit(f"{non_2xx.group(1)} answers were not 2xx: the measurement is void")
    return {"rps": rps, "p50_ms": p50 * 1000, "p99_ms": p99 * 1000}


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
            # Limits on, but out of reach: the cost of counting is measured, not of refusing.
            "RATE_LIMIT_PROBES_PER_MINUTE": "1000000",
            "RATE_LIMIT_PER_MINUTE": "1000000",
            "RATE_LIMIT_PER_HOUR": "10000000",
        }
        subprocess.run([str(BIN / "charter"), "migrate"], env=env, cwd=ROOT, check=True)
        results: dict[str, list[dict[str, float]]] = {name: [] for name in APPS}
        for _ in range(args.rounds):
            for name, factory in APPS.items():
                port = _free_port()
                server = _serve(factory, port, env)
                try:
                    _wrk(port, 2, args.connections)  # warm-up
                    results[name].append(_wrk(port, args.seconds, args.connections))
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
