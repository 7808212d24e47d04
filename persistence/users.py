"""Queries on accounts."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import delete, func, or_, select, tuple_
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

    def list_page(
        self,
        *,
        limit: int,
        before: tuple[datetime, uuid.UUID] | None = None,
        q: str | None = None,
        role: str | None = None,
        status: str | None = None,
    ) -> list[User]:
        """Up to `limit` users, newest first (created_at, id descending), for administrators.

        Args:
            before: keyset position of the previous page's last user.
            q: case-insensitive substring of the email or the display name.
            role, status: exact filters.
        """
        statement = select(User)
        if q:
            pattern = "%" + q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            statement = statement.where(
                or_(User.email.like(pattern, escape="\\"), func.lower(User.display_name).like(pattern, escape="\\"))
            )
        if role:
            statement = statement.where(User.role == role)
        if status:
            statement = statement.where(User.status == status)
        if before is not None:
            statement = statement.where(tuple_(User.created_at, User.id) < tuple_(*before))
        return list(self.db.scalars(statement.order_by(User.created_at.desc(), User.id.desc()).limit(limit)))

    def count_admins(self) -> int:
        """How many active administrators there are."""
        return (
            self.db.scalar(select(func.count()).select_from(User).where(User.role == "admin", User.status == "active"))
            or 0
        )

    def delete(self, user: User) -> None:
        """Delete an account; its sessions, tokens and tasks go with it (ON DELETE CASCADE)."""
        self.db.execute(delete(User).where(User.id == user.id))
