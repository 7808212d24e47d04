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


class PreconditionFailed(DomainError):
    """An `If-Match` that names another version than the current one (RFC 9110 section 13.1.1)."""


class IdempotencyKeyReused(DomainError):
    """An `Idempotency-Key` sent again with a different request (IETF idempotency-key draft)."""


class IdempotencyInProgress(Conflict):
    """A request with this `Idempotency-Key` is still being processed."""


class InvalidCredentials(DomainError):
    """Wrong email or password; deliberately does not say which. The failure counter and audit
    event written before it is raised must persist."""

    persist_changes = True


class LoginLocked(DomainError):
    """Too many failed logins for this email: refused until `retry_after` seconds have passed.
    Raised alike whether or not an account has this email."""

    persist_changes = True

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class AccountDeactivated(DomainError):
    """The account was deactivated by an administrator (told only to someone who knows its password)."""


class Forbidden(DomainError):
    """The caller is authenticated but may not do this (e.g. not an administrator)."""


class WrongPassword(DomainError):
    """The current password given to confirm a change is not the account's."""

    persist_changes = True


class InvalidResetToken(DomainError):
    """A password reset token that is unknown, expired or already used."""


class WeakPassword(DomainError):
    """A password the policy refuses (NIST SP 800-63B); `reasons` says why, for the user."""

    def __init__(self, detail: str, *, pointer: str, reasons: list[str]) -> None:
        super().__init__(detail)
        self.pointer = pointer
        self.reasons = reasons


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
