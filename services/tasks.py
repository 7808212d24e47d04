"""Todo tasks (brief 002): create, read, replace, complete, delete, and list by keyset cursor."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from persistence.models import Task
from persistence.tasks import TaskRepository
from services.cursors import decode_cursor, page
from services.errors import NotFound
from services.timestamps import parse_instant

DEFAULT_PRIORITY = "medium"


@dataclass(frozen=True)
class TaskPage:
    """One page of tasks and the cursor of the next page (None on the last page)."""

    items: list[Task]
    next_cursor: str | None


def create_task(*, db: Session, owner_id: uuid.UUID, data: dict[str, Any]) -> Task:
    """Create an open task from a validated `TaskCreate` body (title required)."""
    now = datetime.now(UTC)
    task = Task(
        id=uuid.uuid4(),
        owner_id=owner_id,
        title=data["title"],
        description=data.get("description"),
        completed=False,
        completed_at=None,
        priority=data.get("priority") or DEFAULT_PRIORITY,
        due_at=_parse_due_at(data.get("due_at")),
        created_at=now,
        updated_at=now,
    )
    TaskRepository(db).add(task)
    return task


def get_task(*, db: Session, owner_id: uuid.UUID, task_id: uuid.UUID) -> Task:
    """The owner's task. Raises NotFound for an unknown id and for another user's task alike."""
    task = TaskRepository(db).get(owner_id=owner_id, task_id=task_id)
    if task is None:
        raise NotFound("No task with this id exists for this user.")
    return task


def replace_task(*, db: Session, owner_id: uuid.UUID, task_id: uuid.UUID, data: dict[str, Any]) -> Task:
    """Set the whole state of a task from a validated `TaskReplace` body; omitted optional
    fields go back to their defaults. Raises NotFound."""
    task = get_task(db=db, owner_id=owner_id, task_id=task_id)
    now = datetime.now(UTC)
    task.title = data["title"]
    task.description = data.get("description")
    task.priority = data.get("priority") or DEFAULT_PRIORITY
    task.due_at = _parse_due_at(data.get("due_at"))
    _set_completed(task, bool(data.get("completed", False)), now)
    task.updated_at = now
    db.flush()
    return task


def set_completion(*, db: Session, owner_id: uuid.UUID, task_id: uuid.UUID, completed: bool) -> Task:
    """Mark a task done (stamping `completed_at`) or open again. Raises NotFound."""
    task = get_task(db=db, owner_id=owner_id, task_id=task_id)
    if task.completed != completed:
        now = datetime.now(UTC)
        _set_completed(task, completed, now)
        task.updated_at = now
        db.flush()
    return task


def delete_task(*, db: Session, owner_id: uuid.UUID, task_id: uuid.UUID) -> None:
    """Delete the owner's task. Raises NotFound."""
    repository = TaskRepository(db)
    repository.delete(get_task(db=db, owner_id=owner_id, task_id=task_id))


def list_tasks(*, db: Session, owner_id: uuid.UUID, limit: int, cursor: str | None, completed: bool | None) -> TaskPage:
    """A page of the owner's tasks, newest first.

    Args:
        limit: page size, 1..100 (the contract bounds it).
        cursor: `next_cursor` of the previous page, or None for the first page.
        completed: filter on completion, or None for all tasks.

    Raises:
        InvalidInput: the cursor was not made by this service.
    """
    before = decode_cursor(cursor) if cursor else None
    rows = TaskRepository(db).list_page(owner_id=owner_id, limit=limit + 1, before=before, completed=completed)
    items, next_cursor = page(rows, limit, lambda task: (task.created_at, task.id))
    return TaskPage(items=items, next_cursor=next_cursor)


def _set_completed(task: Task, completed: bool, now: datetime) -> None:
    if completed and not task.completed:
        task.completed_at = now
    elif not completed:
        task.completed_at = None
    task.completed = completed


def _parse_due_at(value: str | None) -> datetime | None:
    return parse_instant(value, pointer="/due_at") if value is not None else None
