"""The webhook rules with a frozen clock and fakes (no network): events fanned out at the
commit to the right endpoints, Standard Webhooks signatures, the backoff schedule, disabling
after a day of failures, the rotation window, secrets encrypted at rest and re-encrypted."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from standardwebhooks.webhooks import Webhook

from adapters.secret_box import FernetBox, new_key
from adapters.webhook_http import SendResult
from jobs.webhooks import DELIVERY_RETRY
from persistence.tasks.models import Task
from services import jobs, notifications, reminders, tasks, webhooks
from services.errors import NotFound
from services.jobs import Outcome
from tests.webhooks.conftest import PUBLIC_URL, T0


def make_endpoint(new_uow, clock, config, owner_id, events=("task.created",), url=PUBLIC_URL):
    with new_uow() as uow:
        created = webhooks.create_endpoint(
            uow=uow, clock=clock, config=config, owner_id=owner_id, url=url, event_types=list(events)
        )
    return created.endpoint.id, created.secret


def create_task(new_uow, clock, owner_id, title="Write the report"):
    with new_uow() as uow:
        return tasks.create_task(uow=uow, clock=clock, owner_id=owner_id, data={"title": title}).id


def deliveries_of(new_uow, owner_id, endpoint_id):
    with new_uow() as uow:
        return webhooks.list_deliveries(uow=uow, owner_id=owner_id, endpoint_id=endpoint_id, limit=100).items


def endpoint_row(new_uow, owner_id, endpoint_id):
    with new_uow() as uow:
        return webhooks.get_endpoint(uow=uow, owner_id=owner_id, endpoint_id=endpoint_id)


def run(new_uow, clock, engine, job_id):
    return jobs.run(engine=engine, unit_of_work=new_uow, clock=clock, job_id=job_id, worker_id="test-worker")


def job_of(new_uow, job_id):
    with new_uow() as uow:
        return uow.jobs.get(job_id)


def test_an_event_goes_at_the_commit_to_the_owners_enabled_endpoints_subscribed_to_it(
    new_uow, clock, config, engine, queue, owner_id, other_account
):
    subscribed, _ = make_endpoint(new_uow, clock, config, owner_id, ["task.created", "task.deleted"])
    other_type, _ = make_endpoint(new_uow, clock, config, owner_id, ["task.completed"])
    disabled, _ = make_endpoint(new_uow, clock, config, owner_id, ["task.created"])
    with new_uow() as uow:
        webhooks.update_endpoint(
            uow=uow, clock=clock, owner_id=owner_id, endpoint_id=disabled, changes={"enabled": False}
        )
    someone_else, _ = make_endpoint(new_uow, clock, config, uuid.UUID(other_account.id), ["task.created"])

    task_id = create_task(new_uow, clock, owner_id)

    [delivery] = deliveries_of(new_uow, owner_id, subscribed)
    assert delivery.delivery.event_type == "task.created"
    assert delivery.delivery.payload["type"] == "task.created"
    assert delivery.delivery.payload["data"]["task"]["id"] == str(task_id)
    assert delivery.delivery.payload["id"] == delivery.delivery.event_id
    assert delivery.next_attempt_at == T0  # its job is queued, due now
    assert queue.of(delivery.delivery.job_id) == [T0]
    for endpoint_id in (other_type, disabled):
        assert deliveries_of(new_uow, owner_id, endpoint_id) == []
    assert deliveries_of(new_uow, uuid.UUID(other_account.id), someone_else) == []


def test_work_that_is_rolled_back_publishes_no_event(new_uow, clock, config, owner_id, published):
    endpoint_id, _ = make_endpoint(new_uow, clock, config, owner_id)
    with pytest.raises(RuntimeError), new_uow() as uow:
        tasks.create_task(uow=uow, clock=clock, owner_id=owner_id, data={"title": "Never saved"})
        raise RuntimeError("the request failed")
    assert published == []
    assert deliveries_of(new_uow, owner_id, endpoint_id) == []


def test_a_delivery_is_committed_with_the_change_and_a_lost_hand_over_is_delivered_by_the_sweep(
    new_uow, clock, config, engine, queue, owner_id, monkeypatch
):
    """The transactional outbox: the process dies after the commit, before the queue hears of
    the delivery's job; the delivery and its queued job are in the database all the same, and
    the job sweep hands it to the queue once it is overdue."""
    endpoint_id, _ = make_endpoint(new_uow, clock, config, owner_id)
    monkeypatch.setattr(queue, "deliver", lambda job_id, *, at: None)  # the hand-over is lost
    task_id = create_task(new_uow, clock, owner_id)
    monkeypatch.undo()

    [view] = deliveries_of(new_uow, owner_id, endpoint_id)
    assert view.delivery.payload["data"]["task"]["id"] == str(task_id)
    assert job_of(new_uow, view.delivery.job_id).status == "queued"
    assert queue.of(view.delivery.job_id) == []

    clock.advance(seconds=engine.redeliver_after.total_seconds() + 1)
    report = jobs.sweep(unit_of_work=new_uow, clock=clock, engine=engine)
    assert view.delivery.job_id in report.redelivered
    assert queue.of(view.delivery.job_id) == [clock.now()]


def test_a_subscriber_that_fails_fails_the_commit_and_nothing_is_kept(new_uow, clock, config, owner_id):
    endpoint_id, _ = make_endpoint(new_uow, clock, config, owner_id)

    def broken_fan_out(**_arguments):
        raise RuntimeError("the fan-out failed")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(webhooks, "fan_out", broken_fan_out)
        with pytest.raises(RuntimeError, match="fan-out failed"), new_uow() as uow:
            tasks.create_task(uow=uow, clock=clock, owner_id=owner_id, data={"title": "Not without its delivery"})
    with new_uow() as uow:
        assert uow.session.scalar(select(func.count()).select_from(Task).where(Task.owner_id == owner_id)) == 0
    assert deliveries_of(new_uow, owner_id, endpoint_id) == []


def test_a_failed_bulk_operation_publishes_no_event_of_its_own(new_uow, clock, config, owner_id):
    endpoint_id, _ = make_endpoint(new_uow, clock, config, owner_id, ["task.created", "task.deleted"])
    with new_uow() as uow:
        results = tasks.bulk(
            uow=uow,
            clock=clock,
            owner_id=owner_id,
            operations=[
                {"op": "create", "task": {"title": "Kept"}},
                {"op": "delete", "id": str(uuid.uuid4())},  # no such task: rolled back alone
            ],
        )
    assert [result.error is None for result in results] == [True, False]
    assert [view.delivery.event_type for view in deliveries_of(new_uow, owner_id, endpoint_id)] == ["task.created"]


def test_a_delivery_is_signed_per_standard_webhooks_and_sent_once(new_uow, clock, config, engine, sender, owner_id):
    endpoint_id, secret = make_endpoint(new_uow, clock, config, owner_id)
    assert secret.startswith("whsec_") and len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    create_task(new_uow, clock, owner_id)
    [view] = deliveries_of(new_uow, owner_id, endpoint_id)

    assert run(new_uow, clock, engine, view.delivery.job_id).outcome is Outcome.SUCCEEDED
    [(url, headers, body)] = sender.sent
    assert url == PUBLIC_URL
    assert headers["webhook-id"] == view.delivery.event_id
    assert headers["webhook-timestamp"] == str(int(T0.timestamp()))
    assert headers["webhook-signature"] == Webhook(secret).sign(view.delivery.event_id, T0, body.decode())
    assert json.loads(body) == view.delivery.payload
    [done] = deliveries_of(new_uow, owner_id, endpoint_id)
    assert (done.delivery.status, done.delivery.attempts, done.delivery.last_status_code) == ("succeeded", 1, 200)

    # At least once, and idempotent: the same job delivered again sends nothing more.
    with new_uow() as uow:
        uow.jobs.change_if(view.delivery.job_id, status="queued")
    run(new_uow, clock, engine, view.delivery.job_id)
    assert len(sender.sent) == 1


def test_the_backoff_doubles_from_a_minute_up_to_a_day():
    assert [DELIVERY_RETRY.delay(n, 0.0) for n in range(1, 16)] == [
        timedelta(seconds=min(60 * 2 ** (n - 1), 86400)) for n in range(1, 16)
    ]
    assert DELIVERY_RETRY.delay(11, 0.0) == timedelta(minutes=1024)
    assert DELIVERY_RETRY.delay(12, 0.0) == timedelta(days=1)
    assert DELIVERY_RETRY.delay(12, 0.999) > timedelta(hours=12)  # jitter takes at most half
    assert DELIVERY_RETRY.max_attempts == 15


def test_failed_attempts_are_retried_with_backoff_and_an_endpoint_failing_for_a_day_is_disabled(
    new_uow, clock, config, engine, queue, sender, owner_id
):
    sender.answers = [SendResult(None, 10_000, "ConnectTimeout: timed out"), 500]
    endpoint_id, _ = make_endpoint(new_uow, clock, config, owner_id)
    create_task(new_uow, clock, owner_id)
    [view] = deliveries_of(new_uow, owner_id, endpoint_id)
    job_id = view.delivery.job_id

    waits = []
    for attempt in range(1, 13):
        report = run(new_uow, clock, engine, job_id)
        if report.outcome is not Outcome.RETRYING:
            break
        [pending] = deliveries_of(new_uow, owner_id, endpoint_id)
        assert (pending.delivery.status, pending.delivery.attempts) == ("pending", attempt)
        assert pending.next_attempt_at == job_of(new_uow, job_id).next_attempt_at == queue.of(job_id)[-1]
        waits.append(pending.next_attempt_at - clock.now())
        assert endpoint_row(new_uow, owner_id, endpoint_id).enabled  # not yet a day
        clock.advance(seconds=(pending.next_attempt_at - clock.now()).total_seconds())

    assert waits == [timedelta(minutes=2**n) for n in range(11)]  # 1, 2, 4 … 1024 minutes
    # Attempt 12 comes 2047 minutes after the first failure: over a day, so the endpoint is disabled.
    assert report.outcome is Outcome.SUCCEEDED and report.attempt == 12
    assert job_of(new_uow, job_id).result == {"sent": True, "status_code": 500, "endpoint_disabled": True}
    endpoint = endpoint_row(new_uow, owner_id, endpoint_id)
    assert not endpoint.enabled
    assert endpoint.failing_since == T0
    assert "failed for 1 day" in endpoint.disabled_reason
    [failed] = deliveries_of(new_uow, owner_id, endpoint_id)
    assert (failed.delivery.status, failed.delivery.attempts, failed.delivery.last_status_code) == ("failed", 12, 500)
    assert failed.next_attempt_at is None
    assert len(sender.sent) == 12
    # Its owner is told, once, in the app.
    with new_uow() as uow:
        [told] = notifications.list_notifications(uow=uow, owner_id=owner_id, limit=10).items
    assert told.type == "webhook_endpoint_disabled"
    assert told.title == f"Webhook endpoint disabled: {PUBLIC_URL}"
    assert str(endpoint_id) in told.body and endpoint.disabled_reason in told.body
    assert told.read_at is None

    # A disabled endpoint gets nothing: a new event makes no delivery.
    create_task(new_uow, clock, owner_id)
    assert len(deliveries_of(new_uow, owner_id, endpoint_id)) == 1
    # Enabling it again clears its run of failures.
    with new_uow() as uow:
        enabled = webhooks.update_endpoint(
            uow=uow, clock=clock, owner_id=owner_id, endpoint_id=endpoint_id, changes={"enabled": True}
        )
        assert (enabled.enabled, enabled.failing_since, enabled.disabled_reason) == (True, None, None)


def test_a_success_ends_the_run_of_failures(new_uow, clock, config, engine, sender, owner_id):
    sender.answers = [503, 503, 204]
    endpoint_id, _ = make_endpoint(new_uow, clock, config, owner_id)
    create_task(new_uow, clock, owner_id)
    [view] = deliveries_of(new_uow, owner_id, endpoint_id)
    for expected in (Outcome.RETRYING, Outcome.RETRYING, Outcome.SUCCEEDED):
        assert run(new_uow, clock, engine, view.delivery.job_id).outcome is expected
        assert endpoint_row(new_uow, owner_id, endpoint_id).failing_since == (
            T0 if expected is Outcome.RETRYING else None
        )
        clock.advance(minutes=10)
    [done] = deliveries_of(new_uow, owner_id, endpoint_id)
    assert (done.delivery.status, done.delivery.attempts, done.delivery.last_status_code) == ("succeeded", 3, 204)


def test_a_pending_delivery_of_a_disabled_endpoint_ends_failed_without_being_sent(
    new_uow, clock, config, engine, sender, owner_id
):
    endpoint_id, _ = make_endpoint(new_uow, clock, config, owner_id)
    create_task(new_uow, clock, owner_id)
    with new_uow() as uow:
        webhooks.update_endpoint(
            uow=uow, clock=clock, owner_id=owner_id, endpoint_id=endpoint_id, changes={"enabled": False}
        )
    [view] = deliveries_of(new_uow, owner_id, endpoint_id)
    assert run(new_uow, clock, engine, view.delivery.job_id).outcome is Outcome.SUCCEEDED
    assert sender.sent == []
    [failed] = deliveries_of(new_uow, owner_id, endpoint_id)
    assert (failed.delivery.status, failed.delivery.attempts) == ("failed", 0)


def test_after_a_rotation_both_secrets_sign_for_a_day_then_only_the_new_one(
    new_uow, clock, config, engine, sender, owner_id
):
    endpoint_id, old_secret = make_endpoint(new_uow, clock, config, owner_id)
    with new_uow() as uow:
        rotated = webhooks.rotate_secret(
            uow=uow, clock=clock, config=config, owner_id=owner_id, endpoint_id=endpoint_id
        )
    new_secret = rotated.secret
    assert new_secret != old_secret
    assert rotated.endpoint.previous_secret_expires_at == T0 + timedelta(hours=24)

    def signatures_at(offset: timedelta) -> tuple[list[str], str, str]:
        clock.advance(seconds=(T0 + offset - clock.now()).total_seconds())
        create_task(new_uow, clock, owner_id)
        view = deliveries_of(new_uow, owner_id, endpoint_id)[0]
        run(new_uow, clock, engine, view.delivery.job_id)
        _url, headers, body = sender.sent[-1]
        return headers["webhook-signature"].split(" "), view.delivery.event_id, body.decode()

    both, event_id, body = signatures_at(timedelta(hours=23, minutes=59))
    now = clock.now()
    assert both == [Webhook(new_secret).sign(event_id, now, body), Webhook(old_secret).sign(event_id, now, body)]

    only_new, event_id, body = signatures_at(timedelta(hours=24))
    assert only_new == [Webhook(new_secret).sign(event_id, clock.now(), body)]


def test_secrets_are_encrypted_at_rest_and_re_encrypted_under_a_new_first_key(
    new_uow, clock, config, owner_id, box, keys
):
    endpoint_id, secret = make_endpoint(new_uow, clock, config, owner_id)
    with new_uow() as uow:
        current = webhooks.rotate_secret(
            uow=uow, clock=clock, config=config, owner_id=owner_id, endpoint_id=endpoint_id
        ).secret
    row = endpoint_row(new_uow, owner_id, endpoint_id)
    assert secret not in row.previous_secret_encrypted and current not in row.secret_encrypted
    assert (box.decrypt(row.previous_secret_encrypted), box.decrypt(row.secret_encrypted)) == (secret, current)

    newest = new_key()
    with pytest.raises(ValueError):
        FernetBox([newest]).decrypt(row.secret_encrypted)
    try:
        # charter rotate-encryption-key: the new key first, the old ones after it.
        assert webhooks.reencrypt_secrets(unit_of_work=new_uow, box=FernetBox([newest, *keys]), batch=2) >= 1
        after = endpoint_row(new_uow, owner_id, endpoint_id)
        only_newest = FernetBox([newest])  # the old key can be dropped now
        assert only_newest.decrypt(after.previous_secret_encrypted) == secret
        assert only_newest.decrypt(after.secret_encrypted) == current
        with pytest.raises(ValueError):
            box.decrypt(after.secret_encrypted)
    finally:  # back under the session's keys, for the tests that follow
        webhooks.reencrypt_secrets(unit_of_work=new_uow, box=FernetBox([*keys, newest]))


def test_a_job_of_the_owner_that_finishes_raises_a_job_event_and_a_delivery_raises_none(
    new_uow, clock, config, engine, owner_id
):
    endpoint_id, _ = make_endpoint(new_uow, clock, config, owner_id, ["job.succeeded", "job.failed"])
    with new_uow() as uow:
        job_id = jobs.enqueue(
            uow=uow, clock=clock, engine=engine, kind="maintenance.purge_expired", owner_id=owner_id
        ).id
    assert run(new_uow, clock, engine, job_id).outcome is Outcome.SUCCEEDED
    [view] = deliveries_of(new_uow, owner_id, endpoint_id)
    assert view.delivery.event_type == "job.succeeded"
    assert view.delivery.payload["data"]["job"]["id"] == str(job_id)
    assert view.delivery.payload["data"]["job"]["status"] == "succeeded"
    assert run(new_uow, clock, engine, view.delivery.job_id).outcome is Outcome.SUCCEEDED  # the delivery itself
    assert len(deliveries_of(new_uow, owner_id, endpoint_id)) == 1


def test_a_url_the_guard_refuses_creates_nothing(new_uow, clock, config, owner_id):
    with pytest.raises(webhooks.UnsafeWebhookUrl, match="private address") as refused, new_uow() as uow:
        webhooks.create_endpoint(
            uow=uow, clock=clock, config=config, owner_id=owner_id, url="http://10.0.0.1/", event_types=["task.created"]
        )
    assert refused.value.pointer == "/url"
    with new_uow() as uow:
        assert webhooks.list_endpoints(uow=uow, owner_id=owner_id, limit=10).items == []


def test_another_users_endpoint_is_not_found(new_uow, clock, config, owner_id, other_account):
    endpoint_id, _ = make_endpoint(new_uow, clock, config, owner_id)
    with pytest.raises(NotFound), new_uow() as uow:
        webhooks.get_endpoint(uow=uow, owner_id=uuid.UUID(other_account.id), endpoint_id=endpoint_id)


def test_a_job_failed_by_the_sweep_on_its_last_attempt_raises_job_failed(new_uow, clock, config, engine, owner_id):
    endpoint_id, _ = make_endpoint(new_uow, clock, config, owner_id, ["job.failed"])
    with new_uow() as uow:
        job_id = jobs.enqueue(
            uow=uow, clock=clock, engine=engine, kind="maintenance.purge_expired", owner_id=owner_id
        ).id
        uow.jobs.change_if(job_id, max_attempts=1)
    with new_uow() as uow:  # a worker claims it, then dies without a word
        assert uow.jobs.claim(job_id, now=clock.now(), worker_id="gone", lease_until=clock.now() + timedelta(minutes=1))
    clock.advance(minutes=2)
    report = jobs.sweep(unit_of_work=new_uow, clock=clock, engine=engine)
    assert report.ended == [job_id]
    [view] = deliveries_of(new_uow, owner_id, endpoint_id)
    assert view.delivery.event_type == "job.failed"
    assert view.delivery.payload["data"]["job"]["status"] == "failed"
    assert view.delivery.payload["data"]["job"]["error"]["type"] == "/problems/job-failed"


def test_a_reminder_with_the_webhook_channel_fires_a_reminder_fired_event_once(
    new_uow, clock, config, engine, owner_id
):
    endpoint_id, _ = make_endpoint(new_uow, clock, config, owner_id, ["reminder.fired"])
    due = (T0 + timedelta(hours=1)).isoformat()
    with new_uow() as uow:
        task = tasks.create_task(uow=uow, clock=clock, owner_id=owner_id, data={"title": "Call back", "due_at": due})
        task_id = task.id
        by_webhook = reminders.create_reminder(
            uow=uow,
            clock=clock,
            engine=engine,
            owner_id=owner_id,
            task_id=task_id,
            data={"minutes_before_due": 10, "channels": ["in_app", "webhook"]},
        ).id
        in_app_only = reminders.create_reminder(
            uow=uow, clock=clock, engine=engine, owner_id=owner_id, task_id=task_id, data={"minutes_before_due": 5}
        ).id
    clock.advance(minutes=55)
    for reminder_id in (by_webhook, in_app_only, by_webhook):  # the second firing of one finds it fired
        with new_uow() as uow:
            reminders.fire(uow=uow, clock=clock, engine=engine, reminder_id=reminder_id)

    [view] = deliveries_of(new_uow, owner_id, endpoint_id)
    payload = view.delivery.payload
    assert (view.delivery.event_type, payload["type"]) == ("reminder.fired", "reminder.fired")
    assert payload["data"]["reminder"] == {
        "id": str(by_webhook),
        "remind_at": (T0 + timedelta(minutes=50)).isoformat().replace("+00:00", "Z"),
        "channels": ["in_app", "webhook"],
    }
    assert payload["data"]["task"]["id"] == str(task_id)
    assert payload["data"]["task"]["title"] == "Call back"
