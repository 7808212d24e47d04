"""Operations of the `notifications` tag, at ``/api/v1/users/me/notifications…`` (issue 14)."""

from __future__ import annotations

import uuid
from typing import Any

from handlers.responses import json_answer, timestamp
from server.integration.context import clock, principal, unit_of_work
from services import notifications


def notification_representation(notification: Any) -> dict[str, Any]:
    """The `Notification` schema, from a `Notification` or a Core row with its column names."""
    return {
        "id": str(notification.id),
        "type": notification.type,
        "title": notification.title,
        "body": notification.body,
        "task_id": str(notification.task_id) if notification.task_id else None,
        "reminder_id": str(notification.reminder_id) if notification.reminder_id else None,
        "created_at": timestamp(notification.created_at),
        "read_at": timestamp(notification.read_at),
    }


def _export_notifications(user_id: uuid.UUID) -> list[dict[str, Any]]:
    return [
        notification_representation(item)
        for item in notifications.exported_notifications(uow=unit_of_work(), owner_id=user_id)
    ]


EXPORT_SECTIONS = {"notifications": _export_notifications}
"""The caller's notifications in their data export (`handlers.data_export`)."""


def list_notifications(limit: int = 20, cursor: str | None = None, unread: bool | None = None) -> tuple:
    """GET /api/v1/users/me/notifications — newest first; `unread=true` for the unread ones."""
    page = notifications.list_notifications(
        uow=unit_of_work(), owner_id=principal().id, limit=limit, cursor=cursor, unread=unread
    )
    return json_answer({"items": [notification_representation(n) for n in page.items], "next_cursor": page.next_cursor})


def read_notification(notification_id: str) -> tuple:
    """POST /api/v1/users/me/notifications/{notification_id}/read — the notification, read."""
    notification = notifications.mark_read(
        uow=unit_of_work(), clock=clock(), owner_id=principal().id, notification_id=uuid.UUID(notification_id)
    )
    return json_answer(notification_representation(notification))


def read_all_notifications() -> tuple:
    """POST /api/v1/users/me/notifications/read-all — how many were marked read."""
    marked = notifications.mark_all_read(uow=unit_of_work(), clock=clock(), owner_id=principal().id)
    return json_answer({"marked": marked})
