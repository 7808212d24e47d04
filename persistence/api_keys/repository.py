"""Reads and writes of `api_keys`. Every read of a user's keys takes the owner; the one read
that does not (`by_prefix`) is the authentication of a presented key."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import func, or_, select, tuple_, update
from sqlalchemy.orm import Session

from persistence.accounts.models import User
from persistence.api_keys.models import ApiKey
from persistence.database import affected_rows, for_update


class ApiKeyRepository:
    """API keys within the caller's unit of work."""

    def __init__(self, db: Session) -> None:
        self.db = db

    def add(self, key: ApiKey) -> None:
        """Stage a new key and write it now."""
        self.db.add(key)
        self.db.flush()

    def lock_owner(self, owner_id: uuid.UUID) -> None:
        """Hold the owner's account row locked until the unit of work ends (PostgreSQL: ``FOR
        UPDATE``; SQLite: the write lock), so two creations of one owner at once are counted
        one after the other against the cap."""
        self.db.execute(for_update(self.db, select(User.id).where(User.id == owner_id)))

    def count_active(self, owner_id: uuid.UUID, *, now: datetime) -> int:
        """How many of the owner's keys are neither revoked nor expired at `now`."""
        statement = (
            select(func.count())
            .select_from(ApiKey)
            .where(
                ApiKey.owner_id == owner_id,
                ApiKey.revoked_at.is_(None),
                or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > now),
            )
        )
        return int(self.db.scalar(statement) or 0)

    def get(self, *, owner_id: uuid.UUID, key_id: uuid.UUID) -> ApiKey | None:
        """The owner's key with this id unless it was revoked, else None (also someone else's)."""
        statement = select(ApiKey).where(ApiKey.id == key_id, ApiKey.owner_id == owner_id, ApiKey.revoked_at.is_(None))
        return self.db.scalars(statement).one_or_none()

    def page(
        self, *, owner_id: uuid.UUID, limit: int, before: tuple[datetime, uuid.UUID] | None = None
    ) -> list[ApiKey]:
        """Up to `limit` keys of the owner that were not revoked, newest first, after the
        position `before` (created_at, id)."""
        statement = select(ApiKey).where(ApiKey.owner_id == owner_id, ApiKey.revoked_at.is_(None))
        if before is not None:
            statement = statement.where(tuple_(ApiKey.created_at, ApiKey.id) < tuple_(*before))
        return list(self.db.scalars(statement.order_by(ApiKey.created_at.desc(), ApiKey.id.desc()).limit(limit)))

    def all_of(self, owner_id: uuid.UUID) -> list[ApiKey]:
        """Every key of the owner, revoked ones included, oldest first (the data export)."""
        statement = select(ApiKey).where(ApiKey.owner_id == owner_id)
        return list(self.db.scalars(statement.order_by(ApiKey.created_at, ApiKey.id)))

    def revoke(self, *, owner_id: uuid.UUID, key_id: uuid.UUID, now: datetime) -> bool:
        """Revoke the owner's key unless it already was; whether this call revoked it (a
        concurrent revocation of the same key makes one of the two False)."""
        statement = (
            update(ApiKey)
            .where(ApiKey.id == key_id, ApiKey.owner_id == owner_id, ApiKey.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        return affected_rows(self.db.execute(statement)) == 1

    def by_prefix(self, prefix: str) -> tuple[ApiKey, User] | None:
        """The key with this prefix and its owner, or None: one query on the prefix's unique
        index, run for every request authenticated with a key. Revoked and expired keys are
        answered too; the caller decides."""
        row = self.db.execute(
            select(ApiKey, User).join(User, User.id == ApiKey.owner_id).where(ApiKey.prefix == prefix)
        )
        found = row.one_or_none()
        return (found[0], found[1]) if found is not None else None

    def mark_used(self, key_id: uuid.UUID, *, now: datetime, older_than: datetime) -> None:
        """Record that the key was used at `now`, unless that was recorded after `older_than`.

        The write stands alone: one autocommit statement on a connection of its own, never part
        of the caller's transaction (as a session's `last_used_at`: `AuthSessionRepository.mark_used`).
        """
        bind = self.db.get_bind().engine.execution_options(isolation_level="AUTOCOMMIT")
        with bind.connect() as connection:
            connection.execute(
                update(ApiKey)
                .where(
                    ApiKey.id == key_id,
                    or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < older_than),
                )
                .values(last_used_at=now)
            )
