"""`charter serve --workers 2` (issue 18): each process counts its requests in memory and flushes
them every ANALYTICS_FLUSH_SECONDS and when it stops; the processes' counts add up in the
database exactly (SQLite, or PostgreSQL when DATABASE_URL names it)."""

from __future__ import annotations

import signal
import time

import httpx
from sqlalchemy import text

from persistence.database import make_engine
from tests.helpers import TEST_SECRET, migrated_database, postgres_url_in_environment
from tests.processes import charter_environment, log_tail, start_charter_serve, stop_process, wait_until_healthy

DEADLINE_SECONDS = 30.0
COUNT = text("SELECT coalesce(sum(requests), 0) FROM analytics_requests WHERE operation_id = 'getLiveness'")


def _count(url: str) -> int:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return int(connection.execute(COUNT).scalar_one())
    finally:
        engine.dispose()


def test_two_serving_processes_add_up_exactly(tmp_path):
    with migrated_database(postgres_url_in_environment(), sqlite_dir=tmp_path, prefix="charter_analytics") as url:
        environment = charter_environment(
            DATABASE_URL=url,
            JWT_SECRET=TEST_SECRET,
            ENV="test",
            VAR_DIR=str(tmp_path / "var"),
            LOG_LEVEL="WARNING",
            ANALYTICS_FLUSH_SECONDS="0.5",
            RATE_LIMIT_PROBES_PER_MINUTE="100000",
        )
        base_url, server, log_path = start_charter_serve(environment, workdir=tmp_path, arguments=("--workers", "2"))
        try:
            wait_until_healthy(base_url, server, log_path, timeout=90.0)  # two processes start on a busy machine
            for _ in range(60):  # a connection each, so both processes serve some
                assert httpx.get(f"{base_url}/api/v1/health/live", timeout=5).status_code == 200
            deadline, counted = time.monotonic() + DEADLINE_SECONDS, 0
            while time.monotonic() < deadline and counted < 60:
                counted = _count(url)
                time.sleep(0.2)
            assert counted == 60, log_tail(log_path)  # the periodic flushes
            for _ in range(5):
                assert httpx.get(f"{base_url}/api/v1/health/live", timeout=5).status_code == 200
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=DEADLINE_SECONDS)
            assert _count(url) == 65, log_tail(log_path)  # the last flushes, when the processes stopped
        finally:
            stop_process(server)
