"""What every benchmark needs: a free loopback port, a uvicorn worker serving a factory from
`bench.apps`, and wrk driving it from a second process."""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    """A TCP port nothing listens on, on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve(
    factory: str, port: int, env: dict[str, str], *, ready_path: str = "/api/v1/health", cwd: Path = ROOT
) -> subprocess.Popen:
    """Start uvicorn (one worker, no access log) serving `bench.apps:<factory>` on `port` from
    the checkout at `cwd` (default: this one) and wait until `ready_path` answers. Raises
    SystemExit when it does not within 30 s."""
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
    server = subprocess.Popen(command, env=env, cwd=cwd)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"{factory} exited with status {server.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{ready_path}", timeout=1):
                return server
        except OSError:
            time.sleep(0.2)
    server.kill()
    raise SystemExit(f"{factory} did not start")


def server_environment(database_url: str) -> dict[str, str]:
    """The environment of a benchmarked server: this process's, plus the database, a throw-away
    JWT secret, warnings-only JSON logs and no rate limits (one client would only measure 429s;
    `bench.edge_cost` measures the limits)."""
    return {
        **os.environ,
        "ENV": "test",
        "DATABASE_URL": database_url,
        "JWT_SECRET": secrets.token_urlsafe(48),
        "LOG_LEVEL": "WARNING",
        "LOG_FORMAT": "json",
        "RATE_LIMIT_ENABLED": "false",
    }


@contextlib.contextmanager
def serving(
    factory: str, env: dict[str, str], *, ready_path: str = "/api/v1/health", cwd: Path = ROOT
) -> Iterator[tuple[int, subprocess.Popen]]:
    """`serve` on a free port; yields (the port, the uvicorn process) and stops it on exit."""
    port = free_port()
    server = serve(factory, port, env, ready_path=ready_path, cwd=cwd)
    try:
        yield port, server
    finally:
        server.terminate()
        server.wait(timeout=10)


def save_results(name: str, record: dict, section: str) -> Path:
    """Keep a benchmark's run: `record` (JSON-serialisable: its date, arguments and figures) as
    bench/results/<name>.json, and the Markdown `section` (its heading, the command, the table)
    appended to bench/RESULTS.md. Returns the JSON file's path."""
    out = ROOT / "bench" / "results" / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2, default=str))
    summary = ROOT / "bench" / "RESULTS.md"
    previous = summary.read_text() if summary.exists() else "# Benchmark results\n"
    summary.write_text(previous.rstrip("\n") + "\n\n" + section.rstrip("\n") + "\n")
    return out


def _seconds(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[unit]


def wrk(
    port: int,
    path: str,
    *,
    seconds: int,
    connections: int,
    headers: Sequence[str] = (),
    script: Path | None = None,
    threads: int = 1,
    env: dict[str, str] | None = None,
) -> dict[str, float]:
    """Drive GET `path` with `wrk -t1` (optionally a Lua `script`); requests/second and
    p50/p99 latency in ms.

    Raises SystemExit when any answer is not 2xx/3xx: such a figure would measure errors, or
    when wrk is not installed (`make bench` installs it: scripts/install_wrk.sh).
    """
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: run `make bench` (it installs wrk) or `apt-get install wrk`")
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for header in headers:
        command += ["-H", header]
    if script is not None:
        command += ["-s", str(script)]
    output = subprocess.run(
        [*command, f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True, check=True, env=env
    ).stdout
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    if non_2xx:
        raise SystemExit(f"{non_2xx.group(1)} answers to {path} were not 2xx: the measurement is void")
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),  # type: ignore[union-attr]
        "p50_ms": _seconds(re.search(r"^\s+50%\s+(\S+)", output, re.MULTILINE).group(1)) * 1000,  # type: ignore[union-attr]
        "p99_ms": _seconds(re.search(r"^\s+99%\s+(\S+)", output, re.MULTILINE).group(1)) * 1000,  # type: ignore[union-attr]
    }
