"""The contract's representations of accounts, sessions and audit events."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ua_parser import parse as parse_user_agent

from handlers.responses import timestamp
from server.integration.context import printable

if TYPE_CHECKING:
    import uuid

    from persistence.accounts.models import AuthSession, User
    from persistence.audit.models import AuditEvent


def user_representation(user: User) -> dict[str, Any]:
    """The `User` schema."""
    return {
        "id": str(user.id),
        "email": user.email,
        "display_name": user.display_name,
        "role": user.role,
        "status": user.status,
        "created_at": timestamp(user.created_at),
        "updated_at": timestamp(user.updated_at),
    }


def describe_device(user_agent: str | None) -> str:
    """A short description of a User-Agent, e.g. ``Chrome 120 on Mac OS X`` (ua-parser)."""
    if not user_agent:
        return "Unknown device"
    parsed = parse_user_agent(user_agent[:500])
    browser = parsed.user_agent
    name = (
        f"{browser.family} {browser.major}".strip()
        if browser and browser.major
        else (browser.family if browser else user_agent[:60])
    )
    system = parsed.os.family if parsed.os else None
    text = f"{name} on {system}" if system and system != "Other" else name
    return "".join(ch for ch in text if ch.isprintable())[:200] or "Unknown device"


def session_representation(session: AuthSession, current_id: uuid.UUID) -> dict[str, Any]:
    """The `AuthSession` schema."""
    return {
        "id": str(session.id),
        "device": describe_device(session.user_agent),
        "client_address": printable(session.client_address, limit=64),
        "created_at": timestamp(session.created_at),
        "last_used_at": timestamp(session.last_used_at),
        "expires_at": timestamp(session.expires_at),
        "current": session.id == current_id,
    }


def exported_session_representation(session: AuthSession) -> dict[str, Any]:
    """The `ExportedSession` schema."""
    return {
        "id": str(session.id),
        "user_agent": printable(session.user_agent, limit=500),
        "client_address": printable(session.client_address, limit=64),
        "created_at": timestamp(session.created_at),
        "last_used_at": timestamp(session.last_used_at),
        "expires_at": timestamp(session.expires_at),
        "revoked_at": timestamp(session.revoked_at),
        "revoked_reason": session.revoked_reason,
    }


def audit_event_representation(event: AuditEvent) -> dict[str, Any]:
    """The `AuditEvent` schema."""
    return {
        "id": str(event.id),
        "type": event.type,
        "occurred_at": timestamp(event.occurred_at),
        "actor_id": str(event.actor_id) if event.actor_id else None,
        "subject_id": str(event.subject_id) if event.subject_id else None,
        "client_address": printable(event.client_address, limit=64),
        "user_agent": printable(event.user_agent, limit=500),
        "request_id": event.request_id,
        "details": event.details,
    }
