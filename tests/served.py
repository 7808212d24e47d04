"""The app behind a real uvicorn, in a thread of the test process, and clients that hit it at
the same moment: for the tests that need real HTTP and real concurrency (races, the connection
pool, bodies a client sends whole) while still reaching into the app (its engine, its rows).

Everything listens on 127.0.0.1 on a free port; every wait is bounded.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psycopg
import pytest
import uvicorn
from sqlalchemy.engine import make_url

from tests.helpers import migrated_database, postgres_url_in_environment

T = TypeVar("T")

LOCAL_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
"""The PostgreSQL every development and CI machine runs (the developers' guide: trust auth, user postgres)."""


@contextlib.contextmanager
def serve(app: Any) -> Iterator[str]:
    """Serve the ASGI `app` with uvicorn on a free loopback port (bound before the server starts,
    so nothing can take it) in a daemon thread; yields its base URL, stops it on exit."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="served-app", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the served app did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


def postgres_server_url() -> str | None:
    """A PostgreSQL server to create test databases on: DATABASE_URL's when it names one, else
    the local one on 127.0.0.1:5432 if it answers within 2 s; None when there is none."""
    url = postgres_url_in_environment()
    if url is not None:
        return url
    parsed = make_url(LOCAL_POSTGRES)
    try:
        with psycopg.connect(
            host=parsed.host, port=parsed.port, user=parsed.username, dbname=parsed.database, connect_timeout=2
        ):
            return LOCAL_POSTGRES
    except psycopg.Error:
        return None


@contextlib.contextmanager
def migrated_database_of_kind(kind: str, workdir: Path) -> Iterator[str]:
    """A new, migrated database of `kind` (``sqlite`` or ``postgresql``); yields its URL.

    PostgreSQL's is created on `postgres_server_url()` and dropped afterwards; the test is
    skipped, saying so, when no server answers."""
    server_url = None
    if kind == "postgresql":
        server_url = postgres_server_url()
        if server_url is None:
            pytest.skip("no PostgreSQL answers on DATABASE_URL or 127.0.0.1:5432")
    with migrated_database(server_url, sqlite_dir=workdir, prefix="charter_served") as url:
        yield url


@dataclass(frozen=True)
class Served:
    """An app served over HTTP: its base URL, the connexion app (for its engine and session
    factory) and which database it runs on."""

    url: str
    app: Any
    database: str

    @property
    def state(self) -> dict[str, Any]:
        """The app-wide objects `create_app` built (engine, session factories, settings…)."""
        return self.app.app.extensions["charter"]

    def client(self, **kwargs: Any) -> httpx.Client:
        """An HTTP client for the served app (30 s timeout unless `kwargs` say otherwise).

        Plain HTTP on loopback: no certificate is ever checked, so the client skips loading the
        CA bundle (``verify=False``), which costs about 50 ms per client — most of a race test
        that opens one per racing thread."""
        return httpx.Client(base_url=self.url, **{"timeout": 30, "verify": False, **kwargs})


def at_once(count: int, request: Callable[[httpx.Client, int], T], *, served: Served) -> list[T]:
    """Run ``request(client, i)`` for i in range(count) from `count` threads that start together.

    Each thread opens its own connection first (a health probe), then all wait at one barrier,
    so the requests reach the server at the same moment, not one connection set-up apart.
    Returns the results in order of i; re-raises the first exception a thread raised.
    """
    barrier = threading.Barrier(count, timeout=30)

    def run(i: int) -> T:
        with served.client() as http:
            http.get("/api/v1/health/live")
            barrier.wait()
            return request(http, i)

    with ThreadPoolExecutor(max_workers=count, thread_name_prefix="racer") as pool:
        return list(pool.map(run, range(count), timeout=120))
