"""The connection pool fits the threads that use it (issue 11): by default DB_POOL_SIZE follows
WSGI_THREADS, so a steady load opens no connection; a configuration whose threads exceed
pool + overflow is refused at start-up; the pool's state is in /metrics."""

from __future__ import annotations

import threading

import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError
from sqlalchemy import event

from server.cli import main
from server.settings import Settings
from tests.helpers import register_and_login
from tests.served import Served, at_once

CLIENTS = 32
"""As `make bench` loads the hot path (wrk -c32): more clients than handler threads."""


def _load(served: Served, paths: list[str], headers: dict[str, str], *, rounds: int) -> None:
    def run(http, _i):
        for _ in range(rounds):
            for path in paths:
                response = http.get(path, headers=headers)
                assert response.status_code == 200, response.text

    at_once(CLIENTS, run, served=served)


def test_a_steady_load_opens_no_connection(served: Served):
    settings = served.state.settings
    assert settings.db_pool_size == settings.wsgi_threads  # the default follows the threads
    with served.client() as http:
        account = register_and_login(http)
    paths = ["/api/v1/auth/me", account.tasks_path]
    engine = served.state.engine
    _load(served, paths, account.headers, rounds=2)  # warm: code paths, caches, the session's last_used_at
    held = [engine.connect() for _ in range(settings.db_pool_size)]  # the pool holds as many as it may keep
    for connection in held:
        connection.close()

    opened: list[int] = []
    in_use = 0
    most_in_use = 0
    lock = threading.Lock()

    def on_connect(*_):
        opened.append(1)

    def on_checkout(*_):
        nonlocal in_use, most_in_use
        with lock:
            in_use += 1
            most_in_use = max(most_in_use, in_use)

    def on_checkin(*_):
        nonlocal in_use
        with lock:
            in_use -= 1

    event.listen(engine, "connect", on_connect)
    event.listen(engine, "checkout", on_checkout)
    event.listen(engine, "checkin", on_checkin)
    try:
        _load(served, paths, account.headers, rounds=3)
    finally:
        event.remove(engine, "connect", on_connect)
        event.remove(engine, "checkout", on_checkout)
        event.remove(engine, "checkin", on_checkin)

    assert most_in_use >= 2, "the load was not concurrent"
    assert len(opened) == 0, f"{len(opened)} connections opened under a steady load of {CLIENTS} clients"


def _samples(served: Served) -> dict[str, float]:
    with served.client() as http:
        response = http.get("/metrics")
    assert response.status_code == 200
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
        if sample.name.startswith("charter_db_pool")
    }


def test_pool_checkouts_and_overflow_are_in_the_metrics(served: Served):
    with served.client() as http:
        account = register_and_login(http)
    before = _samples(served)
    with served.client() as http:
        for _ in range(5):
            assert http.get("/api/v1/auth/me", headers=account.headers).status_code == 200
    after = _samples(served)

    settings = served.state.settings
    assert after["charter_db_pool_size"] == settings.db_pool_size
    assert after["charter_db_pool_max_overflow"] == settings.db_max_overflow
    assert after["charter_db_pool_checkouts_total"] - before["charter_db_pool_checkouts_total"] >= 5
    assert after["charter_db_pool_overflow_connections"] == 0
    assert after["charter_db_pool_connections_opened_total"] >= 1


def test_the_pool_size_follows_the_threads_unless_set():
    assert Settings(_env_file=None, wsgi_threads=24).db_pool_size == 24
    assert Settings(_env_file=None, wsgi_threads=24, db_pool_size=30).db_pool_size == 30


def test_more_threads_than_connections_is_refused():
    with pytest.raises(ValidationError, match=r"WSGI_THREADS=32 is more than DB_POOL_SIZE \+ DB_MAX_OVERFLOW = 5"):
        Settings(_env_file=None, wsgi_threads=32, db_pool_size=5, db_max_overflow=10)


def test_charter_serve_refuses_to_start_with_a_clear_message(monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)  # no .env
    monkeypatch.setenv("WSGI_THREADS", "40")
    monkeypatch.setenv("DB_POOL_SIZE", "5")
    monkeypatch.setenv("DB_MAX_OVERFLOW", "10")

    assert main(["serve", "--port", "1"]) == 2

    message = capsys.readouterr().err.strip()
    assert message.startswith("charter: configuration refused: WSGI_THREADS=40 is more than")
    assert "Traceback" not in message and len(message.splitlines()) == 1
