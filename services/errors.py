"""Domain errors raised by services, each declaring the problem it is answered with.

An error class states its RFC 9457 problem type, title and status where it is defined
(`problem`); `server.integration.problems` answers any `DomainError` with the `problem` of its class (or of
the nearest base class declaring one), so an area adds errors in its own modules without
touching a shared registry. Handlers never catch them. The README's table of problem types is
checked against these declarations by a test.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True)
class ProblemType:
    """A documented kind of problem (RFC 9457 section 3.1): its relative `type` URI, its short
    human-readable `title` and the HTTP `status` it is answered with."""

    type: str
    title: str
    status: int


class DomainError(Exception):
    """Base of every error a service raises on purpose.

    Attributes:
        problem: the problem type this error is answered with; every subclass that needs its
            own declares it, the others inherit their base's.
        detail: a sentence for the client's developer (never internals).
        persist_changes: commit the unit of work even though the request fails, for decisions
            that must outlive the error (e.g. ending a session on refresh-token reuse).
    """

    problem: ClassVar[ProblemType]
    persist_changes = False

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    def members(self) -> dict[str, Any]:
        """The problem's extension members (RFC 9457 section 3.2) beyond type, title, status,
        detail and instance, answered as they are (a null value included); none by default."""
        return {}


class NotFound(DomainError):
    """No such resource for this caller (another user's resource counts as none)."""

    problem = ProblemType("/problems/not-found", "Not found", 404)


class Conflict(DomainError):
    """The request conflicts with the current state."""

    problem = ProblemType("/problems/conflict", "Conflict", 409)


class EmailTaken(Conflict):
    """An account with this email already exists."""

    problem = ProblemType("/problems/email-taken", "Email already registered", 409)


class PreconditionFailed(DomainError):
    """An `If-Match` that names another version than the current one (RFC 9110 section 13.1.1)."""

    problem = ProblemType("/problems/precondition-failed", "Precondition failed", 412)


class IdempotencyKeyReused(DomainError):
    """An `Idempotency-Key` sent again with a different request (IETF idempotency-key draft)."""

    problem = ProblemType("/problems/idempotency-key-reused", "Idempotency key reused", 422)


class IdempotencyInProgress(Conflict):
    """A request with this `Idempotency-Key` is still being processed."""

    problem = ProblemType("/problems/idempotency-in-progress", "Request in progress", 409)


class InvalidCredentials(DomainError):
    """Wrong email or password; deliberately does not say which. The failure counter and audit
    event written before it is raised must persist."""

    problem = ProblemType("/problems/invalid-credentials", "Invalid credentials", 401)

    persist_changes = True


class LoginLocked(DomainError):
    """Too many failed logins for this email: refused until `retry_after` seconds have passed.
    Raised alike whether or not an account has this email."""

    problem = ProblemType("/problems/login-locked", "Too many failed logins", 429)

    persist_changes = True

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class AccountDeactivated(DomainError):
    """The account was deactivated by an administrator (told only to someone who knows its password)."""

    problem = ProblemType("/problems/account-deactivated", "Account deactivated", 403)


class Forbidden(DomainError):
    """The caller is authenticated but may not do this (e.g. not an administrator)."""

    problem = ProblemType("/problems/forbidden", "Forbidden", 403)


class WrongPassword(DomainError):
    """The current password given to confirm a change is not the account's."""

    problem = ProblemType("/problems/wrong-password", "Current password incorrect", 403)

    persist_changes = True


class InvalidResetToken(DomainError):
    """A password reset token that is unknown, expired or already used."""

    problem = ProblemType("/problems/invalid-reset-token", "Invalid reset token", 422)


class WeakPassword(DomainError):
    """A password the policy refuses (NIST SP 800-63B); `reasons` says why, for the user."""

    problem = ProblemType("/problems/weak-password", "Password refused", 422)

    def __init__(self, detail: str, *, pointer: str, reasons: list[str]) -> None:
        super().__init__(detail)
        self.pointer = pointer
        self.reasons = reasons


class InvalidToken(DomainError):
    """An access or refresh token that is malformed, unknown, expired or from an ended session."""

    problem = ProblemType("/problems/unauthorized", "Unauthorized", 401)


class RefreshTokenReused(InvalidToken):
    """An already-rotated refresh token was presented: the session has been ended."""

    problem = ProblemType("/problems/refresh-token-reused", "Refresh token reused", 401)

    persist_changes = True


class InvalidInput(DomainError):
    """Input that the schema allows but a domain rule refuses.

    Attributes:
        pointer: RFC 6901 pointer to the offending member of the request body, or None.
        parameter: name of the offending query or path parameter, or None.
    """

    problem = ProblemType("/problems/validation-error", "Request validation failed", 400)

    def __init__(self, detail: str, *, pointer: str | None = None, parameter: str | None = None) -> None:
        super().__init__(detail)
        self.pointer = pointer
        self.parameter = parameter
