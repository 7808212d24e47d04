"""The rules of reminders, with a frozen clock and the real job kinds over a recording queue:
a reminder fires at its time and not before, exactly once (also under concurrent claimers);
moved, deleted, completed-before and deleted-task reminders do not fire; bad input changes
nothing; an email reminder is mailed with the job engine's retries."""

from __future__ import annotations

import smtplib
import threading
import uuid

import pytest

from services import jobs, reminders, tasks
from services.errors import InvalidInput, NotFound
from services.reminders import ReminderNotSchedulable
from tests.reminders.conftest import (
    T0,
    at,
    fire_jobs,
    minutes,
    new_reminder,
    new_task,
    notifications_of,
    reminder_row,
)


def fire_job_ids(new_uow, queue) -> list[uuid.UUID]:
    ids = []
    for job_id, _ in queue.deliveries:
        with new_uow() as uow:
            job = uow.jobs.get(job_id)
        if job is not None and job.kind == reminders.FIRE_KIND:
            ids.append(job_id)
    return ids


def test_a_reminder_is_scheduled_for_its_time_and_fires_then_exactly_once(new_uow, clock, engine, queue, owner):
    task_id = new_task(new_uow, clock, owner, due_at=at(T0 + minutes(60)))
    reminder_id = new_reminder(new_uow, clock, engine, owner, task_id, minutes_before_due=15)

    [job_id] = fire_job_ids(new_uow, queue)
    assert queue.of(job_id) == [T0 + minutes(45)]  # delivered for its time, not now
    with new_uow() as uow:
        assert uow.jobs.get(job_id).next_attempt_at == T0 + minutes(45)

    clock.advance(minutes=44, seconds=59)  # a delivery that comes early is not claimed
    early = jobs.run(engine=engine, unit_of_work=new_uow, clock=clock, job_id=job_id, worker_id="w")
    assert early.outcome is jobs.Outcome.NOT_CLAIMED
    assert reminders.sweep_due(unit_of_work=new_uow, clock=clock, engine=engine) == 0
    assert notifications_of(new_uow, owner) == []

    clock.advance(seconds=1)
    report = jobs.run(engine=engine, unit_of_work=new_uow, clock=clock, job_id=job_id, worker_id="w")
    assert report.outcome is jobs.Outcome.SUCCEEDED
    with new_uow() as uow:
        assert uow.jobs.get(job_id).result == {"fired": True}
    row = reminder_row(new_uow, reminder_id)
    assert (row.status, row.fired_at) == ("fired", T0 + minutes(45))

    clock.advance(minutes=5)  # later sweeps and a duplicate firing find nothing more to do
    assert reminders.sweep_due(unit_of_work=new_uow, clock=clock, engine=engine) == 0
    with new_uow() as uow:
        assert reminders.fire(uow=uow, clock=clock, engine=engine, reminder_id=reminder_id) is False
    [notification] = notifications_of(new_uow, owner)
    assert (notification.type, notification.task_id, notification.reminder_id, notification.read_at) == (
        "task_reminder",
        task_id,
        reminder_id,
        None,
    )
    assert notification.title == "Reminder: water the plants"


def test_the_sweep_fires_a_reminder_whose_delivery_was_lost(new_uow, clock, engine, queue, owner):
    task_id = new_task(new_uow, clock, owner)
    reminder_id = new_reminder(new_uow, clock, engine, owner, task_id, remind_at=at(T0 + minutes(1)))
    queue.deliveries.clear()  # the queue lost it
    clock.advance(minutes=1, seconds=2)
    assert reminders.sweep_due(unit_of_work=new_uow, clock=clock, engine=engine) == 1
    assert reminder_row(new_uow, reminder_id).fired_at == clock.now()
    assert len(notifications_of(new_uow, owner)) == 1


def test_a_reminder_moved_with_its_tasks_due_date_fires_at_the_new_time_only(new_uow, clock, engine, queue, owner):
    task_id = new_task(new_uow, clock, owner, due_at=at(T0 + minutes(60)))
    reminder_id = new_reminder(new_uow, clock, engine, owner, task_id, minutes_before_due=30)
    fixed_id = new_reminder(new_uow, clock, engine, owner, task_id, remind_at=at(T0 + minutes(50)))
    with new_uow() as uow:
        tasks.replace_task(
            uow=uow,
            clock=clock,
            owner_id=owner.id,
            task_id=task_id,
            data={"title": "water the plants", "due_at": at(T0 + minutes(120))},
            engine=engine,
        )
    assert reminder_row(new_uow, reminder_id).remind_at == T0 + minutes(90)
    assert reminder_row(new_uow, fixed_id).remind_at == T0 + minutes(50)  # a fixed time stays
    assert sorted(at for _, at in queue.deliveries) == [T0 + minutes(30), T0 + minutes(50), T0 + minutes(90)]

    clock.advance(minutes=30)  # the old time: the old job runs and does nothing
    outcomes = [report.outcome for report in fire_jobs(new_uow, clock, engine)]
    assert outcomes == [jobs.Outcome.SUCCEEDED, jobs.Outcome.NOT_CLAIMED, jobs.Outcome.NOT_CLAIMED]
    with new_uow() as uow:
        assert uow.jobs.get(queue.deliveries[0][0]).result == {"fired": False}
    assert reminders.sweep_due(unit_of_work=new_uow, clock=clock, engine=engine) == 0
    assert reminder_row(new_uow, reminder_id).status == "pending"
    assert notifications_of(new_uow, owner) == []

    clock.advance(minutes=60)  # the new time
    fire_jobs(new_uow, clock, engine)
    assert (reminder_row(new_uow, reminder_id).status, reminder_row(new_uow, fixed_id).status) == ("fired", "fired")
    assert sorted(n.reminder_id for n in notifications_of(new_uow, owner)) == sorted([reminder_id, fixed_id])


def test_a_deleted_reminder_does_not_fire(new_uow, clock, engine, queue, owner):
    task_id = new_task(new_uow, clock, owner)
    reminder_id = new_reminder(new_uow, clock, engine, owner, task_id, remind_at=at(T0 + minutes(5)))
    with new_uow() as uow:
        reminders.delete_reminder(uow=uow, owner_id=owner.id, task_id=task_id, reminder_id=reminder_id)
    clock.advance(minutes=5)
    [report] = fire_jobs(new_uow, clock, engine)
    assert report.outcome is jobs.Outcome.SUCCEEDED
    assert reminders.sweep_due(unit_of_work=new_uow, clock=clock, engine=engine) == 0
    assert notifications_of(new_uow, owner) == []
    with new_uow() as uow, pytest.raises(NotFound):
        reminders.delete_reminder(uow=uow, owner_id=owner.id, task_id=task_id, reminder_id=reminder_id)


def test_a_task_completed_before_its_reminder_skips_it_even_when_reopened(new_uow, clock, engine, queue, owner):
    task_id = new_task(new_uow, clock, owner)
    reminder_id = new_reminder(new_uow, clock, engine, owner, task_id, remind_at=at(T0 + minutes(5)))
    with new_uow() as uow:
        tasks.set_completion(uow=uow, clock=clock, owner_id=owner.id, task_id=task_id, completed=True, engine=engine)
    assert reminder_row(new_uow, reminder_id).status == "skipped"
    with new_uow() as uow:
        tasks.set_completion(uow=uow, clock=clock, owner_id=owner.id, task_id=task_id, completed=False, engine=engine)
    clock.advance(minutes=5)
    fire_jobs(new_uow, clock, engine)
    assert reminders.sweep_due(unit_of_work=new_uow, clock=clock, engine=engine) == 0
    assert (reminder_row(new_uow, reminder_id).status, notifications_of(new_uow, owner)) == ("skipped", [])


def test_a_deleted_tasks_reminders_go_with_it(new_uow, clock, engine, queue, owner):
    task_id = new_task(new_uow, clock, owner)
    reminder_id = new_reminder(new_uow, clock, engine, owner, task_id, remind_at=at(T0 + minutes(5)))
    with new_uow() as uow:
        tasks.delete_task(uow=uow, clock=clock, owner_id=owner.id, task_id=task_id)
    clock.advance(minutes=5)
    fire_jobs(new_uow, clock, engine)
    assert reminders.sweep_due(unit_of_work=new_uow, clock=clock, engine=engine) == 0
    assert (reminder_row(new_uow, reminder_id), notifications_of(new_uow, owner)) == (None, [])


@pytest.mark.parametrize(
    ("task_fields", "data", "error", "words"),
    [
        ({}, {"minutes_before_due": 10}, ReminderNotSchedulable, "no due date"),
        ({}, {"remind_at": at(T0 - minutes(1))}, ReminderNotSchedulable, "has passed"),
        ({"due_at": at(T0 + minutes(5))}, {"minutes_before_due": 6}, ReminderNotSchedulable, "has passed"),
        ({}, {}, InvalidInput, "exactly one"),
        ({"due_at": at(T0 + minutes(60))}, {"minutes_before_due": 5, "remind_at": at(T0)}, InvalidInput, "exactly one"),
    ],
)
def test_a_reminder_that_cannot_be_scheduled_is_refused_and_nothing_is_stored(
    new_uow, clock, engine, queue, owner, task_fields, data, error, words
):
    task_id = new_task(new_uow, clock, owner, **task_fields)
    with new_uow() as uow, pytest.raises(error) as raised:
        reminders.create_reminder(uow=uow, clock=clock, engine=engine, owner_id=owner.id, task_id=task_id, data=data)
    assert words in raised.value.detail
    with new_uow() as uow:
        assert uow.reminders.of_task(task_id) == []
    assert queue.deliveries == []


def test_a_completed_task_and_a_twenty_first_reminder_are_refused(new_uow, clock, engine, owner):
    task_id = new_task(new_uow, clock, owner)
    for n in range(reminders.MAX_REMINDERS_PER_TASK):
        new_reminder(new_uow, clock, engine, owner, task_id, remind_at=at(T0 + minutes(n + 1)))
    with new_uow() as uow, pytest.raises(ReminderNotSchedulable, match="at most 20"):
        reminders.create_reminder(
            uow=uow, clock=clock, engine=engine, owner_id=owner.id, task_id=task_id, data={"remind_at": at(T0)}
        )
    done_id = new_task(new_uow, clock, owner)
    with new_uow() as uow:
        tasks.set_completion(uow=uow, clock=clock, owner_id=owner.id, task_id=done_id, completed=True)
    with new_uow() as uow, pytest.raises(ReminderNotSchedulable, match="completed"):
        reminders.create_reminder(
            uow=uow, clock=clock, engine=engine, owner_id=owner.id, task_id=done_id, data={"remind_at": at(T0)}
        )


def test_two_concurrent_claimers_fire_each_reminder_exactly_once(new_uow, clock, engine, owner):
    """Two threads, each with units of work of its own, fire the same 30 due reminders at once
    (a scheduled job racing a sweep in another worker): every reminder fires once in all, and
    makes one notification."""
    task_id = new_task(new_uow, clock, owner)
    made = [new_reminder(new_uow, clock, None, owner, task_id, remind_at=at(T0 + minutes(1))) for _ in range(20)]
    other_task = new_task(new_uow, clock, owner)
    made += [new_reminder(new_uow, clock, None, owner, other_task, remind_at=at(T0 + minutes(1))) for _ in range(10)]
    clock.advance(minutes=1)
    start = threading.Barrier(2, timeout=30)
    fired: list[list[uuid.UUID]] = [[], []]
    failures: list[BaseException] = []

    def claimer(index: int) -> None:
        try:
            start.wait()
            for reminder_id in made if index == 0 else list(reversed(made)):
                with new_uow() as uow:
                    if reminders.fire(uow=uow, clock=clock, engine=None, reminder_id=reminder_id):
                        fired[index].append(reminder_id)
        except BaseException as error:  # reported below, not lost in the thread
            failures.append(error)

    threads = [threading.Thread(target=claimer, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not failures, failures
    assert not any(thread.is_alive() for thread in threads)
    assert len(fired[0]) + len(fired[1]) == 30
    assert sorted(fired[0] + fired[1]) == sorted(made)
    notes = notifications_of(new_uow, owner)
    assert len(notes) == 30
    assert sorted(n.reminder_id for n in notes) == sorted(made)


def test_sweeps_fire_many_due_reminders_in_batches_each_exactly_once(new_uow, clock, owner):
    """250 reminders due at once (issue 14: on time even when many fall due together; `make
    bench` measures it with 1,000): two sweeps racing in two threads, 40 per batch, fire each
    exactly once between them, each with one notification; a sweep limited to 2 rounds fires
    2 batches and leaves the rest to the next interval."""
    made = []
    for _task in range(25):
        task_id = new_task(new_uow, clock, owner)
        made += [new_reminder(new_uow, clock, None, owner, task_id, remind_at=at(T0 + minutes(1))) for _ in range(10)]
    clock.advance(minutes=1)
    with new_uow() as uow:  # the database may hold earlier tests' due reminders too
        due_now = len(uow.reminders.due(now=clock.now(), limit=10_000))
    assert due_now >= 250
    assert reminders.sweep_due(unit_of_work=new_uow, clock=clock, engine=None, batch=40, rounds=2) == 80

    start = threading.Barrier(2, timeout=30)
    counts: list[int] = []
    failures: list[BaseException] = []

    def sweeper() -> None:
        try:
            start.wait()
            counts.append(reminders.sweep_due(unit_of_work=new_uow, clock=clock, engine=None, batch=40))
        except BaseException as error:  # reported below, not lost in the thread
            failures.append(error)

    threads = [threading.Thread(target=sweeper) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not failures, failures
    assert not any(thread.is_alive() for thread in threads)
    assert sum(counts) == due_now - 80
    notes = notifications_of(new_uow, owner)
    assert sorted(n.reminder_id for n in notes) == sorted(made)  # one each, none twice
    assert {reminder_row(new_uow, reminder_id).status for reminder_id in made} == {"fired"}
    assert reminders.sweep_due(unit_of_work=new_uow, clock=clock, engine=None) == 0


def test_an_email_reminder_is_mailed_by_a_job_and_retried_while_the_server_fails(
    new_uow, clock, engine, queue, mailer, owner, account
):
    task_id = new_task(new_uow, clock, owner, due_at=at(T0 + minutes(30)))
    reminder_id = new_reminder(new_uow, clock, engine, owner, task_id, minutes_before_due=10, channels=["email"])
    clock.advance(minutes=20)
    fire_jobs(new_uow, clock, engine)
    assert notifications_of(new_uow, owner) == []  # email only: no in-app notification
    [email_job] = [job_id for job_id, _ in queue.deliveries if job_id not in fire_job_ids(new_uow, queue)]

    failures = [smtplib.SMTPServerDisconnected("gone")]

    def deliver(message):
        if failures:
            raise failures.pop()
        mailer.sent.append(message)

    engine.mail = type("FlakyMailer", (), {"deliver": staticmethod(deliver)})()
    first = jobs.run(engine=engine, unit_of_work=new_uow, clock=clock, job_id=email_job, worker_id="w")
    assert first.outcome is jobs.Outcome.RETRYING
    assert mailer.sent == []
    clock.advance(seconds=30)  # the kind's first backoff (no jitter)
    second = jobs.run(engine=engine, unit_of_work=new_uow, clock=clock, job_id=email_job, worker_id="w")
    assert second.outcome is jobs.Outcome.SUCCEEDED
    [message] = mailer.sent
    assert (message["To"], message["Subject"]) == (account.email, "Reminder: water the plants")
    assert reminder_row(new_uow, reminder_id).status == "fired"


def test_reminders_of_another_users_task_are_not_found(new_uow, clock, engine, owner, other_account):
    task_id = new_task(new_uow, clock, owner)
    stranger = uuid.UUID(other_account.id)
    with new_uow() as uow, pytest.raises(NotFound):
        reminders.create_reminder(
            uow=uow, clock=clock, engine=engine, owner_id=stranger, task_id=task_id, data={"remind_at": at(T0)}
        )
    with new_uow() as uow, pytest.raises(NotFound):
        reminders.list_reminders(uow=uow, owner_id=stranger, task_id=task_id, limit=10)
