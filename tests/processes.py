"""Subprocesses for the tests that need a real separate process: `charter serve` (a second
process on the same database, several processes sharing Redis) and the helpers every such test
needs. Everything listens on 127.0.0.1 only, on a free port; every wait is bounded, and every
process is terminated (then killed) when its test ends, whatever happened.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from server.settings import Settings

CHARTER = Path(sys.executable).with_name("charter")
"""The `charter` console script of the environment running the tests."""


def free_port() -> int:
    """A TCP port nothing listens on right now on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def stop_process(process: subprocess.Popen | None, *, timeout: float = 5.0) -> None:
    """Terminate `process` (SIGTERM), and kill it when it does not exit within `timeout`."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)


def log_tail(path: Path, lines: int = 40) -> str:
    """The last lines of a subprocess's log file, for assertion messages."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def charter_environment(**values: str) -> dict[str, str]:
    """The environment for `charter serve`: ours, minus every inherited setting of the app,
    plus `values` (settings by their variable names)."""
    names = {name.upper() for name in Settings.model_fields} | {"PROMETHEUS_MULTIPROC_DIR"}
    environment = {key: value for key, value in os.environ.items() if key.upper() not in names}
    environment.update(values)
    return environment


def start_charter_serve(
    environment: dict[str, str], *, workdir: Path, arguments: tuple[str, ...] = ()
) -> tuple[str, subprocess.Popen, Path]:
    """Start `charter serve` (with `arguments`, e.g. ``("--with-worker",)``) on a free loopback
    port, in `workdir` (so no `.env` of the project is read), its output in
    `workdir/serve-<port>.log`. Returns (base URL, process, log path); the caller stops it
    (`stop_process`). Skips the test when the console script is missing."""
    if not CHARTER.exists():
        pytest.skip(f"the charter console script is not installed next to {sys.executable}")
    port = free_port()
    log_path = workdir / f"serve-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(CHARTER), "serve", "--host", "127.0.0.1", "--port", str(port), *arguments],
            cwd=workdir,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    return f"http://127.0.0.1:{port}", process, log_path


def wait_until_healthy(base_url: str, process: subprocess.Popen, log_path: Path, *, timeout: float = 20.0) -> None:
    """Wait until `GET /api/v1/health` answers 200; fails the test, with the log's tail, when the
    process exits first or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=base_url, timeout=1.0) as probe:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"charter serve exited with {process.returncode}:\n{log_tail(log_path)}")
            try:
                if probe.get("/api/v1/health").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
    pytest.fail(f"{base_url} did not answer /api/v1/health within {timeout}s:\n{log_tail(log_path)}")
