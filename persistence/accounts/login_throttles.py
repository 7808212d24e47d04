"""Failed-login counters for account lockout."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from persistence.accounts.models import LoginThrottle
from persistence.database import for_update, insert_if_absent


class LoginThrottleRepository:
    """Reads and writes `login_throttles` rows within the caller's unit of work."""

    def __init__(self, db: Session) -> None:
        self.db = db

    def locked_until(self, email_digest: str, now: datetime) -> datetime | None:
        """When the lockout of this email ends, if it is locked at `now`; else None."""
        until = self.db.scalar(select(LoginThrottle.locked_until).where(LoginThrottle.email_digest == email_digest))
        return until if until is not None and until > now else None

    def record_failure(
        self, email_digest: str, *, now: datetime, window: timedelta, max_failures: int, lockout: timedelta
    ) -> datetime | None:
        """Count a failed login; returns the end of the lockout when this failure starts one.

        Failures count within `window` from the first. The email's row is made if missing
        (without a unique violation when concurrent failures make it at once) and locked until
        the unit of work ends, so concurrent failures for one email are each counted once and
        exactly one of them starts the lockout.
        """
        insert_if_absent(
            self.db,
            LoginThrottle,
            {"email_digest": email_digest, "failures": 0, "window_started_at": now, "locked_until": None},
            key=["email_digest"],
        )
        row = self.db.scalars(
            for_update(self.db, select(LoginThrottle).where(LoginThrottle.email_digest == email_digest))
        ).one()
        if row.window_started_at + window <= now:
            row.failures, row.window_started_at, row.locked_until = 0, now, None
        row.failures += 1
        started = None
        if row.failures >= max_failures and (row.locked_until is None or row.locked_until <= now):
            row.locked_until = started = now + lockout
            row.failures, row.window_started_at = 0, now
        self.db.flush()
        return started

    def clear(self, email_digest: str) -> None:
        """Forget the failures of this email (after a successful login or a password reset)."""
        self.db.execute(delete(LoginThrottle).where(LoginThrottle.email_digest == email_digest))
