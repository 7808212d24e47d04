"""A real `charter worker` delivers webhooks to a real receiver on 127.0.0.1 (allowed by
WEBHOOK_ALLOW_PRIVATE_ADDRESSES), which verifies each delivery with the `standardwebhooks`
library as any receiver would; a receiver that fails first gets the same event again (same
`webhook-id`) once the retry is due. On SQLite and on PostgreSQL; every wait has a deadline."""

from __future__ import annotations

import subprocess
import time
import uuid
from datetime import timedelta

import pytest
from standardwebhooks.webhooks import Webhook

import jobs as job_kinds
from adapters.job_queue import HueyJobQueue, make_huey
from adapters.secret_box import FernetBox, new_key
from adapters.webhook_http import FakeGuard, FakeSender
from persistence.accounts.models import User
from persistence.database import make_engine, make_session_factory
from persistence.unit_of_work import UnitOfWork
from services import tasks, webhooks
from services.clock import SystemClock
from services.jobs import JobEngine
from tests.helpers import ROOT
from tests.processes import CHARTER, charter_environment, log_tail, stop_process
from tests.served import migrated_database_of_kind
from tests.webhooks.receiver import receiving

DEADLINE_SECONDS = 40.0


def wait_for(condition, what: str, logs, timeout: float = DEADLINE_SECONDS):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"{what} did not happen within {timeout}s:\n{logs()}")


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_a_worker_delivers_signed_events_and_retries_a_failing_receiver(database, tmp_path):
    if not CHARTER.exists():
        pytest.skip("the charter console script is not installed")
    key = new_key()
    clock = SystemClock()
    with (
        migrated_database_of_kind(database, tmp_path) as url,
        receiving(200) as good,
        receiving(500, 200) as flaky,
    ):
        db = make_engine(url, pool_size=2, max_overflow=2)
        factory = make_session_factory(db)
        queue = HueyJobQueue(make_huey("sqlite", sqlite_path=tmp_path / "var" / "job-queue.db", redis_url=None))
        engine = JobEngine(kinds=job_kinds.discover(), queue=queue)
        config = webhooks.WebhookConfig(guard=FakeGuard(), sender=FakeSender(), box=FernetBox([key]))

        def publish(uow, events) -> None:
            webhooks.fan_out(uow=uow, clock=clock, engine=engine, events=events)

        def uow() -> UnitOfWork:
            return UnitOfWork(factory, publish=publish)

        owner = uuid.uuid4()
        with uow() as work:
            now = clock.now()
            work.users.add(
                User(
                    id=owner,
                    email=f"hooks-{owner.hex[:8]}@example.com",
                    display_name="Hooks",
                    password_hash="-",
                    role="user",
                    status="active",
                    created_at=now,
                    updated_at=now,
                )
            )
        secrets = {}
        for name, receiver in (("good", good), ("flaky", flaky)):
            with uow() as work:
                created = webhooks.create_endpoint(
                    uow=work, clock=clock, config=config, owner_id=owner, url=receiver.url, event_types=["task.created"]
                )
            secrets[name] = (created.endpoint.id, created.secret)

        log_path = tmp_path / "worker.log"
        with log_path.open("wb") as log:
            worker = subprocess.Popen(
                [str(CHARTER), "worker", "--threads", "2"],
                cwd=tmp_path,
                env=charter_environment(
                    DATABASE_URL=url,
                    VAR_DIR=str(tmp_path / "var"),
                    JOB_QUEUE="sqlite",
                    JOB_SWEEP_INTERVAL_SECONDS="0.5",
                    ENCRYPTION_KEYS=key,
                    WEBHOOK_ALLOW_PRIVATE_ADDRESSES="true",
                    WEBHOOK_TIMEOUT_SECONDS="5",
                    LOG_LEVEL="INFO",
                    PYTHONPATH=str(ROOT),
                ),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        try:

            def logs() -> str:
                return log_tail(log_path)

            with uow() as work:
                task = tasks.create_task(uow=work, clock=clock, owner_id=owner, data={"title": "Ship it"})

            [received] = wait_for(lambda: good.received, "a delivery to the good receiver", logs)
            payload = Webhook(secrets["good"][1]).verify(received.body, received.headers)
            assert payload["type"] == "task.created"
            assert payload["data"]["task"]["id"] == str(task.id)
            assert received.headers["webhook-id"] == payload["id"]

            def delivery(name):
                with UnitOfWork(factory) as work:
                    [view] = webhooks.list_deliveries(
                        uow=work, owner_id=owner, endpoint_id=secrets[name][0], limit=10
                    ).items
                    return view

            done = wait_for(
                lambda: delivery("good").delivery.status == "succeeded" and delivery("good"), "success", logs
            )
            assert (done.delivery.attempts, done.delivery.last_status_code) == (1, 200)

            # The flaky receiver answered 500: the delivery waits for its retry (a minute at least).
            failed = wait_for(lambda: delivery("flaky").delivery.attempts == 1 and delivery("flaky"), "attempt 1", logs)
            assert failed.delivery.status == "pending" and failed.delivery.last_status_code == 500
            assert failed.next_attempt_at - clock.now() > timedelta(seconds=20)
            # Instead of waiting a minute: the retry is made due now and handed to the queue again.
            with UnitOfWork(factory) as work:
                work.jobs.change_if(failed.delivery.job_id, next_attempt_at=clock.now())
            queue.deliver(failed.delivery.job_id, at=clock.now())

            retried = wait_for(
                lambda: delivery("flaky").delivery.status == "succeeded" and delivery("flaky"), "the retry", logs
            )
            assert (retried.delivery.attempts, retried.delivery.last_status_code) == (2, 200)
            first, second = flaky.received
            assert first.headers["webhook-id"] == second.headers["webhook-id"]  # one event, delivered twice
            for request in (first, second):  # the same event the good receiver got, each attempt signed anew
                assert Webhook(secrets["flaky"][1]).verify(request.body, request.headers)["id"] == payload["id"]
        finally:
            stop_process(worker)
            db.dispose()
