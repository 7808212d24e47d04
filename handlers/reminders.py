"""Operations of the `reminders` tag, at ``/api/v1/users/{user_id}/tasks/{task_id}/reminders…`` (issue 14)."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from handlers.responses import json_answer, no_content, timestamp
from server.integration.context import clock, job_engine, principal, unit_of_work
from server.integration.idempotency import idempotent
from services import reminders

if TYPE_CHECKING:
    from persistence.reminders.models import Reminder


def reminder_representation(reminder: Reminder) -> dict[str, Any]:
    """The `Reminder` schema of the contract."""
    return {
        "id": str(reminder.id),
        "task_id": str(reminder.task_id),
        "remind_at": timestamp(reminder.remind_at),
        "minutes_before_due": reminder.minutes_before_due,
        "channels": list(reminder.channels),
        "status": reminder.status,
        "fired_at": timestamp(reminder.fired_at),
        "created_at": timestamp(reminder.created_at),
    }


def _export_reminders(user_id: uuid.UUID) -> list[dict[str, Any]]:
    return [
        reminder_representation(reminder)
        for reminder in reminders.exported_reminders(uow=unit_of_work(), owner_id=user_id)
    ]


EXPORT_SECTIONS = {"reminders": _export_reminders}
"""The caller's reminders in their data export (`handlers.data_export`)."""


def list_reminders(user_id: str, task_id: str, limit: int = 20, cursor: str | None = None) -> tuple:
    """GET …/tasks/{task_id}/reminders — a page of the task's reminders, newest first."""
    page = reminders.list_reminders(
        uow=unit_of_work(), owner_id=principal().id, task_id=uuid.UUID(task_id), limit=limit, cursor=cursor
    )
    return json_answer({"items": [reminder_representation(r) for r in page.items], "next_cursor": page.next_cursor})


@idempotent
def create_reminder(user_id: str, task_id: str, body: dict[str, Any]) -> tuple:
    """POST …/tasks/{task_id}/reminders — 201 with the reminder and its Location."""
    reminder = reminders.create_reminder(
        uow=unit_of_work(),
        clock=clock(),
        engine=job_engine(),
        owner_id=principal().id,
        task_id=uuid.UUID(task_id),
        data=body,
    )
    location = f"/api/v1/users/{user_id}/tasks/{task_id}/reminders/{reminder.id}"
    return json_answer(reminder_representation(reminder), 201, {"Location": location})


def delete_reminder(user_id: str, task_id: str, reminder_id: str) -> tuple:
    """DELETE …/reminders/{reminder_id} — 204."""
    reminders.delete_reminder(
        uow=unit_of_work(), owner_id=principal().id, task_id=uuid.UUID(task_id), reminder_id=uuid.UUID(reminder_id)
    )
    return no_content()
