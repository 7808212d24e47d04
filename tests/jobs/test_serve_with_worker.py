"""`make run` is `charter serve --with-worker`: the server starts one `charter worker` child that
runs jobs (the maintenance job it queues is done), and the child does not outlive the server
(issue 14: a newcomer's `make run` works reminders and crawls, and leaves no process behind)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from sqlalchemy import text

from persistence.database import make_engine
from server.cli import migrate
from tests.helpers import TEST_SECRET
from tests.processes import charter_environment, log_tail, start_charter_serve, stop_process, wait_until_healthy

DEADLINE_SECONDS = 30.0
DONE = text("SELECT count(*) FROM jobs WHERE kind = 'maintenance.purge_expired' AND status = 'succeeded'")


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()] if path.exists() else []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "\nState:\tZ" in status.read_text())


def test_serve_with_worker_runs_jobs_and_takes_its_worker_down(tmp_path):
    url = f"sqlite:///{tmp_path / 'charter.db'}"
    migrate(url)
    environment = charter_environment(
        DATABASE_URL=url,
        JWT_SECRET=TEST_SECRET,
        ENV="test",
        VAR_DIR=str(tmp_path / "var"),
        LOG_LEVEL="INFO",
        JOB_SWEEP_INTERVAL_SECONDS="0.5",
    )
    base_url, server, log_path = start_charter_serve(environment, workdir=tmp_path, arguments=("--with-worker",))
    workers: list[int] = []
    try:
        wait_until_healthy(base_url, server, log_path)
        workers += [pid for pid in _children(server.pid) if b"worker" in Path(f"/proc/{pid}/cmdline").read_bytes()]
        assert len(workers) == 1, log_tail(log_path)
        engine = make_engine(url)
        try:
            deadline, done = time.monotonic() + DEADLINE_SECONDS, 0
            while time.monotonic() < deadline and not done:
                with engine.connect() as connection:
                    done = connection.execute(DONE).scalar_one()
                time.sleep(0.2)
        finally:
            engine.dispose()
        assert done == 1, log_tail(log_path)
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=DEADLINE_SECONDS)
        deadline = time.monotonic() + DEADLINE_SECONDS
        while time.monotonic() < deadline and _alive(workers[0]):
            time.sleep(0.1)
        assert not _alive(workers[0]), log_tail(log_path)
    finally:
        stop_process(server)
        for pid in workers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
