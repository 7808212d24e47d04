"""Reminders of tasks (issue 14): set, list and delete them; fire each one once.

When a reminder fires (rules after the issue):

* **At its time, within seconds.** Creating (or moving) a reminder enqueues a `reminders.fire`
  job due at `remind_at` (`services.jobs.enqueue(at=…)`); each worker also sweeps for due
  pending reminders every `REMINDER_SWEEP_INTERVAL_SECONDS` (`sweep_due`), a backstop for a
  lost delivery; it claims due reminders in batches, one transaction each, until none is left,
  so a thousand reminders due at once still fire within seconds.
* **Exactly once.** Firing is one conditional UPDATE (`ReminderRepository.claim`: pending, due,
  task open → fired); of the job, a duplicate delivery and the sweeps, one wins and the others
  do nothing. The notification and the mail job are written in the claim's transaction, so
  they exist exactly when the claim committed.
* **Not when moved, deleted or done.** A deleted reminder has no row to claim; a moved one is
  not due at the old time (the old job finds it early and does nothing; a new job waits for
  the new time); completing the task skips its pending reminders, and the claim re-checks
  that the task is open. Reopening a task does not revive skipped reminders.
* **Channels.** `in_app` makes a notification (`GET /users/me/notifications`); `email` enqueues
  a `reminders.email` job that sends through SMTP with the job engine's retries (at least
  once: a worker that dies after the server accepted the mail sends it again); `webhook`
  records a `reminder.fired` event, delivered to the owner's webhook endpoints subscribed to it
  (`services.webhooks`; none subscribed: nothing is sent, as for any event).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from email.message import EmailMessage
from typing import Any

from persistence.notifications.models import Notification
from persistence.reminders.models import Reminder
from persistence.tasks.models import Task
from persistence.unit_of_work import UnitOfWork
from services import events, jobs
from services.clock import Clock
from services.cursors import decode_cursor, page
from services.errors import DomainError, InvalidInput, NotFound, ProblemType
from services.timestamps import parse_instant

CHANNELS = ("in_app", "email", "webhook")
"""Where a reminder is delivered; the contract lists the same values."""
MAX_REMINDERS_PER_TASK = 20
MAX_MINUTES_BEFORE_DUE = 525_600
"""A year, in minutes: the furthest before its due date a reminder may be set (the contract's maximum)."""
FIRE_KIND = "reminders.fire"
EMAIL_KIND = "reminders.email"


class ReminderNotSchedulable(DomainError):
    """The reminder cannot be set on this task now: a `minutes_before_due` reminder of a task
    without a due date, a time that has passed, a completed task, or too many reminders."""

    problem = ProblemType("/problems/reminder-not-schedulable", "Reminder cannot be scheduled", 422)


@dataclass(frozen=True)
class ReminderPage:
    """One page of reminders and the cursor of the next page (None on the last page)."""

    items: list[Reminder]
    next_cursor: str | None


def _task(uow: UnitOfWork, owner_id: uuid.UUID, task_id: uuid.UUID, *, lock: bool = False) -> Task:
    task = (uow.tasks.get_for_change if lock else uow.tasks.get)(owner_id=owner_id, task_id=task_id)
    if task is None:
        raise NotFound("No task with this id exists for this user.")
    return task


def create_reminder(
    *,
    uow: UnitOfWork,
    clock: Clock,
    engine: jobs.JobEngine | None,
    owner_id: uuid.UUID,
    task_id: uuid.UUID,
    data: dict[str, Any],
) -> Reminder:
    """Set a reminder on the owner's task from a validated `ReminderCreate` body: exactly one of
    `remind_at` (RFC 3339) or `minutes_before_due` (0 to 525600), and `channels` (default
    ``["in_app"]``, duplicates dropped). The task is locked, so a concurrent change of its due
    date or completion comes before or after, never in between.

    Args:
        engine: the job engine the `reminders.fire` job is enqueued on (None: only the sweep
            fires it).

    Raises:
        NotFound: no such task of the owner.
        InvalidInput: both or neither of `remind_at` and `minutes_before_due` (pointer ``""``),
            or an instant Python cannot represent.
        ReminderNotSchedulable: a completed task; `minutes_before_due` on a task without a due
            date; a time before now; more than 20 reminders on the task.
    """
    task = _task(uow, owner_id, task_id, lock=True)
    now = clock.now()
    has_instant, has_minutes = data.get("remind_at") is not None, data.get("minutes_before_due") is not None
    if has_instant == has_minutes:
        raise InvalidInput("Give exactly one of remind_at and minutes_before_due.", pointer="")
    if task.completed:
        raise ReminderNotSchedulable("The task is completed: there is nothing left to remind of.")
    minutes: int | None = None
    if has_minutes:
        minutes = int(data["minutes_before_due"])
        if task.due_at is None:
            raise ReminderNotSchedulable("The task has no due date: minutes_before_due counts back from it.")
        remind_at = task.due_at - timedelta(minutes=minutes)
    else:
        remind_at = parse_instant(data["remind_at"], pointer="/remind_at")
    if remind_at < now:
        raise ReminderNotSchedulable(f"The reminder's time ({remind_at.isoformat()}) has passed.")
    if len(uow.reminders.of_task(task.id)) >= MAX_REMINDERS_PER_TASK:
        raise ReminderNotSchedulable(f"A task has at most {MAX_REMINDERS_PER_TASK} reminders.")
    channels = list(dict.fromkeys(data.get("channels") or ["in_app"]))
    reminder = Reminder(
        id=uuid.uuid4(),
        owner_id=owner_id,
        task_id=task.id,
        remind_at=remind_at,
        minutes_before_due=minutes,
        channels=channels,
        status="pending",
        fired_at=None,
        created_at=now,
    )
    uow.reminders.add(reminder)
    schedule(uow=uow, clock=clock, engine=engine, reminders=[reminder])
    return reminder


def schedule(*, uow: UnitOfWork, clock: Clock, engine: jobs.JobEngine | None, reminders: Sequence[Reminder]) -> None:
    """Enqueue a `reminders.fire` job due at each reminder's `remind_at` (none without `engine`:
    the sweep still fires them)."""
    if engine is None:
        return
    for reminder in reminders:
        jobs.enqueue(
            uow=uow,
            clock=clock,
            engine=engine,
            kind=FIRE_KIND,
            owner_id=reminder.owner_id,
            subject=jobs.Subject("reminder", str(reminder.id)),
            payload={"reminder_id": str(reminder.id)},
            at=reminder.remind_at,
        )


def list_reminders(
    *, uow: UnitOfWork, owner_id: uuid.UUID, task_id: uuid.UUID, limit: int, cursor: str | None = None
) -> ReminderPage:
    """A page of the task's reminders, newest first.

    Raises:
        NotFound: no such task of the owner.
        InvalidInput: a cursor this list did not make.
    """
    _task(uow, owner_id, task_id)
    rows = uow.reminders.list_page(
        owner_id=owner_id, task_id=task_id, limit=limit + 1, before=decode_cursor(cursor) if cursor else None
    )
    items, next_cursor = page(rows, limit, lambda reminder: (reminder.created_at, reminder.id))
    return ReminderPage(items=items, next_cursor=next_cursor)


def delete_reminder(*, uow: UnitOfWork, owner_id: uuid.UUID, task_id: uuid.UUID, reminder_id: uuid.UUID) -> None:
    """Delete the reminder (a pending one then never fires; its job finds no row).

    Raises:
        NotFound: no such reminder of the owner's task.
    """
    reminder = uow.reminders.get(owner_id=owner_id, task_id=task_id, reminder_id=reminder_id)
    if reminder is None:
        raise NotFound("No reminder with this id exists on this task.")
    uow.reminders.delete(reminder)


def exported_reminders(*, uow: UnitOfWork, owner_id: uuid.UUID) -> list[Reminder]:
    """Every reminder of the owner, oldest first: their data export's section."""
    return uow.reminders.all_of_owner(owner_id)


# --- what the tasks service calls --------------------------------------------------------------


def due_date_changed(*, uow: UnitOfWork, clock: Clock, engine: jobs.JobEngine | None, task: Task) -> None:
    """Move the task's pending `minutes_before_due` reminders to its new due date and schedule
    them there (a task whose due date was removed keeps them where they were)."""
    moved = uow.reminders.move_relative(task_id=task.id, due_at=task.due_at)
    schedule(uow=uow, clock=clock, engine=engine, reminders=moved)


def task_completed(*, uow: UnitOfWork, task: Task) -> None:
    """Skip the task's pending reminders: they never fire, even if the task is reopened."""
    uow.reminders.skip_pending(task_id=task.id)


def copy_to_next(
    *, uow: UnitOfWork, clock: Clock, engine: jobs.JobEngine | None, done: Task, following: Task
) -> list[Reminder]:
    """Give the next occurrence of a recurring task the reminders of the one completed, shifted
    by the distance between their due dates (a `minutes_before_due` one lands at the same
    distance before the new due date), pending and scheduled."""
    if done.due_at is None or following.due_at is None:
        return []
    shift = following.due_at - done.due_at
    now = clock.now()
    copies = [
        Reminder(
            id=uuid.uuid4(),
            owner_id=following.owner_id,
            task_id=following.id,
            remind_at=reminder.remind_at + shift,
            minutes_before_due=reminder.minutes_before_due,
            channels=list(reminder.channels),
            status="pending",
            fired_at=None,
            created_at=now,
        )
        for reminder in uow.reminders.of_task(done.id)
    ]
    for copy in copies:
        uow.reminders.add(copy)
    schedule(uow=uow, clock=clock, engine=engine, reminders=copies)
    return copies


# --- firing (the worker) -----------------------------------------------------------------------


def fire(*, uow: UnitOfWork, clock: Clock, engine: jobs.JobEngine | None, reminder_id: uuid.UUID) -> bool:
    """Fire the reminder if it is still pending, due and its task open: claim it (one
    conditional UPDATE), then, in the same unit of work, make its `in_app` notification, record
    its `reminder.fired` event for the owner's webhook endpoints (`webhook` channel) and enqueue
    its `reminders.email` job. True when this call fired it; False when it was not
    due yet, already fired or skipped, deleted, or its task completed or deleted."""
    now = clock.now()
    if not uow.reminders.claim(reminder_id, now=now):
        return False
    reminder = uow.reminders.get_any(reminder_id)
    task = uow.tasks.get(owner_id=reminder.owner_id, task_id=reminder.task_id) if reminder else None
    if reminder is None or task is None:  # a concurrent delete; its transaction removes the claim too
        return False
    _deliver(uow=uow, clock=clock, engine=engine, reminder=reminder, task=task)
    return True


def _deliver(*, uow: UnitOfWork, clock: Clock, engine: jobs.JobEngine | None, reminder: Reminder, task: Task) -> None:
    """What a fired reminder does, on each of its channels, in the claim's unit of work."""
    now = clock.now()
    if "in_app" in reminder.channels:
        uow.notifications.add(
            Notification(
                id=uuid.uuid4(),
                owner_id=reminder.owner_id,
                type="task_reminder",
                title=f"Reminder: {task.title}"[:300],
                body=_due_text(task),
                task_id=task.id,
                reminder_id=reminder.id,
                created_at=now,
                read_at=None,
            )
        )
    if "webhook" in reminder.channels:
        events.emit(
            uow,
            clock=clock,
            owner_id=reminder.owner_id,
            type=events.EventType.REMINDER_FIRED,
            data={
                "reminder": {
                    "id": str(reminder.id),
                    "remind_at": events.timestamp(reminder.remind_at),
                    "channels": list(reminder.channels),
                },
                "task": events.task_data(task),
            },
        )
    if "email" in reminder.channels and engine is not None:
        jobs.enqueue(
            uow=uow,
            clock=clock,
            engine=engine,
            kind=EMAIL_KIND,
            owner_id=reminder.owner_id,
            subject=jobs.Subject("reminder", str(reminder.id)),
            payload={"reminder_id": str(reminder.id)},
        )


def _due_text(task: Task) -> str:
    return f"Due {task.due_at.isoformat()}." if task.due_at else "No due date."


SWEEP_BATCH = 200
"""Reminders the sweep claims per transaction."""

SWEEP_ROUNDS = 50
"""Batches one sweep call fires at most before it yields to the next interval."""


def sweep_due(
    *,
    unit_of_work: Callable[[], UnitOfWork],
    clock: Clock,
    engine: jobs.JobEngine | None,
    batch: int = SWEEP_BATCH,
    rounds: int = SWEEP_ROUNDS,
) -> int:
    """Fire every due pending reminder, `batch` at a time: each batch is claimed by one
    conditional UPDATE and its notifications, events and mail jobs are written in the same
    transaction (`ReminderRepository.claim_due`); a full batch is followed at once by another,
    at most `rounds` of them. This is what keeps reminders on time when many fall due together
    (issue 14: within 5 seconds; `make bench`, reminder lateness), and the backstop for a lost
    `reminders.fire` delivery; it races the jobs harmlessly: the claim decides. Returns how
    many this call fired."""
    fired = 0
    for _round in range(rounds):
        with unit_of_work() as uow:
            claimed = uow.reminders.claim_due(now=clock.now(), limit=batch)
            for reminder, task in claimed:
                _deliver(uow=uow, clock=clock, engine=engine, reminder=reminder, task=task)
        fired += len(claimed)
        if len(claimed) < batch:
            break
    return fired


def reminder_message(*, to: str, task: Task, reminder: Reminder) -> EmailMessage:
    """The reminder mail: the task's title and due date."""
    message = EmailMessage()
    message["To"] = to
    message["Subject"] = f"Reminder: {task.title}"[:200]
    message.set_content(
        f"This is the reminder you set for your Charter task\n\n    {task.title}\n\n"
        f"{_due_text(task)} Reminder time: {reminder.remind_at.isoformat()}.\n"
    )
    return message


def send_email(*, uow: UnitOfWork, engine: jobs.JobEngine, reminder_id: uuid.UUID) -> bool:
    """Mail a fired reminder to its owner now (`engine.mail`); False when the reminder, its task
    or its owner is gone (nothing to send). Errors of the mail server propagate: the job's
    retry policy tries again.

    Raises:
        RuntimeError: the engine has no mail transport (a wiring bug).
    """
    if engine.mail is None:
        raise RuntimeError("the job engine has no mail transport")
    reminder = uow.reminders.get_any(reminder_id)
    if reminder is None or reminder.status != "fired":
        return False
    task = uow.tasks.get(owner_id=reminder.owner_id, task_id=reminder.task_id)
    user = uow.users.get(reminder.owner_id)
    if task is None or user is None:
        return False
    engine.mail.deliver(reminder_message(to=user.email, task=task, reminder=reminder))
    return True
