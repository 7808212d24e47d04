"""Queries on todo tasks. Every read takes the owner and filters by it, so no caller can
reach another user's task by forgetting a check."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import delete, select, tuple_
from sqlalchemy.orm import Session

from persistence.models import Task


class TaskRepository:
    """Reads and writes `tasks` rows within the caller's unit of work."""

    def __init__(self, db: Session) -> None:
        self.db = db

    def add(self, task: Task) -> None:
        """Stage a new task."""
        self.db.add(task)
        self.db.flush()

    def get(self, *, owner_id: uuid.UUID, task_id: uuid.UUID) -> Task | None:
        """The owner's task with this id, or None (also when it belongs to someone else)."""
        return self.db.scalars(select(Task).where(Task.id == task_id, Task.owner_id == owner_id)).one_or_none()

    def list_page(
        self,
        *,
        owner_id: uuid.UUID,
        limit: int,
        before: tuple[datetime, uuid.UUID] | None = None,
        completed: bool | None = None,
    ) -> list[Task]:
        """Up to `limit` of the owner's tasks, newest first (created_at, id descending).

        Args:
            before: keyset position ``(created_at, id)`` of the last task of the previous page;
                only tasks strictly after it in this order are returned.
            completed: keep only done (True) or open (False) tasks; None keeps both.
        """
        statement = select(Task).where(Task.owner_id == owner_id)
        if completed is not None:
            statement = statement.where(Task.completed == completed)
        if before is not None:
            statement = statement.where(tuple_(Task.created_at, Task.id) < tuple_(*before))
        statement = statement.order_by(Task.created_at.desc(), Task.id.desc()).limit(limit)
        return list(self.db.scalars(statement))

    def delete(self, task: Task) -> None:
        """Delete a task that was read through `get`."""
        self.db.execute(delete(Task).where(Task.id == task.id, Task.owner_id == task.owner_id))
