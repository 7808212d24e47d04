"""Reads and writes of `reminders`. Every read of a user's reminders takes the owner; a
reminder leaves `pending` only through one conditional UPDATE, so it fires at most once."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import delete, exists, select, tuple_, update
from sqlalchemy.orm import Session, aliased

from persistence.database import affected_rows
from persistence.reminders.models import Reminder
from persistence.tasks.models import Task


class ReminderRepository:
    """`reminders` within the caller's unit of work."""

    def __init__(self, db: Session) -> None:
        self.db = db

    def add(self, reminder: Reminder) -> None:
        """Write a new reminder now (in the unit of work's transaction)."""
        self.db.add(reminder)
        self.db.flush()

    def get(self, *, owner_id: uuid.UUID, task_id: uuid.UUID, reminder_id: uuid.UUID) -> Reminder | None:
        """The owner's reminder of this task, or None."""
        return self.db.scalars(
            select(Reminder).where(
                Reminder.id == reminder_id, Reminder.task_id == task_id, Reminder.owner_id == owner_id
            )
        ).one_or_none()

    def get_any(self, reminder_id: uuid.UUID) -> Reminder | None:
        """The reminder, whoever owns it (the worker firing it), freshly read; or None."""
        return self.db.get(Reminder, reminder_id, populate_existing=True)

    def list_page(
        self,
        *,
        owner_id: uuid.UUID,
        task_id: uuid.UUID,
        limit: int,
        before: tuple[datetime, uuid.UUID] | None = None,
    ) -> list[Reminder]:
        """Up to `limit` of the task's reminders, newest first (created_at, id descending),
        after the position `before` (the previous page's last one)."""
        statement = select(Reminder).where(Reminder.owner_id == owner_id, Reminder.task_id == task_id)
        if before is not None:
            statement = statement.where(tuple_(Reminder.created_at, Reminder.id) < tuple_(*before))
        return list(self.db.scalars(statement.order_by(Reminder.created_at.desc(), Reminder.id.desc()).limit(limit)))

    def of_task(self, task_id: uuid.UUID) -> list[Reminder]:
        """Every reminder of the task, oldest first."""
        return list(
            self.db.scalars(
                select(Reminder).where(Reminder.task_id == task_id).order_by(Reminder.created_at, Reminder.id)
            )
        )

    def all_of_owner(self, owner_id: uuid.UUID) -> list[Reminder]:
        """Every reminder of the owner, oldest first (the data export)."""
        return list(
            self.db.scalars(
                select(Reminder).where(Reminder.owner_id == owner_id).order_by(Reminder.created_at, Reminder.id)
            )
        )

    def delete(self, reminder: Reminder) -> None:
        """Delete a reminder read through `get`."""
        self.db.execute(delete(Reminder).where(Reminder.id == reminder.id, Reminder.owner_id == reminder.owner_id))
        self.db.expunge(reminder)

    def move_relative(self, *, task_id: uuid.UUID, due_at: datetime | None) -> list[Reminder]:
        """Set `remind_at = due_at - minutes_before_due` of the task's pending relative reminders
        (None `due_at`: they stay where they were). Returns the ones moved."""
        if due_at is None:
            return []
        moved = []
        for reminder in self.db.scalars(
            select(Reminder).where(
                Reminder.task_id == task_id, Reminder.status == "pending", Reminder.minutes_before_due.is_not(None)
            )
        ):
            new_time = due_at - timedelta(minutes=reminder.minutes_before_due or 0)
            if new_time != reminder.remind_at:
                reminder.remind_at = new_time
                moved.append(reminder)
        self.db.flush()
        return moved

    def skip_pending(self, *, task_id: uuid.UUID) -> int:
        """pending → skipped for the task's reminders (the task was completed); how many."""
        result = self.db.execute(
            update(Reminder)
            .where(Reminder.task_id == task_id, Reminder.status == "pending")
            .values(status="skipped")
            .execution_options(synchronize_session=False)
        )
        return affected_rows(result)

    def claim(self, reminder_id: uuid.UUID, *, now: datetime) -> bool:
        """pending → fired, stamped `now`; only if it is pending, due (`remind_at` ≤ `now`) and
        its task is still open. One conditional UPDATE: of concurrent claimers exactly one
        matches the row (PostgreSQL re-checks the condition on the committed row after waiting
        for a concurrent writer; SQLite has one writer at a time)."""
        task_open = exists().where(Task.id == Reminder.task_id, Task.completed.is_(False))
        result = self.db.execute(
            update(Reminder)
            .where(Reminder.id == reminder_id, Reminder.status == "pending", Reminder.remind_at <= now, task_open)
            .values(status="fired", fired_at=now)
            .execution_options(synchronize_session=False)
        )
        return affected_rows(result) == 1

    def claim_due(self, *, now: datetime, limit: int) -> list[tuple[Reminder, Task]]:
        """Claim up to `limit` due pending reminders of open tasks at once (pending → fired,
        stamped `now`), earliest first, in one conditional UPDATE … RETURNING; returns each
        claimed reminder with its task. The outer WHERE repeats the conditions, so of
        concurrent claimers (sweeps in several workers, a reminder's own job) exactly one
        claims each row, as with `claim` (PostgreSQL re-checks them on the committed row)."""
        task_open = exists().where(Task.id == Reminder.task_id, Task.completed.is_(False))
        candidate = aliased(Reminder)  # not correlated to the UPDATE's row: the batch is chosen once
        due = (
            select(candidate.id)
            .where(
                candidate.status == "pending",
                candidate.remind_at <= now,
                exists().where(Task.id == candidate.task_id, Task.completed.is_(False)),
            )
            .order_by(candidate.remind_at)
            .limit(limit)
            .scalar_subquery()
        )
        claimed = list(
            self.db.scalars(
                update(Reminder)
                .where(Reminder.id.in_(due), Reminder.status == "pending", Reminder.remind_at <= now, task_open)
                .values(status="fired", fired_at=now)
                .returning(Reminder.id)
                .execution_options(synchronize_session=False)
            )
        )
        if not claimed:
            return []
        rows = self.db.execute(
            select(Reminder, Task)
            .join(Task, Task.id == Reminder.task_id)
            .where(Reminder.id.in_(claimed))
            .order_by(Reminder.remind_at, Reminder.id)
            .execution_options(populate_existing=True)
        )
        return [(reminder, task) for reminder, task in rows]

    def due(self, *, now: datetime, limit: int) -> list[uuid.UUID]:
        """Up to `limit` pending reminders whose time has come, earliest first (the sweep)."""
        return list(
            self.db.scalars(
                select(Reminder.id)
                .where(Reminder.status == "pending", Reminder.remind_at <= now)
                .order_by(Reminder.remind_at)
                .limit(limit)
            )
        )
