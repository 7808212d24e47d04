"""Password reset tokens."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from persistence.accounts.models import PasswordResetToken
from persistence.database import affected_rows


class PasswordResetRepository:
    """Reads and writes `password_reset_tokens` within the caller's unit of work."""

    def __init__(self, db: Session) -> None:
        self.db = db

    def add(self, token: PasswordResetToken) -> None:
        """Stage a new reset token."""
        self.db.add(token)
        self.db.flush()

    def find(self, token_hash: str) -> PasswordResetToken | None:
        """The token with this hash, or None."""
        return self.db.scalars(
            select(PasswordResetToken).where(PasswordResetToken.token_hash == token_hash)
        ).one_or_none()

    def use(self, token_id: uuid.UUID, now: datetime) -> bool:
        """Mark the token used unless it already is; False when another request used it first."""
        result = self.db.execute(
            update(PasswordResetToken)
            .where(PasswordResetToken.id == token_id, PasswordResetToken.used_at.is_(None))
            .values(used_at=now)
        )
        return affected_rows(result) == 1

    def discard_unused(self, user_id: uuid.UUID) -> None:
        """Delete the user's other outstanding tokens, so only the newest link works."""
        self.db.execute(
            delete(PasswordResetToken).where(
                PasswordResetToken.user_id == user_id, PasswordResetToken.used_at.is_(None)
            )
        )

    def purge(self, now: datetime) -> int:
        """Delete every token that can no longer be used (expired at `now`, or used); returns how many."""
        result = self.db.execute(
            delete(PasswordResetToken).where(
                (PasswordResetToken.expires_at <= now) | PasswordResetToken.used_at.is_not(None)
            )
        )
        return affected_rows(result)
