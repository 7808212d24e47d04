"""Operations of the `api-keys` tag: the caller's API keys (issue 16). Every operation works on
the caller's own keys (another user's is 404) and needs an access token: keys never manage keys."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from handlers.responses import json_answer, no_content, timestamp
from server.integration.context import clock, principal, request_meta, unit_of_work
from services import api_keys
from services.timestamps import parse_instant

if TYPE_CHECKING:
    from persistence.api_keys.models import ApiKey


def api_key_representation(key: ApiKey) -> dict[str, Any]:
    """The `ApiKey` schema (never the key's secret nor its hash)."""
    return {
        "id": str(key.id),
        "name": key.name,
        "prefix": key.prefix,
        "scopes": list(key.scopes),
        "created_at": timestamp(key.created_at),
        "expires_at": timestamp(key.expires_at),
        "last_used_at": timestamp(key.last_used_at),
    }


def _export_keys(user_id: uuid.UUID) -> list[dict[str, Any]]:
    return [
        {**api_key_representation(key), "revoked_at": timestamp(key.revoked_at)}
        for key in api_keys.exported_keys(uow=unit_of_work(), owner_id=user_id)
    ]


EXPORT_SECTIONS = {"api_keys": _export_keys}
"""The caller's API keys, revoked ones included, in their data export (`handlers.data_export`);
never a key or its hash."""


def create_api_key(body: dict[str, Any]) -> tuple:
    """POST /api/v1/api-keys — 201 with the key (the only time it is shown)."""
    expires_at = body.get("expires_at")
    created = api_keys.create_key(
        uow=unit_of_work(),
        clock=clock(),
        owner=principal(),
        name=body["name"],
        scopes=body["scopes"],
        expires_at=parse_instant(expires_at, pointer="/expires_at") if expires_at else None,
        meta=request_meta(),
    )
    return json_answer(
        {**api_key_representation(created.key), "key": created.secret},
        201,
        {"Location": f"/api/v1/api-keys/{created.key.id}", "Cache-Control": "no-store"},
    )


def list_api_keys(limit: int = 20, cursor: str | None = None) -> tuple:
    """GET /api/v1/api-keys — the caller's keys that were not revoked, newest first."""
    result = api_keys.list_keys(uow=unit_of_work(), owner_id=principal().id, limit=limit, cursor=cursor)
    return json_answer(
        {"items": [api_key_representation(key) for key in result.items], "next_cursor": result.next_cursor}
    )


def get_api_key(api_key_id: str) -> tuple:
    """GET /api/v1/api-keys/{api_key_id}."""
    key = api_keys.get_key(uow=unit_of_work(), owner_id=principal().id, key_id=uuid.UUID(api_key_id))
    return json_answer(api_key_representation(key))


def revoke_api_key(api_key_id: str) -> tuple:
    """DELETE /api/v1/api-keys/{api_key_id} — 204; the key stops working at once."""
    api_keys.revoke_key(
        uow=unit_of_work(), clock=clock(), owner=principal(), key_id=uuid.UUID(api_key_id), meta=request_meta()
    )
    return no_content()
