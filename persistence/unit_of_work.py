"""The unit of work (cosmicpython's `unit_of_work.py`): one database session per request or
job, opened on first use, the repositories over it, and an explicit commit. Services receive
it and reach the database only through its repositories; they never see SQLAlchemy."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cached_property

from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from persistence.accounts.login_throttles import LoginThrottleRepository
from persistence.accounts.password_resets import PasswordResetRepository
from persistence.accounts.sessions import AuthSessionRepository
from persistence.accounts.users import UserRepository
from persistence.audit.repository import AuditRepository
from persistence.database import hold_write_lock, savepoint
from persistence.idempotency.repository import IdempotencyRecords
from persistence.jobs.repository import JobRepository
from persistence.notifications.repository import NotificationRepository
from persistence.reminders.repository import ReminderRepository
from persistence.tasks.repository import TaskRepository


class UnitOfWork:
    """Owns at most one SQLAlchemy session, and the repositories that work in it.

    The session is opened when a repository is first used, so requests that never touch the
    database (health, liveness) never take a pooled connection. Nothing is committed unless
    `commit` is called: the app commits once when a request succeeds and rolls back otherwise;
    services never commit.

    Args:
        session_factory: makes the session (a transactional one for writes; an autocommit one
            for requests that only read).
    """

    def __init__(self, session_factory: sessionmaker[Session]) -> None:
        self._session_factory = session_factory
        self._session: Session | None = None

    def __enter__(self) -> UnitOfWork:
        """Use outside a request (the CLI, tests, jobs): ``with UnitOfWork(factory) as uow:``
        commits when the block ends normally, rolls back when it raises (unless the error's
        `persist_changes` is true, as a request would: `services.errors.DomainError`), and
        closes."""
        return self

    def __exit__(self, error_type: type[BaseException] | None, error: BaseException | None, _traceback: object) -> None:
        if error is None:
            try:
                self.commit()
            except BaseException:
                self.close()
                raise
        self.finish(error)

    def finish(self, error: BaseException | None) -> None:
        """End the work and close: after a failure (`error`), commit what it did if the error's
        `persist_changes` is true (a decision that must stand although the request failed,
        e.g. ending a session on refresh-token reuse: `services.errors.DomainError`), else
        discard it. Without an error, whatever was not committed yet is discarded."""
        try:
            if error is not None and getattr(error, "persist_changes", False):
                self.commit()
        finally:
            self.close()

    @property
    def session(self) -> Session:
        """The SQLAlchemy session, opened on first access (for persistence code only)."""
        if self._session is None:
            self._session = self._session_factory()
        return self._session

    @cached_property
    def users(self) -> UserRepository:
        """Accounts."""
        return UserRepository(self.session)

    @cached_property
    def sessions(self) -> AuthSessionRepository:
        """Login sessions and their refresh tokens."""
        return AuthSessionRepository(self.session)

    @cached_property
    def tasks(self) -> TaskRepository:
        """Todo tasks and their tags."""
        return TaskRepository(self.session)

    @cached_property
    def audit(self) -> AuditRepository:
        """The append-only audit log."""
        return AuditRepository(self.session)

    @cached_property
    def throttles(self) -> LoginThrottleRepository:
        """Failed-login counters (lockout)."""
        return LoginThrottleRepository(self.session)

    @cached_property
    def resets(self) -> PasswordResetRepository:
        """Password reset tokens."""
        return PasswordResetRepository(self.session)

    @cached_property
    def idempotency(self) -> IdempotencyRecords:
        """Idempotency records, for storing an answer with the change it describes."""
        return IdempotencyRecords(self.session)

    @cached_property
    def jobs(self) -> JobRepository:
        """Job records (background work)."""
        return JobRepository(self.session)

    @cached_property
    def reminders(self) -> ReminderRepository:
        """Reminders of tasks."""
        return ReminderRepository(self.session)

    @cached_property
    def notifications(self) -> NotificationRepository:
        """In-app notifications."""
        return NotificationRepository(self.session)

    def flush(self) -> None:
        """Send pending changes to the database now (within the transaction), so constraints
        are checked and generated values are known before the commit."""
        if self._session is not None:
            self._session.flush()

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """A part of the work that can fail alone: leaving the block by an exception rolls back
        what it did (and re-raises); the rest of the unit of work goes on."""
        with savepoint(self.session):
            yield

    def lock_for_writing(self) -> None:
        """Keep other writers out from here to the end (`persistence.database.hold_write_lock`)."""
        hold_write_lock(self.session)

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run `callback` once, after the commit (never if the work is rolled back): for side
        effects outside the database, such as mail, that must not happen for undone work."""
        event.listen(self.session, "after_commit", lambda _session: callback(), once=True)

    def commit(self) -> None:
        """Commit the work, if anything was opened."""
        if self._session is not None:
            self._session.commit()

    def rollback(self) -> None:
        """Discard the work, if anything was opened."""
        if self._session is not None:
            self._session.rollback()

    def close(self) -> None:
        """Return the connection to the pool; uncommitted work is discarded."""
        if self._session is not None:
            self._session.close()
            self._session = None
