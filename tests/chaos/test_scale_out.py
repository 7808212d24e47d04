"""The scale-out shape (ARCHITECTURE, "Running in more than one process"; issue 18): two
`charter serve` processes and two `charter worker` processes on one PostgreSQL (the suite's own
cluster) and one Redis (the test's own server, holding the rate-limit counters and the job
queue), with a real SMTP server (aiosmtpd) on 127.0.0.1.

Proved: the README's flow works whichever process answers each step (register on one, log in
on the other, create a task on one, list and complete it on the other, log out on one and be
refused on the other), and a reminder
set through one API process fires exactly once — one `reminders.fire` job run once, one
notification, one mail — although two workers take jobs from the same queue. Slow (four
processes): `make chaos` runs it.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from aiosmtpd.controller import Controller

from persistence.database import make_engine, make_session_factory
from persistence.unit_of_work import UnitOfWork
from tests.accounts.conftest import MailBox
from tests.chaos.faults import wait_until
from tests.helpers import PASSWORD, ROOT, TEST_SECRET, migrate, registration
from tests.processes import CHARTER, charter_environment, free_port, log_tail, stop_process, wait_until_healthy

pytestmark = pytest.mark.chaos_slow
STARTED = "job_worker_started"


def start_worker(environment: dict[str, str], workdir: Path, number: int) -> tuple[subprocess.Popen, Path]:
    log_path = workdir / f"worker-{number}.log"
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


def start_api(environment: dict[str, str], workdir: Path) -> tuple[str, subprocess.Popen, Path]:
    port = free_port()
    log_path = workdir / f"serve-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(CHARTER), "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=workdir,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    return f"http://127.0.0.1:{port}", process, log_path


def test_two_apis_and_two_workers_pass_the_flow_and_fire_a_reminder_once(running_postgres, own_redis, tmp_path):
    if not CHARTER.exists():
        pytest.skip("the charter console script is not installed")
    database = running_postgres.create_database(f"charter_scale_{uuid.uuid4().hex[:8]}")
    migrate(database)
    mailbox = MailBox()
    smtp_port = free_port()
    smtp = Controller(mailbox, hostname="127.0.0.1", port=smtp_port, ready_timeout=5.0)
    smtp.start()
    environment = charter_environment(
        DATABASE_URL=database,
        REDIS_URL=own_redis.url,
        JOB_QUEUE="redis",
        JWT_SECRET=TEST_SECRET,
        ENV="test",
        VAR_DIR=str(tmp_path / "var"),
        BCRYPT_ROUNDS="4",
        RATE_LIMIT_PER_MINUTE="1000",  # the counters are shared through Redis: the test polls
        RATE_LIMIT_USER_PER_MINUTE="1000",
        WSGI_THREADS="4",
        DB_POOL_SIZE="4",
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=str(smtp_port),
        SMTP_SECURITY="none",
        SMTP_TIMEOUT_SECONDS="5",
        REMINDER_SWEEP_INTERVAL_SECONDS="60",  # the scheduled job, not the backstop sweep, fires it
        LOG_LEVEL="INFO",
        PYTHONPATH=str(ROOT),
    )
    processes: list[subprocess.Popen] = []
    logs: list[Path] = []
    engine = make_engine(database, pool_size=1, max_overflow=1)
    try:
        apis = []
        for _ in range(2):
            url, process, log_path = start_api(environment, tmp_path)
            processes.append(process)
            logs.append(log_path)
            apis.append(url)
        for number in range(2):
            process, log_path = start_worker(environment, tmp_path, number)
            processes.append(process)
            logs.append(log_path)
        for url, process, log_path in zip(apis, processes, logs, strict=False):
            wait_until_healthy(url, process, log_path, timeout=60)
        for log_path in logs[2:]:
            wait_until(lambda path=log_path: STARTED in log_tail(path, 200), "a worker's start", timeout=60)

        with httpx.Client(base_url=apis[0], timeout=15) as one, httpx.Client(base_url=apis[1], timeout=15) as other:
            email = f"scale-{uuid.uuid4().hex[:8]}@example.com"
            registered = one.post("/api/v1/auth/register", json=registration(email))
            assert registered.status_code == 201, registered.text
            user_id = registered.json()["id"]
            login = other.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
            assert login.status_code == 200, login.text
            headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
            assert one.get("/api/v1/auth/me", headers=headers).json()["id"] == user_id
            tasks = f"/api/v1/users/{user_id}/tasks"
            created = other.post(tasks, json={"title": "water the plants", "priority": "high"}, headers=headers)
            assert created.status_code == 201, created.text
            task_id = created.json()["id"]
            listed = one.get(tasks, params={"limit": 10}, headers=headers)
            assert [task["id"] for task in listed.json()["items"]] == [task_id]
            completed = other.patch(f"{tasks}/{task_id}/complete", headers=headers)
            assert completed.status_code == 200, completed.text
            assert one.get(f"{tasks}/{task_id}", headers=headers).json()["completed"] is True
            assert one.get("/api/v1/health/ready").json()["checks"] == {"database": "ok", "redis": "ok"}

            pending = one.post(tasks, json={"title": "feed the cat"}, headers=headers).json()["id"]
            remind_at = datetime.now(UTC) + timedelta(seconds=3)
            reminder = one.post(
                f"{tasks}/{pending}/reminders",
                json={"remind_at": remind_at.isoformat().replace("+00:00", "Z"), "channels": ["in_app", "email"]},
                headers=headers,
            )
            assert reminder.status_code == 201, reminder.text

            def notified() -> list:
                listed = other.get("/api/v1/users/me/notifications", headers=headers)
                assert listed.status_code == 200, listed.text
                return listed.json()["items"]

            wait_until(notified, "the reminder's notification", timeout=30, every=0.25)
            mailbox.wait_for(email, 1, timeout=30)
            time.sleep(3)  # room for a duplicate to show, were there one
            assert len(notified()) == 1
            assert len(mailbox.to(email)) == 1

            assert one.post("/api/v1/auth/logout", headers=headers).status_code == 204
            assert other.get("/api/v1/auth/me", headers=headers).status_code == 401  # ended everywhere

        with UnitOfWork(make_session_factory(engine)) as uow:
            made = uow.jobs.list_page(limit=10, owner_id=uuid.UUID(user_id))
        assert sorted((job.kind, job.status, job.attempts) for job in made) == [
            ("reminders.email", "succeeded", 1),
            ("reminders.fire", "succeeded", 1),
        ]
    finally:
        for process in processes:
            stop_process(process)
        smtp.stop()
        engine.dispose()
