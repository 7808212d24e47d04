"""Queries on accounts."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import delete, func, or_, select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from persistence.accounts.models import User
from persistence.database import for_update, savepoint


class UserRepository:
    """Reads and writes `users` rows within the caller's unit of work."""

    def __init__(self, db: Session) -> None:
        self.db = db

    def add(self, user: User) -> bool:
        """Insert a new user; False, and nothing inserted, when the (lower-cased) email is
        already taken, also by a concurrent registration that committed first (the unique index
        decides, inside a savepoint, so the rest of the unit of work goes on)."""
        try:
            with savepoint(self.db):
                self.db.add(user)
                self.db.flush()
        except IntegrityError:
            if self.email_taken(user.email):
                return False
            raise
        return True

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

    def lock_active_admins(self) -> list[User]:
        """The active administrators, locked until the unit of work ends (in id order, so two
        callers never wait for each other in a cycle) and refreshed from their rows: a rule
        about administrators (there is always one left; an actor still is one) checked on this
        list holds when the change is committed."""
        statement = select(User).where(User.role == "admin", User.status == "active").order_by(User.id)
        return list(self.db.scalars(for_update(self.db, statement)))

    def delete(self, user: User) -> None:
        """Delete an account; its sessions, tokens and tasks go with it (ON DELETE CASCADE)."""
        self.db.execute(delete(User).where(User.id == user.id))
