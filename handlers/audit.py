"""Operations of the `audit` tag: the audit log for administrators (brief 004)."""

from __future__ import annotations

import uuid
from typing import Any

from handlers.representations import audit_event_representation
from handlers.responses import json_answer
from server.integration.context import unit_of_work
from services import audit, users
from services.timestamps import parse_instant


def list_audit_events(
    limit: int = 20,
    cursor: str | None = None,
    user_id: str | None = None,
    type: list[str] | None = None,
    occurred_after: str | None = None,
    occurred_before: str | None = None,
) -> tuple:
    """GET /api/v1/audit-events — administrators; filters by account, type and time."""
    result = users.audit_events(
        uow=unit_of_work(),
        limit=limit,
        cursor=cursor,
        user_id=uuid.UUID(user_id) if user_id else None,
        types=type or None,
        occurred_after=parse_instant(occurred_after, parameter="occurred_after") if occurred_after else None,
        occurred_before=parse_instant(occurred_before, parameter="occurred_before") if occurred_before else None,
    )
    return json_answer(
        {"items": [audit_event_representation(e) for e in result.items], "next_cursor": result.next_cursor}
    )


def _export_audit_events(user_id: uuid.UUID) -> list[dict[str, Any]]:
    return [audit_event_representation(event) for event in audit.involving(uow=unit_of_work(), user_id=user_id)]


EXPORT_SECTIONS = {"audit_events": _export_audit_events}
"""Every audit event the caller did or that was about them, in their data export."""
