"""The job engine's rules, with a frozen clock and a recording queue (services/jobs.py)."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest

from persistence.unit_of_work import UnitOfWork
from services import jobs
from services.errors import Forbidden, NotFound
from services.jobs import JobCancelled, JobStateConflict, Outcome, RetryPolicy
from tests.jobs.conftest import T0, enqueue, job_row


def _fails(run):
    raise TimeoutError("the upstream did not answer")


def _run(engine, new_uow, clock, job_id, worker="worker-a"):
    return jobs.run(engine=engine, unit_of_work=new_uow, clock=clock, job_id=job_id, worker_id=worker)


def test_enqueue_records_a_queued_job_and_delivers_it_after_the_commit(new_uow, clock, engine, queue, owner):
    with new_uow() as uow:
        job = jobs.enqueue(
            uow=uow, clock=clock, engine=engine, kind="test.scripted", owner_id=owner.id, payload={"n": 1}
        )
        assert queue.deliveries == []  # not before the commit
    assert queue.of(job.id) == [T0]
    row = job_row(new_uow, job.id)
    assert (row.status, row.attempts, row.max_attempts, row.next_attempt_at, row.payload) == (
        "queued",
        0,
        5,
        T0,
        {"n": 1},
    )


def test_a_rolled_back_enqueue_delivers_nothing(new_uow, clock, engine, queue, owner):
    with pytest.raises(RuntimeError), new_uow() as uow:
        job = jobs.enqueue(uow=uow, clock=clock, engine=engine, kind="test.scripted", owner_id=owner.id)
        raise RuntimeError("the request failed")
    assert queue.deliveries == []
    assert job_row(new_uow, job.id) is None


def test_an_undeclared_kind_is_refused(new_uow, clock, engine, owner):
    with pytest.raises(LookupError), new_uow() as uow:
        jobs.enqueue(uow=uow, clock=clock, engine=engine, kind="test.nothing", owner_id=owner.id)


def test_a_job_runs_once_and_keeps_its_result(new_uow, clock, engine, calls, owner):
    job_id = enqueue(new_uow, clock, engine, owner=owner)
    calls.script.append(lambda run: (run.checkpoint(3, 3, "all done"), {"made": 3})[1])
    assert _run(engine, new_uow, clock, job_id).outcome is Outcome.SUCCEEDED
    assert _run(engine, new_uow, clock, job_id, "worker-b").outcome is Outcome.NOT_CLAIMED  # a duplicate delivery
    row = job_row(new_uow, job_id)
    assert calls.count[job_id] == 1
    assert (row.status, row.attempts, row.result, row.error, row.finished_at) == ("succeeded", 1, {"made": 3}, None, T0)
    assert (row.progress_done, row.progress_total, row.progress_message, row.lease_expires_at) == (
        3,
        3,
        "all done",
        None,
    )


def test_of_twelve_concurrent_claims_exactly_one_wins(new_uow, clock, engine, owner):
    job_id = enqueue(new_uow, clock, engine, owner=owner)
    barrier = threading.Barrier(12, timeout=30)

    def claim(i: int) -> bool:
        uow = new_uow()
        with uow:
            barrier.wait()
            return uow.jobs.claim(job_id, now=T0, worker_id=f"w{i}", lease_until=T0 + timedelta(seconds=60))

    with ThreadPoolExecutor(max_workers=12) as pool:
        won = list(pool.map(claim, range(12), timeout=60))
    assert won.count(True) == 1
    row = job_row(new_uow, job_id)
    assert (row.status, row.attempts, row.worker_id) == ("running", 1, f"w{won.index(True)}")


def test_the_backoff_doubles_up_to_its_ceiling_and_jitter_takes_off_at_most_its_share():
    policy = RetryPolicy(max_attempts=10, base_delay_seconds=10, max_delay_seconds=100, jitter=0.5)
    assert [policy.delay(n, 0.0).total_seconds() for n in range(1, 7)] == [10, 20, 40, 80, 100, 100]
    assert policy.delay(2, 0.5) == timedelta(seconds=15)
    assert policy.delay(3, 0.999999).total_seconds() == pytest.approx(20.00002)
    assert policy.delay(1000, 0.0) == timedelta(seconds=100)  # no overflow however many attempts
    draws = [i / 1000 for i in range(1000)]
    assert all(timedelta(seconds=40) >= policy.delay(3, d) > timedelta(seconds=20) for d in draws)


def test_a_failed_attempt_is_retried_after_its_backoff_and_the_last_error_is_kept(
    new_uow, clock, engine, queue, calls, owner
):
    job_id = enqueue(new_uow, clock, engine, owner=owner)
    calls.script.append(_fails)
    report = _run(engine, new_uow, clock, job_id)
    assert (report.outcome, report.attempt, type(report.error)) == (Outcome.RETRYING, 1, TimeoutError)
    row = job_row(new_uow, job_id)
    due = T0 + timedelta(seconds=10 * (1 - 0.5 * 0.25))  # 8.75 s: base delay, jitter draw 0.25
    assert (row.status, row.attempts, row.next_attempt_at, row.worker_id) == ("queued", 1, due, None)
    assert row.error["type"] == "/problems/job-failed" and "TimeoutError" in row.error["detail"]
    assert "upstream" not in row.error["detail"]  # the message may hold internals: only the log has it
    assert queue.of(job_id) == [T0, due]
    assert _run(engine, new_uow, clock, job_id).outcome is Outcome.NOT_CLAIMED  # not due yet
    clock.advance(seconds=8.75)
    assert _run(engine, new_uow, clock, job_id).outcome is Outcome.SUCCEEDED
    row = job_row(new_uow, job_id)
    assert (row.status, row.attempts, row.error) == ("succeeded", 2, None)


def test_after_the_last_attempt_the_job_is_a_dead_letter_that_can_be_retried(
    new_uow, clock, engine, queue, calls, owner
):
    job_id = enqueue(new_uow, clock, engine, owner=owner)
    calls.script.extend([_fails] * 5)
    delays = []
    for attempt in range(1, 6):
        report = _run(engine, new_uow, clock, job_id)
        assert report.attempt == attempt
        row = job_row(new_uow, job_id)
        if attempt < 5:
            assert report.outcome is Outcome.RETRYING
            delays.append((row.next_attempt_at - clock.now()).total_seconds())
            clock.at = row.next_attempt_at
    assert delays == [8.75, 17.5, 35.0, 70.0]  # 10, 20, 40, 80 s less a quarter of half
    assert report.outcome is Outcome.FAILED
    row = job_row(new_uow, job_id)
    assert (row.status, row.attempts, row.finished_at) == ("failed", 5, clock.now())
    assert row.error["type"] == "/problems/job-failed"
    with new_uow() as uow:
        dead = jobs.list_jobs(uow=uow, caller=owner, limit=10, statuses=["failed"]).items
        assert [job.id for job in dead] == [job_id]
        jobs.retry(uow=uow, clock=clock, engine=engine, caller=owner, job_id=job_id)
    row = job_row(new_uow, job_id)
    assert (row.status, row.attempts, row.finished_at, row.next_attempt_at) == ("queued", 0, None, clock.now())
    assert row.error["type"] == "/problems/job-failed"  # kept until an attempt succeeds
    assert queue.of(job_id)[-1] == clock.now()
    assert _run(engine, new_uow, clock, job_id).outcome is Outcome.SUCCEEDED
    assert calls.count[job_id] == 6


def test_a_rule_that_refuses_the_work_fails_the_job_at_once_with_its_problem(new_uow, clock, engine, owner):
    job_id = enqueue(new_uow, clock, engine, owner=owner, kind="test.invalid")
    assert _run(engine, new_uow, clock, job_id).outcome is Outcome.FAILED
    row = job_row(new_uow, job_id)
    assert (row.status, row.attempts) == ("failed", 1)
    assert row.error == {
        "type": "/problems/validation-error",
        "title": "Request validation failed",
        "status": 400,
        "detail": "The payload names nothing to do.",
    }


def _claim(new_uow, job_id, worker, now, lease=60):
    with new_uow() as uow:
        assert uow.jobs.claim(job_id, now=now, worker_id=worker, lease_until=now + timedelta(seconds=lease))


def test_a_renewed_lease_keeps_the_job_and_an_expired_one_is_swept_back_to_the_queue(
    new_uow, clock, engine, queue, owner
):
    job_id = enqueue(new_uow, clock, engine, owner=owner)
    _claim(new_uow, job_id, "dead-worker", T0)
    clock.advance(seconds=40)
    assert jobs.renew_lease(
        unit_of_work=new_uow, clock=clock, engine=engine, job_id=job_id, worker_id="dead-worker", attempt=1
    )
    clock.advance(seconds=40)  # 80 s after the claim, 40 s after the renewal
    assert job_id not in jobs.sweep(unit_of_work=new_uow, clock=clock, engine=engine).requeued
    clock.advance(seconds=20.000001)  # the renewed lease has run out
    report = jobs.sweep(unit_of_work=new_uow, clock=clock, engine=engine)
    assert job_id in report.requeued and job_id not in report.ended
    assert job_id not in jobs.sweep(unit_of_work=new_uow, clock=clock, engine=engine).requeued  # once
    row = job_row(new_uow, job_id)
    assert (row.status, row.worker_id, row.lease_expires_at, row.next_attempt_at) == ("queued", None, None, clock.now())
    assert queue.of(job_id)[-1] == clock.now()
    # The worker that lost its lease can no longer renew it nor write an outcome.
    assert not jobs.renew_lease(
        unit_of_work=new_uow, clock=clock, engine=engine, job_id=job_id, worker_id="dead-worker", attempt=1
    )
    assert _run(engine, new_uow, clock, job_id, "worker-b").outcome is Outcome.SUCCEEDED
    with new_uow() as uow:
        assert not uow.jobs.change_attempt(job_id, held_by="dead-worker", attempt=1, status="failed")
    assert job_row(new_uow, job_id).status == "succeeded"


def test_a_lost_lease_on_the_last_attempt_fails_the_job_and_a_cancelled_one_ends_cancelled(
    new_uow, clock, engine, owner
):
    last = enqueue(new_uow, clock, engine, owner=owner, kind="test.once")
    asked_to_stop = enqueue(new_uow, clock, engine, owner=owner)
    _claim(new_uow, last, "dead", T0)
    _claim(new_uow, asked_to_stop, "dead", T0)
    with new_uow() as uow:
        jobs.cancel(uow=uow, clock=clock, caller=owner, job_id=asked_to_stop)
    clock.advance(seconds=61)
    report = jobs.sweep(unit_of_work=new_uow, clock=clock, engine=engine)
    assert {last, asked_to_stop} <= set(report.ended)
    assert not {last, asked_to_stop} & set(report.requeued)
    assert job_row(new_uow, last).status == "failed"
    assert "lease expired" in job_row(new_uow, last).error["detail"]
    assert job_row(new_uow, asked_to_stop).status == "cancelled"


def test_a_lost_delivery_is_delivered_again(new_uow, clock, engine, queue, owner):
    job_id = enqueue(new_uow, clock, engine, owner=owner)
    clock.advance(minutes=4)
    assert job_id not in jobs.sweep(unit_of_work=new_uow, clock=clock, engine=engine).redelivered
    clock.advance(minutes=1, microseconds=1)
    assert job_id in jobs.sweep(unit_of_work=new_uow, clock=clock, engine=engine, limit=1000).redelivered
    assert queue.of(job_id) == [T0, clock.now()]


def test_cancel_stops_a_queued_job_at_once_and_a_running_one_at_its_checkpoint(new_uow, clock, engine, calls, owner):
    queued = enqueue(new_uow, clock, engine, owner=owner)
    with new_uow() as uow:
        assert jobs.cancel(uow=uow, clock=clock, caller=owner, job_id=queued).status == "cancelled"
    assert _run(engine, new_uow, clock, queued).outcome is Outcome.NOT_CLAIMED

    running = enqueue(new_uow, clock, engine, owner=owner)
    reached: list[int] = []

    def cancelled_midway(run):
        run.checkpoint(1, 3)
        reached.append(1)
        with new_uow() as uow:
            assert jobs.cancel(uow=uow, clock=clock, caller=owner, job_id=running).status == "running"
        run.checkpoint(2, 3)
        reached.append(2)

    calls.script.append(cancelled_midway)
    assert _run(engine, new_uow, clock, running).outcome is Outcome.CANCELLED
    assert reached == [1]
    row = job_row(new_uow, running)
    assert (row.status, row.cancel_requested, row.progress_done) == ("cancelled", True, 2)  # recorded, then stopped
    with new_uow() as uow, pytest.raises(JobStateConflict):
        jobs.cancel(uow=uow, clock=clock, caller=owner, job_id=running)


def test_only_failed_or_cancelled_jobs_can_be_retried(new_uow, clock, engine, owner):
    job_id = enqueue(new_uow, clock, engine, owner=owner)
    with new_uow() as uow, pytest.raises(JobStateConflict):
        jobs.retry(uow=uow, clock=clock, engine=engine, caller=owner, job_id=job_id)
    assert _run(engine, new_uow, clock, job_id).outcome is Outcome.SUCCEEDED
    for change in (jobs.cancel, jobs.retry):
        with new_uow() as uow, pytest.raises(JobStateConflict):
            kwargs = {"engine": engine} if change is jobs.retry else {}
            change(uow=uow, clock=clock, caller=owner, job_id=job_id, **kwargs)
    assert job_row(new_uow, job_id).status == "succeeded"


def test_a_job_function_that_swallows_nothing_sees_the_cancellation(new_uow, clock, engine, calls, owner):
    job_id = enqueue(new_uow, clock, engine, owner=owner)

    def checks(run):
        with new_uow() as uow:
            jobs.cancel(uow=uow, clock=clock, caller=owner, job_id=job_id)
        with pytest.raises(JobCancelled):
            run.checkpoint(1)
        raise JobCancelled(str(job_id))

    calls.script.append(checks)
    assert _run(engine, new_uow, clock, job_id).outcome is Outcome.CANCELLED


def test_owners_see_their_own_jobs_and_administrators_every_job(new_uow, clock, engine, owner, other_account, admin):
    with new_uow() as uow:
        other = uow.users.get(uuid.UUID(other_account.id))
        administrator = uow.users.get(uuid.UUID(admin.id))
    mine = enqueue(new_uow, clock, engine, owner=owner)
    theirs = enqueue(new_uow, clock, engine, owner=other)
    service = enqueue(new_uow, clock, engine, owner=None)
    with new_uow() as uow:
        assert [j.id for j in jobs.list_jobs(uow=uow, caller=owner, limit=100).items] == [mine]
        with pytest.raises(NotFound):
            jobs.get_job(uow=uow, caller=owner, job_id=theirs)
        with pytest.raises(NotFound):
            jobs.cancel(uow=uow, clock=clock, caller=owner, job_id=service)
        with pytest.raises(Forbidden):
            jobs.list_jobs(uow=uow, caller=owner, limit=100, owner_id=other.id)
        everyone = {j.id for j in jobs.list_jobs(uow=uow, caller=administrator, limit=100).items}
        assert {mine, theirs, service} <= everyone
        only_theirs = jobs.list_jobs(uow=uow, caller=administrator, limit=100, owner_id=other.id).items
        assert [j.id for j in only_theirs] == [theirs]
        assert jobs.get_job(uow=uow, caller=administrator, job_id=theirs).id == theirs
    assert job_row(new_uow, service).status == "queued"


def test_pages_of_jobs_follow_the_cursor_newest_first(new_uow, clock, engine, owner):
    made = []
    for _ in range(5):
        made.append(enqueue(new_uow, clock, engine, owner=owner))
        clock.advance(seconds=1)
    seen, cursor = [], None
    for _ in range(5):
        with new_uow() as uow:
            result = jobs.list_jobs(uow=uow, caller=owner, limit=2, cursor=cursor)
        seen += [j.id for j in result.items]
        cursor = result.next_cursor
        if cursor is None:
            break
    assert seen == made[::-1]


def test_maintenance_purges_only_what_has_expired(app, new_uow, clock, account, other_account):
    from persistence.accounts.models import PasswordResetToken
    from persistence.idempotency.models import IdempotencyRecord
    from services import maintenance

    def record(owner_id, key, expires_at):
        return IdempotencyRecord(
            owner_id=owner_id, key=key, fingerprint="f", state="completed", created_at=T0, expires_at=expires_at
        )

    def token(user_id, expires_at, used_at=None):
        return PasswordResetToken(
            id=uuid.uuid4(),
            user_id=user_id,
            token_hash=uuid.uuid4().hex * 2,
            created_at=T0,
            expires_at=expires_at,
            used_at=used_at,
        )

    me, other = uuid.UUID(account.id), uuid.UUID(other_account.id)
    hour = timedelta(hours=1)
    uow: UnitOfWork
    with new_uow() as uow:
        uow.session.add_all(
            [
                record(me, "old", T0 - hour),
                record(me, "live", T0 + hour),
                token(me, T0 - hour),
                token(other, T0 + hour),
                token(other, T0 + hour, used_at=T0 - hour),
            ]
        )
    with new_uow() as uow:
        purged = maintenance.purge_expired(uow=uow, clock=clock)
    with new_uow() as uow:
        again = maintenance.purge_expired(uow=uow, clock=clock)
    # Other tests' rows may have expired too; ours are counted exactly below.
    assert purged["idempotency_records"] >= 1 and purged["password_reset_tokens"] >= 2
    assert again == {"idempotency_records": 0, "password_reset_tokens": 0}
    with new_uow() as uow:
        keys = {r.key for r in uow.session.query(IdempotencyRecord).filter(IdempotencyRecord.owner_id == me)}
        tokens = uow.session.query(PasswordResetToken).filter(PasswordResetToken.user_id.in_([me, other])).all()
    assert keys == {"live"}
    assert [(t.user_id, t.used_at) for t in tokens] == [(other, None)]
