"""Who may call an operation (API_STYLE, Security; ARCHITECTURE, "Access is declared"): each
operation of the contract states its policy in `x-access`, and one check applies it before the
handler runs, so no handler has to remember it."""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import TYPE_CHECKING

from services.errors import Forbidden, InvalidToken, NotFound

if TYPE_CHECKING:
    from persistence.accounts.models import User


class Access(StrEnum):
    """The policies an operation can declare."""

    PUBLIC = "public"
    """Anyone; no access token (the operation's `security` is empty)."""
    AUTHENTICATED = "authenticated"
    """Any caller with a valid access token of an open session."""
    OWNER = "owner"
    """The caller, on their own resources: the path's `user_id` must be the caller's id."""
    ADMIN = "admin"
    """An administrator."""
    VISITOR = "visitor"
    """A visitor of a public chatbot, with the visitor token of the conversation the path names
    (its ``{conversation_id}``; `services.public_chatbots`), and no other credential."""


def authorize(policy: Access, *, caller: User | None, owner_id: uuid.UUID | None = None, visitor: bool = False) -> None:
    """Check that `caller` may call an operation whose policy is `policy`.

    Args:
        caller: the authenticated user, or None on a request without an access token.
        owner_id: with OWNER, the owner the request's path names (its `user_id`).
        visitor: with VISITOR, whether the request's visitor token opened the conversation its
            path names (`services.public_chatbots.authenticate_visitor`).

    Raises:
        InvalidToken: a policy other than PUBLIC and no caller; VISITOR without a visitor.
        NotFound: OWNER and another user's id (404, not 403: whether that account exists is
            not revealed; API_STYLE, Security).
        Forbidden: ADMIN and a caller who is not an administrator.
    """
    if policy is Access.PUBLIC:
        return
    if policy is Access.VISITOR:
        if not visitor:
            raise InvalidToken("This operation needs a visitor token.")
        return
    if caller is None:
        raise InvalidToken("This operation needs an access token.")
    if policy is Access.OWNER and owner_id != caller.id:
        raise NotFound("No such user, or not yours.")
    if policy is Access.ADMIN and caller.role != "admin":
        raise Forbidden("Only administrators may do this.")
