"""Queries on login sessions and their refresh tokens."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import bindparam, select, tuple_, update
from sqlalchemy.orm import Session, make_transient_to_detached

from persistence.accounts.models import AuthSession, RefreshToken, User
from persistence.database import affected_rows, read_rows


class AuthSessionRepository:
    """Reads and writes `auth_sessions` and `refresh_tokens` within the caller's unit of work."""

    def __init__(self, db: Session) -> None:
        self.db = db

    def all_of_user(self, user_id: uuid.UUID) -> list[AuthSession]:
        """All the user's sessions, ended ones included, oldest first (for the data export)."""
        return list(
            self.db.scalars(select(AuthSession).where(AuthSession.user_id == user_id).order_by(AuthSession.created_at))
        )

    def add(self, session: AuthSession, refresh_token: RefreshToken) -> None:
        """Stage a new session with its first refresh token."""
        self.db.add(session)
        self.db.flush()
        self.db.add(refresh_token)
        self.db.flush()

    def active_user(self, *, session_id: uuid.UUID, user_id: uuid.UUID, now: datetime) -> tuple[User, datetime] | None:
        """The session's user and the session's `last_used_at`, if the session belongs to
        `user_id`, is not revoked, has not expired at `now` and the account is active; else None.

        One indexed query, and it runs on every authenticated request: a statement built once,
        read as a Core row, the `User` made from it and attached to the unit of work as a
        loaded object (changes to it are saved as usual) without the ORM's loading machinery,
        which cost half of this check's CPU (issue 13).
        """
        row = read_rows(self.db, _ACTIVE_USER, {"session_id": session_id, "user_id": user_id, "now": now}).one_or_none()
        if row is None:
            return None
        user = self.db.identity_map.get(self.db.identity_key(User, row[0]))  # already in this unit of work
        if user is None:
            user = User(**dict(zip(_USER_ATTRIBUTES, row[:-1], strict=True)))
            make_transient_to_detached(user)
            self.db.add(user)
        return user, row[-1]

    def get_active(self, *, user_id: uuid.UUID, session_id: uuid.UUID, now: datetime) -> AuthSession | None:
        """The user's open session with this id, or None (also when it is someone else's)."""
        return self.db.scalars(
            select(AuthSession).where(
                AuthSession.id == session_id,
                AuthSession.user_id == user_id,
                AuthSession.revoked_at.is_(None),
                AuthSession.expires_at > now,
            )
        ).one_or_none()

    def list_active(
        self, *, user_id: uuid.UUID, now: datetime, limit: int, before: tuple[datetime, uuid.UUID] | None = None
    ) -> list[AuthSession]:
        """Up to `limit` of the user's open sessions, newest first (created_at, id descending)."""
        statement = select(AuthSession).where(
            AuthSession.user_id == user_id, AuthSession.revoked_at.is_(None), AuthSession.expires_at > now
        )
        if before is not None:
            statement = statement.where(tuple_(AuthSession.created_at, AuthSession.id) < tuple_(*before))
        statement = statement.order_by(AuthSession.created_at.desc(), AuthSession.id.desc()).limit(limit)
        return list(self.db.scalars(statement))

    def mark_used(self, session_id: uuid.UUID, *, now: datetime, older_than: datetime) -> None:
        """Record that the session was used at `now`, unless that was recorded after `older_than`
        (the condition also guards against a concurrent request having just written it).

        The write stands alone: one autocommit statement on a connection of its own, never part
        of the caller's transaction. Inside it, the row would stay locked until the request
        ended (every other request of the session waiting on PostgreSQL) and SQLite's write
        lock would be held from the request's first line on, blocking the transactions of its
        own that the request opens later (an idempotency claim).
        """
        bind = self.db.get_bind().engine.execution_options(isolation_level="AUTOCOMMIT")
        with bind.connect() as connection:
            connection.execute(
                update(AuthSession)
                .where(AuthSession.id == session_id, AuthSession.last_used_at < older_than)
                .values(last_used_at=now)
            )

    def revoke_all(self, user_id: uuid.UUID, *, now: datetime, reason: str, keep: uuid.UUID | None = None) -> int:
        """End every open session of the user (but `keep`); returns how many were ended."""
        statement = update(AuthSession).where(AuthSession.user_id == user_id, AuthSession.revoked_at.is_(None))
        if keep is not None:
            statement = statement.where(AuthSession.id != keep)
        return affected_rows(self.db.execute(statement.values(revoked_at=now, revoked_reason=reason)))

    def find_refresh_token(self, token_hash: str) -> tuple[RefreshToken, AuthSession] | None:
        """The refresh token with this hash and its session, or None."""
        row = self.db.execute(
            select(RefreshToken, AuthSession)
            .join(AuthSession, AuthSession.id == RefreshToken.session_id)
            .where(RefreshToken.token_hash == token_hash)
        ).one_or_none()
        return (row[0], row[1]) if row else None

    def mark_refresh_token_used(self, token_id: uuid.UUID, now: datetime) -> bool:
        """Mark a refresh token used if nobody has yet; False when another request won the race.

        The conditional UPDATE makes rotation safe under concurrency: of two requests presenting
        the same token, exactly one sees True.
        """
        result = self.db.execute(
            update(RefreshToken).where(RefreshToken.id == token_id, RefreshToken.used_at.is_(None)).values(used_at=now)
        )
        return affected_rows(result) == 1

    def add_refresh_token(self, refresh_token: RefreshToken) -> None:
        """Stage the refresh token that replaces a rotated one."""
        self.db.add(refresh_token)
        self.db.flush()

    def touch(self, session_id: uuid.UUID, *, now: datetime, expires_at: datetime) -> None:
        """Record use of the session and push its expiry to `expires_at`."""
        self.db.execute(
            update(AuthSession).where(AuthSession.id == session_id).values(last_used_at=now, expires_at=expires_at)
        )

    def revoke(self, session_id: uuid.UUID, *, now: datetime, reason: str) -> None:
        """End a session: its access and refresh tokens stop working on the next request."""
        self.db.execute(
            update(AuthSession)
            .where(AuthSession.id == session_id, AuthSession.revoked_at.is_(None))
            .values(revoked_at=now, revoked_reason=reason)
        )


_USER_ATTRIBUTES = tuple(attribute.key for attribute in User.__mapper__.column_attrs)
_ACTIVE_USER = (
    select(*[getattr(User, key) for key in _USER_ATTRIBUTES], AuthSession.last_used_at)
    .join(AuthSession, AuthSession.user_id == User.id)
    .where(
        AuthSession.id == bindparam("session_id"),
        AuthSession.user_id == bindparam("user_id"),
        AuthSession.revoked_at.is_(None),
        AuthSession.expires_at > bindparam("now"),
        User.status == "active",
    )
)
"""`AuthSessionRepository.active_user`'s query: every column of the user, then the session's `last_used_at`."""
