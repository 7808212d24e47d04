"""Operations of the `tasks` tag, at the brief-002 paths ``/api/v1/users/{user_id}/tasks…``."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from handlers.responses import json_answer, no_content, timestamp
from server.context import db, principal
from services import tasks
from services.errors import NotFound

if TYPE_CHECKING:
    from persistence.models import Task


def task_representation(task: Task) -> dict[str, Any]:
    """The `Task` schema of the contract."""
    return {
        "id": str(task.id),
        "title": task.title,
        "description": task.description,
        "completed": task.completed,
        "completed_at": timestamp(task.completed_at),
        "priority": task.priority,
        "due_at": timestamp(task.due_at),
        "created_at": timestamp(task.created_at),
        "updated_at": timestamp(task.updated_at),
    }


def _owner(user_id: str) -> uuid.UUID:
    """The caller's id, if `user_id` names the caller; another user's id is a 404, not a 403,
    so the answer does not reveal that the user exists (API_STYLE, Security)."""
    caller = principal().id
    if uuid.UUID(user_id) != caller:
        raise NotFound("No such user, or not yours.")
    return caller


def list_tasks(user_id: str, limit: int = 20, cursor: str | None = None, completed: bool | None = None) -> tuple:
    """GET /api/v1/users/{user_id}/tasks — a page of tasks, newest first."""
    page = tasks.list_tasks(db=db(), owner_id=_owner(user_id), limit=limit, cursor=cursor, completed=completed)
    return json_answer({"items": [task_representation(t) for t in page.items], "next_cursor": page.next_cursor})


def create_task(user_id: str, body: dict[str, Any]) -> tuple:
    """POST /api/v1/users/{user_id}/tasks — 201 with the task and its Location."""
    task = tasks.create_task(db=db(), owner_id=_owner(user_id), data=body)
    return json_answer(task_representation(task), 201, {"Location": f"/api/v1/users/{user_id}/tasks/{task.id}"})


def get_task(user_id: str, task_id: str) -> tuple:
    """GET /api/v1/users/{user_id}/tasks/{task_id}."""
    return json_answer(
        task_representation(tasks.get_task(db=db(), owner_id=_owner(user_id), task_id=uuid.UUID(task_id)))
    )


def replace_task(user_id: str, task_id: str, body: dict[str, Any]) -> tuple:
    """PUT /api/v1/users/{user_id}/tasks/{task_id} — full replacement."""
    task = tasks.replace_task(db=db(), owner_id=_owner(user_id), task_id=uuid.UUID(task_id), data=body)
    return json_answer(task_representation(task))


def delete_task(user_id: str, task_id: str) -> tuple:
    """DELETE /api/v1/users/{user_id}/tasks/{task_id} — 204."""
    tasks.delete_task(db=db(), owner_id=_owner(user_id), task_id=uuid.UUID(task_id))
    return no_content()


def complete_task(user_id: str, task_id: str, body: dict[str, Any] | None = None) -> tuple:
    """PATCH /api/v1/users/{user_id}/tasks/{task_id}/complete — done by default, or reopen."""
    completed = True if body is None else bool(body.get("completed", True))
    task = tasks.set_completion(db=db(), owner_id=_owner(user_id), task_id=uuid.UUID(task_id), completed=completed)
    return json_answer(task_representation(task))
