"""Redis stopped and started under a running app (issue 18, "Resilience"), on a redis-server of
the test's own (never the shared one on 127.0.0.1:6379).

Proved, as the README documents: while Redis is down the readiness probe answers 200 `degraded`
naming it (`checks.redis: unavailable`), requests keep being served with their rate-limit
headers (the counters fall back to process memory), and a job enqueued meanwhile is committed
as `queued` (the hand-over to the Redis queue is logged, not raised); when Redis is back the
probe answers `ready` again, the counters are Redis's again, and the job sweep hands the job
over — without restarting anything.
"""

from __future__ import annotations

from datetime import timedelta

import redis

from persistence.unit_of_work import UnitOfWork
from services import jobs
from services.clock import FrozenClock, SystemClock
from tests.chaos.faults import wait_until
from tests.helpers import app_client, register_and_login


def test_the_app_serves_through_a_redis_restart_and_recovers_without_one(openapi, database_url, tmp_path, own_redis):
    overrides = {
        "redis_url": own_redis.url,
        "job_queue": "redis",
        "job_extra_modules": ["tests.jobs.kinds"],
    }
    with app_client(database_url, tmp_path, openapi, **overrides) as (app, client):
        context = app.app.extensions["charter"]
        account = register_and_login(client)
        ready = client.get("/api/v1/health/ready").json()
        assert (ready["status"], ready["checks"]["redis"]) == ("ready", "ok")
        huey = context.jobs.queue.huey

        own_redis.stop()
        ready = client.get("/api/v1/health/ready")
        assert ready.status_code == 200
        assert (ready.json()["status"], ready.json()["checks"]["redis"]) == ("degraded", "unavailable")
        for number in range(5):
            created = client.post(account.tasks_path, json={"title": f"offline {number}"}, headers=account.headers)
            assert created.status_code == 201, created.text
            assert "ratelimit-remaining" in created.headers  # counted in memory meanwhile
        listed = client.get(account.tasks_path, headers=account.headers)
        assert listed.status_code == 200 and len(listed.json()["items"]) == 5

        with UnitOfWork(context.session_factory) as uow:  # the hand-over fails: logged, not raised
            job = jobs.enqueue(
                uow=uow,
                clock=SystemClock(),
                engine=context.jobs,
                kind="test.record",
                owner_id=None,
                payload={"dir": str(tmp_path)},
            )
        with UnitOfWork(context.session_factory) as uow:
            assert uow.jobs.get(job.id).status == "queued"

        own_redis.start()
        wait_until(lambda: client.get("/api/v1/health/ready").json()["status"] == "ready", "ready again", timeout=15)
        assert huey.pending_count() == 0  # the job never reached the queue
        later = FrozenClock(SystemClock().now() + context.jobs.redeliver_after + timedelta(seconds=1))
        report = jobs.sweep(unit_of_work=lambda: UnitOfWork(context.session_factory), clock=later, engine=context.jobs)
        assert job.id in report.redelivered
        # handed over now that Redis is back (with the session database's other overdue jobs)
        assert huey.pending_count() == len(report.redelivered) + len(report.requeued)

        created = client.post(account.tasks_path, json={"title": "online again"}, headers=account.headers)
        assert created.status_code == 201
        keys = redis.Redis.from_url(own_redis.url).keys("*")
        assert keys  # the counters and the queue are in Redis again
