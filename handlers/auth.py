"""Operations of the `auth` tag: register, login, refresh, logout, me (briefs 002, 004)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from handlers.responses import json_answer, no_content, timestamp
from server.context import access_claims, auth_config, db, principal
from services import accounts

if TYPE_CHECKING:
    from persistence.models import User

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
"""Token answers must not be cached (RFC 6749 section 5.1)."""


def user_representation(user: User) -> dict[str, Any]:
    """The `User` schema of the contract."""
    return {
        "id": str(user.id),
        "email": user.email,
        "display_name": user.display_name,
        "created_at": timestamp(user.created_at),
    }


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
    """POST /api/v1/auth/register — 201 with the new account; 409 when the email is taken."""
    user = accounts.register(
        db=db(),
        auth=auth_config(),
        email=body["email"],
        password=body["password"],
        display_name=body["display_name"],
    )
    return json_answer(user_representation(user), 201)


def login(body: dict[str, Any]) -> tuple:
    """POST /api/v1/auth/login — a new session's tokens; 401 for any bad credential."""
    return _token_pair(accounts.login(db=db(), auth=auth_config(), email=body["email"], password=body["password"]))


def refresh_tokens(body: dict[str, Any]) -> tuple:
    """POST /api/v1/auth/refresh — rotate the refresh token; reuse ends the session."""
    return _token_pair(accounts.refresh(db=db(), auth=auth_config(), refresh_token=body["refresh_token"]))


def logout() -> tuple:
    """POST /api/v1/auth/logout — end the caller's session at once."""
    claims = access_claims()
    principal()
    accounts.logout(db=db(), session_id=claims.session_id)  # type: ignore[union-attr]
    return no_content()


def get_current_user() -> tuple:
    """GET /api/v1/auth/me — the caller's account."""
    return json_answer(user_representation(principal()))
