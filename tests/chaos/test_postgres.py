"""PostgreSQL going away and coming back (issue 18, "Resilience"), on the suite's own cluster
(`tests.chaos.postgres_cluster`: never the shared server on 127.0.0.1:5432).

Proved: a read on the autocommit (read-only) session whose pooled connection died with a
restart is retried once, on a fresh connection, and answers; a statement of a transactional
session (a write) is never retried: it raises, and the request answers 503 with Retry-After;
while the database is down the readiness probe answers 503 naming it, with Retry-After; and the
app served over real HTTP with writers creating tasks while PostgreSQL restarts answers only 201
or 503 (never a 500), every 503 with Retry-After, and every acknowledged (201) task is there
afterwards — with no restart of the app.
"""

from __future__ import annotations

import threading
import time
import uuid

import httpx
import pytest
from sqlalchemy import exc, func, select, text

from persistence.database import make_engine, make_session_factory
from persistence.tasks.models import Task
from server.app import create_app
from tests.chaos.faults import wait_until
from tests.chaos.postgres_cluster import PostgresCluster
from tests.helpers import PASSWORD, make_settings, migrate, registration, unique_email
from tests.served import Served, serve

WRITERS = 4
OUTAGE_SECONDS = 1.5


@pytest.fixture
def database(running_postgres: PostgresCluster) -> str:
    """A new migrated database in the suite's cluster (which the session's end removes whole)."""
    url = running_postgres.create_database(f"charter_chaos_{uuid.uuid4().hex[:8]}")
    migrate(url)
    return url


def test_a_read_is_retried_once_after_a_restart_and_a_write_never(running_postgres, database):
    engine = make_engine(database, pool_size=2, max_overflow=0)
    reads, writes = make_session_factory(engine, autocommit=True), make_session_factory(engine)
    try:
        with reads() as session:
            assert session.execute(select(text("1"))).scalar() == 1
        with writes() as session:
            session.execute(select(text("1")))
            session.commit()

        running_postgres.stop()
        running_postgres.start()
        with reads() as session:  # the pooled connection is dead: retried once, on a new one
            assert session.execute(select(func.count()).select_from(Task)).scalar() == 0

        running_postgres.stop()
        running_postgres.start()
        with writes() as session, pytest.raises(exc.OperationalError) as raised:  # not retried
            session.execute(text("CREATE TEMPORARY TABLE written (id int)"))
        assert raised.value.connection_invalidated
        with writes() as session:  # the pool was refreshed: the next one works
            session.execute(text("CREATE TEMPORARY TABLE written (id int)"))

        running_postgres.stop()
        with reads() as session, pytest.raises(exc.OperationalError):  # gone: the retry fails too
            session.execute(select(text("1")))
    finally:
        engine.dispose()


def test_writers_through_a_postgres_restart_lose_no_acknowledged_write_and_see_no_500(
    running_postgres, database, tmp_path
):
    app = create_app(make_settings(database, tmp_path, db_pool_size=WRITERS + 2, db_connect_timeout_seconds=2))
    try:
        with serve(app) as url:
            served = Served(url, app, "postgresql")
            with served.client() as http:
                email = unique_email()
                registered = http.post("/api/v1/auth/register", json=registration(email))
                assert registered.status_code == 201
                user_id = registered.json()["id"]
                login = http.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
                token = login.json()["access_token"]
            headers = {"Authorization": f"Bearer {token}"}
            path = f"/api/v1/users/{user_id}/tasks"
            acknowledged: list[str] = []
            answers: list[tuple[int, str | None, str]] = []
            lock = threading.Lock()
            stop = threading.Event()

            def write(number: int) -> None:
                with served.client(timeout=15) as client:
                    sent = 0
                    while not stop.is_set() and sent < 10_000:
                        sent += 1
                        title = f"writer {number} task {sent} {uuid.uuid4().hex[:6]}"
                        try:
                            response = client.post(path, json={"title": title}, headers=headers)
                        except httpx.HTTPError as error:  # a transport failure is not an answer
                            with lock:
                                answers.append((0, None, type(error).__name__))
                            continue
                        with lock:
                            answers.append((response.status_code, response.headers.get("retry-after"), title))
                            if response.status_code == 201:
                                acknowledged.append(response.json()["id"])
                        if response.status_code == 503:
                            time.sleep(0.05)

            threads = [threading.Thread(target=write, args=(number,), daemon=True) for number in range(WRITERS)]
            for thread in threads:
                thread.start()
            try:
                wait_until(lambda: len(acknowledged) >= 20, "the writers' first tasks", timeout=20)
                running_postgres.stop()
                with served.client() as probe:
                    ready = probe.get("/api/v1/health/ready")
                    assert ready.status_code == 503
                    assert ready.headers["retry-after"] == "5"
                    assert ready.json()["checks"]["database"] == "unavailable"
                    reading = probe.get(path, headers=headers)  # a read while it is down: 503 too
                    assert reading.status_code == 503 and reading.headers["retry-after"] == "5"
                    assert reading.headers["content-type"] == "application/problem+json"
                time.sleep(OUTAGE_SECONDS)
                running_postgres.start()
                before = len(acknowledged)
                wait_until(lambda: len(acknowledged) >= before + 20, "writes after the restart", timeout=30)
            finally:
                stop.set()
                for thread in threads:
                    thread.join(timeout=30)

            statuses = {status for status, _, _ in answers}
            assert statuses <= {201, 503}, sorted(statuses)  # never a 500, never a dropped connection
            assert 503 in statuses
            assert all(retry_after == "5" for status, retry_after, _ in answers if status == 503)

            with served.client() as client:
                assert client.get("/api/v1/health/ready").json()["status"] == "ready"
                listed = client.get(path, headers=headers, params={"limit": 1}).status_code
                assert listed == 200  # reads work again without a restart of the app
        with served.state.session_factory() as session:
            stored = {
                str(task_id) for task_id in session.scalars(select(Task.id).where(Task.owner_id == uuid.UUID(user_id)))
            }
        assert set(acknowledged) <= stored  # every acknowledged write survived
        assert len(acknowledged) == len(set(acknowledged))
    finally:
        app.app.extensions["charter"].engine.dispose()


def test_over_http_a_get_after_a_restart_is_retried_and_a_post_answers_503(running_postgres, database, tmp_path):
    app = create_app(make_settings(database, tmp_path, wsgi_threads=2, db_pool_size=2, db_max_overflow=0))
    try:
        with serve(app) as url, httpx.Client(base_url=url, timeout=15) as http:
            email = unique_email()
            user_id = http.post("/api/v1/auth/register", json=registration(email)).json()["id"]
            token = http.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD}).json()["access_token"]
            headers = {"Authorization": f"Bearer {token}"}
            path = f"/api/v1/users/{user_id}/tasks"
            assert http.post(path, json={"title": "before"}, headers=headers).status_code == 201
            assert http.get(path, headers=headers).status_code == 200

            running_postgres.stop()
            running_postgres.start()
            listed = http.get(path, headers=headers)  # its pooled connection died: read again, once
            assert listed.status_code == 200, listed.text
            assert [task["title"] for task in listed.json()["items"]] == ["before"]

            running_postgres.stop()
            running_postgres.start()
            written = http.post(path, json={"title": "lost connection"}, headers=headers)
            assert written.status_code == 503  # never retried silently: the client decides
            assert written.headers["retry-after"] == "5"
            assert written.json()["type"] == "/problems/service-unavailable"
            again = http.post(path, json={"title": "retried by the client"}, headers=headers)
            assert again.status_code == 201
            titles = [task["title"] for task in http.get(path, headers=headers).json()["items"]]
            assert sorted(titles) == ["before", "retried by the client"]
    finally:
        app.app.extensions["charter"].engine.dispose()
