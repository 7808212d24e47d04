"""The fault suite (`make chaos`; issue 18, "Resilience"): every test here is marked `chaos`.

The quick ones (seconds each) also run in the normal `pytest` run; the slower ones are marked
`chaos_slow` as well and run only with `make chaos` (``CHARTER_CHAOS=all``), which the
`chaos_slow` marker's skip below reads.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos.postgres_cluster import PostgresCluster, postgres_bin

HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    run_slow = os.environ.get("CHARTER_CHAOS") == "all"
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.chaos)
            if item.get_closest_marker("chaos_slow") and not run_slow:
                item.add_marker(pytest.mark.skip(reason="slow fault test: `make chaos` runs it (CHARTER_CHAOS=all)"))


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """A PostgreSQL cluster of the suite's own (never the shared one on 5432), started; removed at
    the end of the session."""
    if postgres_bin() is None:
        pytest.skip("PostgreSQL's initdb is not installed under /usr/lib/postgresql")
    cluster = PostgresCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def running_postgres(postgres_cluster: PostgresCluster) -> Iterator[PostgresCluster]:
    """The suite's cluster, running when the test starts and when it ends (a test may stop it)."""
    yield postgres_cluster
    if not (postgres_cluster.data / "postmaster.pid").exists():
        postgres_cluster.start()


@pytest.fixture
def own_redis(tmp_path: Path):
    """A redis-server of the test's own on a free port (never the shared one on 6379)."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    from tests.server.redis_server import RedisServer

    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()
