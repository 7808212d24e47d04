"""A real server for the contract's consumers (a browser, a generated SDK): the app served by
uvicorn on a free loopback port, in a thread, on the test session's database."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import uvicorn

from server.app import create_app
from tests.conftest import PASSWORD, make_settings


@dataclass(frozen=True)
class LiveServer:
    """Where the server answers, e.g. ``http://127.0.0.1:41234``."""

    url: str


@pytest.fixture(scope="package")
def live_server(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The app behind a real uvicorn on 127.0.0.1 (a free port, bound before the server starts
    so nothing can take it), rate limits far above the tests' pace; stopped afterwards."""
    app = create_app(make_settings(database_url, tmp_path_factory.mktemp("live")))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="live-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the live server did not start")
        time.sleep(0.05)
    try:
        yield LiveServer(url=f"http://127.0.0.1:{sock.getsockname()[1]}")
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()
        app.app.extensions["charter"]["engine"].dispose()


@dataclass(frozen=True)
class LiveAccount:
    """An account registered and logged in through the live server's API."""

    id: str
    email: str
    access_token: str


def register_and_login_live(server: LiveServer, *, prefix: str) -> LiveAccount:
    """Register a new account and log it in over HTTP, as the README's flow does."""
    email = f"{prefix}-{time.time_ns()}@example.com"
    with httpx.Client(base_url=server.url, timeout=10) as http:
        registered = http.post(
            "/api/v1/auth/register", json={"email": email, "password": PASSWORD, "display_name": "Live Tester"}
        )
        assert registered.status_code == 201, registered.text
        login = http.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
        assert login.status_code == 200, login.text
    return LiveAccount(id=registered.json()["id"], email=email, access_token=login.json()["access_token"])
