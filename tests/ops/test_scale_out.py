"""The scale-out shape (issue 18; ARCHITECTURE, "Running in more than one process"): two API
processes and two workers on one PostgreSQL and one Redis (a private redis-server) pass the
README's flow with each step sent to either API process, and a reminder set through one of them
fires exactly once although both workers could take it (and both run the backstop sweep).
Every wait has a deadline; every process is stopped when the test ends."""

from __future__ import annotations

import secrets
import shutil
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.helpers import ROOT, unique_email
from tests.processes import (
    CHARTER,
    charter_environment,
    log_tail,
    start_charter_serve,
    stop_process,
    wait_until_healthy,
)
from tests.served import migrated_database_of_kind

PASSWORD = "correct horse battery staple"
FIRE_DEADLINE_SECONDS = 20.0
needs_redis = pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")


def _start_worker(environment: dict[str, str], workdir: Path, index: int) -> tuple[subprocess.Popen, Path]:
    log_path = workdir / f"worker-{index}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(CHARTER), "worker", "--threads", "2"],
            cwd=workdir,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    return process, log_path


def _wait_for(condition, what: str, timeout: float, logs: list[Path]):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"{what} did not happen within {timeout:.0f}s:\n" + "\n".join(log_tail(path) for path in logs))


@needs_redis
def test_two_api_processes_and_two_workers_share_one_postgresql_and_redis(tmp_path):
    from tests.server.redis_server import RedisServer

    if not CHARTER.exists():
        pytest.skip("the charter console script is not installed")
    redis_server = RedisServer(tmp_path)
    redis_server.start()
    processes: list[subprocess.Popen] = []
    logs: list[Path] = []
    try:
        with migrated_database_of_kind("postgresql", tmp_path) as url:
            environment = charter_environment(
                DATABASE_URL=url,
                REDIS_URL=redis_server.url,
                JOB_QUEUE="redis",
                JWT_SECRET=secrets.token_urlsafe(
                    48
                ),  # one secret for every process (ENCRYPTION_KEYS: one file in VAR_DIR)
                VAR_DIR=str(tmp_path / "var"),
                LOG_LEVEL="INFO",
                PYTHONPATH=str(ROOT),
            )
            apis = []
            for _ in range(2):
                base_url, process, log_path = start_charter_serve(environment, workdir=tmp_path)
                processes.append(process)
                logs.append(log_path)
                wait_until_healthy(base_url, process, log_path, timeout=40.0)
                apis.append(httpx.Client(base_url=base_url, timeout=30))
            for index in range(2):
                process, log_path = _start_worker(environment, tmp_path, index)
                processes.append(process)
                logs.append(log_path)
            one, two = apis

            # the README's flow, each step on either process
            email = unique_email("scale")
            registered = one.post(
                "/api/v1/auth/register", json={"email": email, "password": PASSWORD, "display_name": "Ada"}
            )
            assert registered.status_code == 201, registered.text
            login = two.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
            assert login.status_code == 200, login.text
            auth = {"Authorization": f"Bearer {login.json()['access_token']}"}
            me = one.get("/api/v1/auth/me", headers=auth).json()
            due = (datetime.now(UTC) + timedelta(days=1)).isoformat()
            task = two.post(
                f"/api/v1/users/{me['id']}/tasks", headers=auth, json={"title": "Write the report", "due_at": due}
            )
            assert task.status_code == 201, task.text
            listed = one.get(f"/api/v1/users/{me['id']}/tasks", headers=auth, params={"limit": 10})
            assert [item["id"] for item in listed.json()["items"]] == [task.json()["id"]]
            completed = two.patch(f"/api/v1/users/{me['id']}/tasks/{task.json()['id']}/complete", headers=auth)
            assert completed.status_code == 200 and completed.json()["completed"] is True

            # a reminder set through one process fires once, whichever worker takes it
            remind_at = datetime.now(UTC) + timedelta(seconds=3)
            other = one.post(f"/api/v1/users/{me['id']}/tasks", headers=auth, json={"title": "Feed the cat"})
            reminder = two.post(
                f"/api/v1/users/{me['id']}/tasks/{other.json()['id']}/reminders",
                headers=auth,
                json={"remind_at": remind_at.isoformat(), "channels": ["in_app"]},
            )
            assert reminder.status_code == 201, reminder.text

            def notified():
                page = one.get("/api/v1/users/me/notifications", headers=auth).json()
                return page["items"] or None

            _wait_for(notified, "the reminder's notification", FIRE_DEADLINE_SECONDS, logs)
            time.sleep(3)  # both workers' sweeps run meanwhile: a second firing would show now
            items = two.get("/api/v1/users/me/notifications", headers=auth).json()["items"]
            assert [item["title"] for item in items] == ["Reminder: Feed the cat"]
            fired_jobs = [
                job
                for job in one.get("/api/v1/jobs", headers=auth, params={"limit": 50}).json()["items"]
                if job["kind"] == "reminders.fire"
            ]
            assert [job["status"] for job in fired_jobs] == ["succeeded"]

            # logging out on one process ends the session on the other at once
            assert one.post("/api/v1/auth/logout", headers=auth).status_code == 204
            assert two.get("/api/v1/auth/me", headers=auth).status_code == 401
            for client in apis:
                client.close()
    finally:
        for process in processes:
            stop_process(process, timeout=10.0)
        redis_server.stop()
