"""Queries on accounts."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from persistence.models import User


class UserRepository:
    """Reads and writes `users` rows within the caller's unit of work."""

    def __init__(self, db: Session) -> None:
        self.db = db

    def add(self, user: User) -> None:
        """Stage a new user; the unique email index is checked at flush (IntegrityError)."""
        self.db.add(user)
        self.db.flush()

    def get(self, user_id: uuid.UUID) -> User | None:
        """The user with this id, or None."""
        return self.db.get(User, user_id)

    def get_by_email(self, email: str) -> User | None:
        """The user with this (already lower-cased) email, or None."""
        return self.db.scalars(select(User).where(User.email == email)).one_or_none()

    def email_taken(self, email: str) -> bool:
        """Whether an account already uses this (lower-cased) email."""
        return self.db.scalar(select(User.id).where(User.email == email)) is not None
