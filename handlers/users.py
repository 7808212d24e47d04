"""Operations of the `users` tag: self-service profile, deletion and export; administrators'
account management (briefs 002, 003, 004)."""

from __future__ import annotations

import uuid
from typing import Any

from handlers.data_export import export_sections
from handlers.representations import audit_event_representation, user_representation
from handlers.responses import json_answer, no_content, now_timestamp
from server.integration.context import clock, principal, request_meta, unit_of_work
from services import users


def get_own_profile() -> tuple:
    """GET /api/v1/users/me."""
    return json_answer(user_representation(principal()))


def update_own_profile(body: dict[str, Any]) -> tuple:
    """PATCH /api/v1/users/me — display name only (the contract refuses other fields)."""
    return json_answer(
        user_representation(
            users.update_profile(uow=unit_of_work(), clock=clock(), user=principal(), data=body, meta=request_meta())
        )
    )


def delete_own_account() -> tuple:
    """DELETE /api/v1/users/me — the account and everything it owns."""
    caller = principal()
    users.delete_account(uow=unit_of_work(), clock=clock(), user=caller, actor=caller, meta=request_meta())
    return no_content()


def export_own_data() -> tuple:
    """GET /api/v1/users/me/export — everything stored about the caller."""
    caller = principal()
    users.record_export(uow=unit_of_work(), clock=clock(), user=caller, meta=request_meta())
    exported: dict[str, Any] = {"exported_at": now_timestamp(), "user": user_representation(caller)}
    exported.update((name, section(caller.id)) for name, section in export_sections().items())
    return json_answer(
        exported,
        headers={"Content-Disposition": 'attachment; filename="charter-export.json"', "Cache-Control": "no-store"},
    )


def list_own_audit_events(limit: int = 20, cursor: str | None = None) -> tuple:
    """GET /api/v1/users/me/audit-events."""
    result = users.audit_events(uow=unit_of_work(), limit=limit, cursor=cursor, user_id=principal().id)
    return json_answer(
        {"items": [audit_event_representation(e) for e in result.items], "next_cursor": result.next_cursor}
    )


def list_users(
    limit: int = 20,
    cursor: str | None = None,
    q: str | None = None,
    role: str | None = None,
    status: str | None = None,
) -> tuple:
    """GET /api/v1/users — administrators."""
    result = users.list_users(uow=unit_of_work(), limit=limit, cursor=cursor, q=q, role=role, status=status)
    return json_answer({"items": [user_representation(u) for u in result.items], "next_cursor": result.next_cursor})


def get_user(user_id: str) -> tuple:
    """GET /api/v1/users/{user_id} — administrators."""
    return json_answer(user_representation(users.get_user(uow=unit_of_work(), user_id=uuid.UUID(user_id))))


def update_user(user_id: str, body: dict[str, Any]) -> tuple:
    """PATCH /api/v1/users/{user_id} — administrators: role, status, display name."""
    admin = principal()
    user = users.administer(
        uow=unit_of_work(), clock=clock(), admin=admin, user_id=uuid.UUID(user_id), data=body, meta=request_meta()
    )
    return json_answer(user_representation(user))


def delete_user(user_id: str) -> tuple:
    """DELETE /api/v1/users/{user_id} — administrators."""
    admin = principal()
    users.administer_delete(
        uow=unit_of_work(), clock=clock(), admin=admin, user_id=uuid.UUID(user_id), meta=request_meta()
    )
    return no_content()
