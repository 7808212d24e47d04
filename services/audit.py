"""Security events (brief 004): who did what to which account, from where, in which request.

Every event carries the actor (who acted), the subject (whose account), the client address,
the user agent, the request id and details. The log is append-only (the database refuses
UPDATE and DELETE) and outlives the accounts it names.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from persistence.audit.models import AuditEvent
from persistence.unit_of_work import UnitOfWork


class EventType(StrEnum):
    """The audit event types; the contract lists the same values."""

    REGISTERED = "registered"
    LOGIN_SUCCEEDED = "login_succeeded"
    LOGIN_FAILED = "login_failed"
    LOCKED_OUT = "locked_out"
    LOGGED_OUT = "logged_out"
    LOGGED_OUT_EVERYWHERE = "logged_out_everywhere"
    TOKEN_REFRESHED = "token_refreshed"
    REFRESH_TOKEN_REUSED = "refresh_token_reused"
    SESSION_REVOKED = "session_revoked"
    PASSWORD_CHANGED = "password_changed"
    PASSWORD_RESET_REQUESTED = "password_reset_requested"
    PASSWORD_RESET_COMPLETED = "password_reset_completed"
    PROFILE_UPDATED = "profile_updated"
    ACCOUNT_DELETED = "account_deleted"
    ROLE_CHANGED = "role_changed"
    USER_DEACTIVATED = "user_deactivated"
    USER_REACTIVATED = "user_reactivated"
    DATA_EXPORTED = "data_exported"
    CHATBOT_CREATED = "chatbot_created"
    CHATBOT_UPDATED = "chatbot_updated"
    CHATBOT_DELETED = "chatbot_deleted"
    API_KEY_CREATED = "api_key_created"
    API_KEY_REVOKED = "api_key_revoked"
    CONVERSATION_DELETED = "conversation_deleted"
    PLAN_CREATED = "plan_created"
    PLANS_SYNCED = "plans_synced"
    SUBSCRIPTION_UPDATED = "subscription_updated"
    INVOICE_PAID = "invoice_paid"
    INVOICE_PAYMENT_FAILED = "invoice_payment_failed"
    PAYMENT_METHOD_ATTACHED = "payment_method_attached"
    PAYMENT_METHOD_DETACHED = "payment_method_detached"
    PAYMENT_METHOD_DEFAULT_CHANGED = "payment_method_default_changed"


@dataclass(frozen=True)
class RequestMeta:
    """Where a request came from, for sessions and audit events (built by the HTTP edge)."""

    client_address: str | None = None
    user_agent: str | None = None
    request_id: str | None = None


def involving(*, uow: UnitOfWork, user_id: uuid.UUID) -> list[AuditEvent]:
    """Every event the user did or that was about them, oldest first: their data export's section."""
    return uow.audit.involving(user_id)


def record(
    uow: UnitOfWork,
    event_type: EventType,
    *,
    meta: RequestMeta,
    now: datetime,
    actor_id: uuid.UUID | None = None,
    subject_id: uuid.UUID | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one event, which happened at `now`, to the audit log within `uow`."""
    event = AuditEvent(
        id=uuid.uuid4(),
        occurred_at=now,
        type=str(event_type),
        actor_id=actor_id,
        subject_id=subject_id,
        client_address=meta.client_address,
        user_agent=(meta.user_agent or None) and meta.user_agent[:500],
        request_id=meta.request_id,
        details=details or {},
    )
    uow.audit.append(event)
    return event
