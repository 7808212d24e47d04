"""One unit of work per request: a session opened on first use, committed once or rolled back."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker


class UnitOfWork:
    """Owns at most one SQLAlchemy session for the duration of a request.

    The session is opened lazily, so requests that never touch the database (health,
    liveness) never take a pooled connection. The app commits once when the request
    succeeds and rolls back otherwise; services never commit themselves.
    """

    def __init__(self, session_factory: sessionmaker[Session]) -> None:
        self._session_factory = session_factory
        self._session: Session | None = None

    @property
    def session(self) -> Session:
        """The request's session, opened on first access."""
        if self._session is None:
            self._session = self._session_factory()
        return self._session

    def commit(self) -> None:
        """Commit the request's changes, if a session was opened."""
        if self._session is not None:
            self._session.commit()

    def rollback(self) -> None:
        """Discard the request's changes, if a session was opened."""
        if self._session is not None:
            self._session.rollback()

    def close(self) -> None:
        """Return the connection to the pool; uncommitted changes are discarded."""
        if self._session is not None:
            self._session.close()
            self._session = None


def after_commit(session: Session, callback: Callable[[], None]) -> None:
    """Run `callback` once, after `session` commits (never if it rolls back): for side effects
    outside the database, such as mail, that must not happen for a change that was undone."""
    event.listen(session, "after_commit", lambda _session: callback(), once=True)
