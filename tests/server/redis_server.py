"""A private, throw-away redis-server (and other subprocesses) for the rate-limit tests.

Everything listens on 127.0.0.1 only, on a free port; every wait is bounded, and every
process is terminated (then killed) when the test ends, whatever happened.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis

REDIS_SERVER = shutil.which("redis-server")
START_TIMEOUT_SECONDS = 10.0


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


class RedisServer:
    """A redis-server on 127.0.0.1:<port> with no persistence, which can be stopped and
    started again on the same port.

    Args:
        workdir: where redis-server runs and writes its log.
    """

    def __init__(self, workdir: Path) -> None:
        if REDIS_SERVER is None:
            raise RuntimeError("redis-server is not installed")
        self.workdir = workdir
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self.log_path = workdir / "redis.log"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start redis-server and wait (bounded) until it answers PING."""
        assert self.process is None or self.process.poll() is not None, "already running"
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    str(REDIS_SERVER),
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--daemonize",
                    "no",
                    "--dir",
                    str(self.workdir),
                ],
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=0.5, socket_connect_timeout=0.5)
        try:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"redis-server exited at start:\n{log_tail(self.log_path)}")
                try:
                    if client.ping():
                        return
                except redis.RedisError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not answer in time:\n{log_tail(self.log_path)}")
                time.sleep(0.05)
        finally:
            client.close()

    def stop(self) -> None:
        """Stop redis-server (SIGTERM, then SIGKILL) and wait until the port is free."""
        stop_process(self.process)
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                probe.settimeout(0.2)
                if probe.connect_ex(("127.0.0.1", self.port)) != 0:
                    return
            time.sleep(0.05)
