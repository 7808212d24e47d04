"""Operations of the `auth` tag: register, login, refresh, logout, me, sessions, passwords
(briefs 002, 004)."""

from __future__ import annotations

import uuid
from typing import Any

from handlers.representations import exported_session_representation, session_representation, user_representation
from handlers.responses import json_answer, no_content
from server.integration.context import access_claims, auth_config, clock, principal, request_meta, unit_of_work
from services import accounts

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _export_sessions(user_id: uuid.UUID) -> list[dict[str, Any]]:
    return [exported_session_representation(s) for s in accounts.exported_sessions(uow=unit_of_work(), user_id=user_id)]


EXPORT_SECTIONS = {"sessions": _export_sessions}
"""Every session of the caller, ended ones included, in their data export (`handlers.data_export`)."""
"""Token answers must not be cached (RFC 6749 section 5.1)."""


def _token_pair(tokens: accounts.IssuedTokens) -> tuple:
    return json_answer(
        {
            "access_token": tokens.access_token,
            "token_type": "Bearer",
            "expires_in": tokens.expires_in,
            "refresh_token": tokens.refresh_token,
            "refresh_expires_in": tokens.refresh_expires_in,
        },
        headers=NO_STORE,
    )


def register_user(body: dict[str, Any]) -> tuple:
    """POST /api/v1/auth/register — 201 with the new account; 409 taken email; 422 weak password."""
    user = accounts.register(
        uow=unit_of_work(),
        clock=clock(),
        auth=auth_config(),
        email=body["email"],
        password=body["password"],
        display_name=body["display_name"],
        meta=request_meta(),
    )
    return json_answer(user_representation(user), 201)


def login(body: dict[str, Any]) -> tuple:
    """POST /api/v1/auth/login — a new session's tokens; 401 bad credentials; 429 locked."""
    return _token_pair(
        accounts.login(
            uow=unit_of_work(),
            clock=clock(),
            auth=auth_config(),
            email=body["email"],
            password=body["password"],
            meta=request_meta(),
        )
    )


def refresh_tokens(body: dict[str, Any]) -> tuple:
    """POST /api/v1/auth/refresh — rotate the refresh token; reuse ends the session."""
    return _token_pair(
        accounts.refresh(
            uow=unit_of_work(),
            clock=clock(),
            auth=auth_config(),
            refresh_token=body["refresh_token"],
            meta=request_meta(),
        )
    )


def logout(body: dict[str, Any] | None = None) -> tuple:
    """POST /api/v1/auth/logout — end this session, or all of them."""
    accounts.logout(
        uow=unit_of_work(),
        clock=clock(),
        user=principal(),
        claims=access_claims(),  # type: ignore[arg-type]
        all_sessions=bool((body or {}).get("all_sessions", False)),
        meta=request_meta(),
    )
    return no_content()


def get_current_user() -> tuple:
    """GET /api/v1/auth/me — the caller's account."""
    return json_answer(user_representation(principal()))


def list_sessions(limit: int = 20, cursor: str | None = None) -> tuple:
    """GET /api/v1/auth/sessions — the caller's open sessions."""
    result = accounts.list_sessions(
        uow=unit_of_work(),
        clock=clock(),
        user=principal(),
        claims=access_claims(),  # type: ignore[arg-type]
        limit=limit,
        cursor=cursor,
    )
    items = [session_representation(session, result.current_id) for session in result.items]
    return json_answer({"items": items, "next_cursor": result.next_cursor})


def revoke_session(session_id: str) -> tuple:
    """DELETE /api/v1/auth/sessions/{session_id} — end one of the caller's sessions."""
    accounts.revoke_session(
        uow=unit_of_work(), clock=clock(), user=principal(), session_id=uuid.UUID(session_id), meta=request_meta()
    )
    return no_content()


def change_password(body: dict[str, Any]) -> tuple:
    """POST /api/v1/auth/password — new password; every other session ends."""
    accounts.change_password(
        uow=unit_of_work(),
        clock=clock(),
        auth=auth_config(),
        user=principal(),
        claims=access_claims(),  # type: ignore[arg-type]
        current_password=body["current_password"],
        new_password=body["new_password"],
        meta=request_meta(),
    )
    return no_content()


def request_password_reset(body: dict[str, Any]) -> tuple:
    """POST /api/v1/auth/password-reset — 202 whether or not the account exists."""
    accounts.request_password_reset(
        uow=unit_of_work(), clock=clock(), auth=auth_config(), email=body["email"], meta=request_meta()
    )
    return None, 202


def confirm_password_reset(body: dict[str, Any]) -> tuple:
    """POST /api/v1/auth/password-reset/confirm — set the password with a reset token."""
    accounts.confirm_password_reset(
        uow=unit_of_work(),
        clock=clock(),
        auth=auth_config(),
        token=body["token"],
        new_password=body["new_password"],
        meta=request_meta(),
    )
    return no_content()
