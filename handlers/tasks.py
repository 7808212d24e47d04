"""Operations of the `tasks` tag, at the brief-002 paths ``/api/v1/users/{user_id}/tasks…``."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from handlers.etags import etag, expected_versions, matches_current
from handlers.responses import json_answer, no_content, not_modified, timestamp
from server.integration.context import clock, header, job_engine, principal, unit_of_work
from server.integration.idempotency import idempotent
from server.integration.problems import problem_body_for
from services import tasks

if TYPE_CHECKING:
    from persistence.tasks.models import Task
    from persistence.tasks.repository import ListedTask


BULK_STATUS = {tasks.BulkOutcome.CREATED: 201, tasks.BulkOutcome.CHANGED: 200, tasks.BulkOutcome.DELETED: 204}
"""The status of each outcome of a bulk operation (RFC 9110: created, done, no content)."""


def task_representation(task: Task | ListedTask) -> dict[str, Any]:
    """The `Task` schema of the contract."""
    return {
        "id": str(task.id),
        "title": task.title,
        "description": task.description,
        "completed": task.completed,
        "completed_at": timestamp(task.completed_at),
        "priority": task.priority,
        "due_at": timestamp(task.due_at),
        "recurrence": task.recurrence,
        "tags": task.tags,
        "version": task.version,
        "created_at": timestamp(task.created_at),
        "updated_at": timestamp(task.updated_at),
    }


def _export_tasks(user_id: uuid.UUID) -> list[dict[str, Any]]:
    return [task_representation(task) for task in tasks.exported_tasks(uow=unit_of_work(), owner_id=user_id)]


EXPORT_SECTIONS = {"tasks": _export_tasks}
"""The caller's tasks in their data export (`handlers.data_export`)."""


def _owner(user_id: str) -> uuid.UUID:
    """The owner the path names: the caller, as the operations' `x-access: owner` policy has
    checked before the handler ran (another user's id was answered 404)."""
    return principal().id


def _task_answer(task: Task, status: int = 200, headers: dict[str, str] | None = None) -> tuple:
    return json_answer(task_representation(task), status, {"ETag": etag(task.version), **(headers or {})})


def list_tasks(
    user_id: str,
    limit: int = 20,
    cursor: str | None = None,
    completed: bool | None = None,
    priority: list[str] | None = None,
    tag: list[str] | None = None,
    due_before: str | None = None,
    due_after: str | None = None,
    overdue: bool | None = None,
    created_after: str | None = None,
    q: str | None = None,
    sort: str | None = None,
) -> tuple:
    """GET /api/v1/users/{user_id}/tasks — filtered, searched, sorted, keyset-paginated."""
    query = tasks.TaskQuery(
        completed=completed,
        priorities=priority or (),
        tags=tag or (),
        due_before=due_before,
        due_after=due_after,
        overdue=overdue,
        created_after=created_after,
        q=q,
        sort=sort,
    )
    page = tasks.list_tasks(
        uow=unit_of_work(), clock=clock(), owner_id=_owner(user_id), limit=limit, cursor=cursor, query=query
    )
    return json_answer({"items": [task_representation(t) for t in page.items], "next_cursor": page.next_cursor})


@idempotent
def create_task(user_id: str, body: dict[str, Any]) -> tuple:
    """POST /api/v1/users/{user_id}/tasks — 201 with the task, its Location and ETag."""
    task = tasks.create_task(uow=unit_of_work(), clock=clock(), owner_id=_owner(user_id), data=body)
    return _task_answer(task, 201, {"Location": f"/api/v1/users/{user_id}/tasks/{task.id}"})


def get_task(user_id: str, task_id: str) -> tuple:
    """GET /api/v1/users/{user_id}/tasks/{task_id} — 304 when If-None-Match names its ETag."""
    task = tasks.get_task(uow=unit_of_work(), owner_id=_owner(user_id), task_id=uuid.UUID(task_id))
    if matches_current(header("If-None-Match"), task.version):
        return not_modified({"ETag": etag(task.version)})
    return _task_answer(task)


def replace_task(user_id: str, task_id: str, body: dict[str, Any]) -> tuple:
    """PUT /api/v1/users/{user_id}/tasks/{task_id} — full replacement, If-Match honoured."""
    task = tasks.replace_task(
        uow=unit_of_work(),
        clock=clock(),
        owner_id=_owner(user_id),
        task_id=uuid.UUID(task_id),
        data=body,
        expected_versions=_if_match(),
        engine=job_engine(),
    )
    return _task_answer(task)


def delete_task(user_id: str, task_id: str) -> tuple:
    """DELETE /api/v1/users/{user_id}/tasks/{task_id} — 204, If-Match honoured."""
    tasks.delete_task(
        uow=unit_of_work(),
        clock=clock(),
        owner_id=_owner(user_id),
        task_id=uuid.UUID(task_id),
        expected_versions=_if_match(),
    )
    return no_content()


def complete_task(user_id: str, task_id: str, body: dict[str, Any] | None = None) -> tuple:
    """PATCH /api/v1/users/{user_id}/tasks/{task_id}/complete — done by default, or reopen."""
    completed = True if body is None else bool(body.get("completed", True))
    task = tasks.set_completion(
        uow=unit_of_work(),
        clock=clock(),
        owner_id=_owner(user_id),
        task_id=uuid.UUID(task_id),
        completed=completed,
        expected_versions=_if_match(),
        engine=job_engine(),
    )
    return _task_answer(task)


@idempotent
def bulk_tasks(user_id: str, body: dict[str, Any]) -> tuple:
    """POST /api/v1/users/{user_id}/tasks/bulk — 207 with one result per operation."""
    results = tasks.bulk(
        uow=unit_of_work(), clock=clock(), owner_id=_owner(user_id), operations=body["operations"], engine=job_engine()
    )
    answer = []
    for result in results:
        item: dict[str, Any] = {"index": result.index, "op": result.op}
        if result.error is not None:
            problem = problem_body_for(result.error, instance=f"/api/v1/users/{user_id}/tasks/bulk")
            item |= {"status": problem["status"], "problem": problem}
        elif result.outcome is not None:
            item["status"] = BULK_STATUS[result.outcome]
        if result.task_id is not None:
            item["id"] = str(result.task_id)
        if result.task is not None and result.error is None:
            item["task"] = task_representation(result.task)
        answer.append(item)
    return json_answer({"results": answer}, 207)


def get_task_stats(user_id: str) -> tuple:
    """GET /api/v1/users/{user_id}/tasks/stats — aggregates computed by the database."""
    computed, now = tasks.stats(uow=unit_of_work(), clock=clock(), owner_id=_owner(user_id))
    return json_answer(
        {
            "total": computed.total,
            "completed": computed.completed,
            "open": computed.total - computed.completed,
            "by_priority": computed.by_priority,
            "overdue": computed.overdue,
            "due_next_7_days": computed.due_next_7_days,
            "completed_last_7_days": computed.completed_last_7_days,
            "completed_last_30_days": computed.completed_last_30_days,
            "completion_rate": round(computed.completed / computed.total, 4) if computed.total else 0,
            "computed_at": timestamp(now),
        }
    )


def list_tags(user_id: str, limit: int = 20, cursor: str | None = None) -> tuple:
    """GET /api/v1/users/{user_id}/tags — the user's tags with task counts."""
    items, next_cursor = tasks.tag_counts(uow=unit_of_work(), owner_id=_owner(user_id), limit=limit, cursor=cursor)
    return json_answer({"items": [{"tag": t, "task_count": n} for t, n in items], "next_cursor": next_cursor})


def _if_match() -> frozenset[int] | None:
    return expected_versions(header("If-Match"))
