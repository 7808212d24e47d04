"""Domain errors raised by services. `server.problems` turns each into a problem+json answer;
handlers never catch them."""

from __future__ import annotations


class DomainError(Exception):
    """Base of every error a service raises on purpose.

    Attributes:
        detail: a sentence for the client's developer (never internals).
        persist_changes: commit the unit of work even though the request fails, for decisions
            that must outlive the error (e.g. ending a session on refresh-token reuse).
    """

    persist_changes = False

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFound(DomainError):
    """No such resource for this caller (another user's resource counts as none)."""


class Conflict(DomainError):
    """The request conflicts with the current state."""


class EmailTaken(Conflict):
    """An account with this email already exists."""


class InvalidCredentials(DomainError):
    """Wrong email or password; deliberately does not say which."""


class InvalidToken(DomainError):
    """An access or refresh token that is malformed, unknown, expired or from an ended session."""


class RefreshTokenReused(InvalidToken):
    """An already-rotated refresh token was presented: the session has been ended."""

    persist_changes = True


class InvalidInput(DomainError):
    """Input that the schema allows but a domain rule refuses.

    Attributes:
        pointer: RFC 6901 pointer to the offending member of the request body, or None.
        parameter: name of the offending query or path parameter, or None.
    """

    def __init__(self, detail: str, *, pointer: str | None = None, parameter: str | None = None) -> None:
        super().__init__(detail)
        self.pointer = pointer
        self.parameter = parameter
