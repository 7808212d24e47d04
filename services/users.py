"""Profiles and user management (briefs 002, 003, 004): self-service profile, account deletion
and data export, and the administrators' operations on any account."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from persistence.accounts.models import User
from persistence.audit.models import AuditEvent
from persistence.unit_of_work import UnitOfWork
from services import audit
from services.audit import EventType, RequestMeta
from services.clock import Clock
from services.cursors import decode_cursor, page
from services.errors import Conflict, EmailTaken, Forbidden, NotFound
from services.passwords import PasswordHasher


@dataclass(frozen=True)
class UserPage:
    """A page of accounts for an administrator."""

    items: list[User]
    next_cursor: str | None


@dataclass(frozen=True)
class AuditPage:
    """A page of audit events."""

    items: list[AuditEvent]
    next_cursor: str | None


def update_profile(*, uow: UnitOfWork, clock: Clock, user: User, data: dict[str, Any], meta: RequestMeta) -> User:
    """Change the caller's own profile (display name); nothing else can be set this way."""
    changed = {name: data[name] for name in ("display_name",) if name in data and data[name] != getattr(user, name)}
    if changed:
        now = clock.now()
        for name, value in changed.items():
            setattr(user, name, value)
        user.updated_at = now
        audit.record(
            uow,
            EventType.PROFILE_UPDATED,
            meta=meta,
            actor_id=user.id,
            subject_id=user.id,
            now=now,
            details={"fields": sorted(changed)},
        )
        uow.flush()
    return user


def delete_account(*, uow: UnitOfWork, clock: Clock, user: User, actor: User, meta: RequestMeta) -> None:
    """Delete an account and everything it owns (sessions, tokens, tasks). The audit trail keeps
    the event, naming the account only by id.

    Raises Conflict when the last active administrator would delete themselves (nobody could
    manage accounts any more; `charter create-admin` would be the only way back). The
    administrators are locked for the check, so two last administrators deleting themselves at
    once cannot both succeed (issue 11). An administrator deleting another account has been
    checked by `administer_delete`.
    """
    if user.role == "admin" and actor.id == user.id:
        admins = uow.users.lock_active_admins()  # refreshes `user` from its locked row
        if user in admins and len(admins) <= 1:
            raise Conflict("You are the last administrator; make another administrator before deleting your account.")
    audit.record(
        uow,
        EventType.ACCOUNT_DELETED,
        meta=meta,
        now=clock.now(),
        actor_id=actor.id,
        subject_id=user.id,
        details={"by_administrator": actor.id != user.id},
    )
    uow.users.delete(user)


def record_export(*, uow: UnitOfWork, clock: Clock, user: User, meta: RequestMeta) -> None:
    """Say in the audit log that the caller exported their data (brief 004; GDPR articles 15
    and 20), before the export's sections are read: the export includes this event. Each area
    reads its own section (`handlers.data_export`)."""
    audit.record(uow, EventType.DATA_EXPORTED, meta=meta, now=clock.now(), actor_id=user.id, subject_id=user.id)
    uow.flush()


def list_users(
    *, uow: UnitOfWork, limit: int, cursor: str | None, q: str | None, role: str | None, status: str | None
) -> UserPage:
    """A page of accounts, newest first, filtered. Raises InvalidInput for a bad cursor."""
    before = decode_cursor(cursor) if cursor else None
    rows = uow.users.list_page(limit=limit + 1, before=before, q=q, role=role, status=status)
    items, next_cursor = page(rows, limit, lambda user: (user.created_at, user.id))
    return UserPage(items=items, next_cursor=next_cursor)


def get_user(*, uow: UnitOfWork, user_id: uuid.UUID) -> User:
    """Any account by id. Raises NotFound."""
    user = uow.users.get(user_id)
    if user is None:
        raise NotFound("No user with this id.")
    return user


def administer(
    *, uow: UnitOfWork, clock: Clock, admin: User, user_id: uuid.UUID, data: dict[str, Any], meta: RequestMeta
) -> User:
    """An administrator changes an account's role, status or display name.

    Deactivating ends every session of the account at once. An administrator cannot change
    their own role or status (so the last administrator cannot lock everyone out).

    Raises NotFound, Conflict for a change to one's own role or status, or Forbidden when the
    caller stopped being an active administrator while the request waited (`_still_admin`).
    """
    _still_admin(uow, admin)
    user = get_user(uow=uow, user_id=user_id)
    now = clock.now()
    if user.id == admin.id and (
        ("role" in data and data["role"] != user.role) or ("status" in data and data["status"] != user.status)
    ):
        raise Conflict("You cannot change your own role or status; ask another administrator.")
    if "role" in data and data["role"] != user.role:
        audit.record(
            uow,
            EventType.ROLE_CHANGED,
            meta=meta,
            actor_id=admin.id,
            subject_id=user.id,
            now=now,
            details={"from": user.role, "to": data["role"]},
        )
        user.role = data["role"]
    if "status" in data and data["status"] != user.status:
        user.status = data["status"]
        if user.status == "deactivated":
            ended = uow.sessions.revoke_all(user.id, now=now, reason="deactivated")
            audit.record(
                uow,
                EventType.USER_DEACTIVATED,
                meta=meta,
                actor_id=admin.id,
                subject_id=user.id,
                now=now,
                details={"sessions_ended": ended},
            )
        else:
            audit.record(uow, EventType.USER_REACTIVATED, meta=meta, actor_id=admin.id, subject_id=user.id, now=now)
    if "display_name" in data and data["display_name"] != user.display_name:
        user.display_name = data["display_name"]
        audit.record(
            uow,
            EventType.PROFILE_UPDATED,
            meta=meta,
            actor_id=admin.id,
            subject_id=user.id,
            now=now,
            details={"fields": ["display_name"]},
        )
    user.updated_at = now
    uow.flush()
    return user


def administer_delete(*, uow: UnitOfWork, clock: Clock, admin: User, user_id: uuid.UUID, meta: RequestMeta) -> None:
    """An administrator deletes an account. Raises NotFound, Conflict for their own (use
    DELETE /api/v1/users/me for that), or Forbidden (`_still_admin`)."""
    _still_admin(uow, admin)
    user = get_user(uow=uow, user_id=user_id)
    if user.id == admin.id:
        raise Conflict("Delete your own account with DELETE /api/v1/users/me.")
    delete_account(uow=uow, clock=clock, user=user, actor=admin, meta=meta)


def _still_admin(uow: UnitOfWork, admin: User) -> None:
    """Check, with every active administrator locked until the unit of work ends, that `admin`
    still is one. The request's check of the caller's role ran before this; another
    administrator may have demoted or deactivated the caller since (two demoting each other at
    once would otherwise both succeed and leave none: issue 11). An administrator cannot change
    their own role or status, so after a change checked here at least the caller is left.

    Raises Forbidden when the caller is no longer an active administrator.
    """
    if admin not in uow.users.lock_active_admins():
        raise Forbidden("You are no longer an administrator.")


def audit_events(
    *,
    uow: UnitOfWork,
    limit: int,
    cursor: str | None,
    user_id: uuid.UUID | None = None,
    types: list[str] | None = None,
    occurred_after: datetime | None = None,
    occurred_before: datetime | None = None,
) -> AuditPage:
    """A page of audit events, newest first, filtered. Raises InvalidInput for a bad cursor."""
    before = decode_cursor(cursor) if cursor else None
    rows = uow.audit.list_page(
        limit=limit + 1,
        before=before,
        user_id=user_id,
        types=types,
        occurred_after=occurred_after,
        occurred_before=occurred_before,
    )
    items, next_cursor = page(rows, limit, lambda event: (event.occurred_at, event.id))
    return AuditPage(items=items, next_cursor=next_cursor)


def create_admin(
    *, uow: UnitOfWork, clock: Clock, passwords: PasswordHasher, email: str, password: str, display_name: str
) -> User:
    """The first administrator (CLI `charter create-admin`): a new admin account, or an existing
    account promoted when the email is taken and `password` is its password.

    Raises EmailTaken when the email is taken and the password does not match.
    """
    users = uow.users
    now = clock.now()
    existing = users.get_by_email(email.lower())
    if existing is not None:
        if not passwords.verify(password, existing.password_hash):
            raise EmailTaken("An account with this email exists and the password does not match it.")
        cli = RequestMeta(user_agent="charter-cli")
        if existing.role != "admin":
            audit.record(
                uow,
                EventType.ROLE_CHANGED,
                meta=cli,
                subject_id=existing.id,
                now=now,
                details={"from": existing.role, "to": "admin", "via": "cli"},
            )
            existing.role = "admin"
        if existing.status != "active":
            audit.record(
                uow, EventType.USER_REACTIVATED, meta=cli, subject_id=existing.id, now=now, details={"via": "cli"}
            )
            existing.status = "active"
        existing.updated_at = now
        return existing
    user = User(
        id=uuid.uuid4(),
        email=email.lower(),
        display_name=display_name,
        password_hash=passwords.hash(password),
        role="admin",
        status="active",
        created_at=now,
        updated_at=now,
    )
    if not users.add(user):
        raise EmailTaken("An account with this email was created meanwhile; run the command again.")
    audit.record(
        uow,
        EventType.REGISTERED,
        meta=RequestMeta(user_agent="charter-cli"),
        subject_id=user.id,
        now=now,
        details={"role": "admin", "via": "cli"},
    )
    return user
