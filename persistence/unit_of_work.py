"""The unit of work (cosmicpython's `unit_of_work.py`): one database session per request or
job, opened on first use, the repositories over it, and an explicit commit. Services receive
it and reach the database only through its repositories; they never see SQLAlchemy."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cached_property
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from persistence.accounts.login_throttles import LoginThrottleRepository
from persistence.accounts.password_resets import PasswordResetRepository
from persistence.accounts.sessions import AuthSessionRepository
from persistence.accounts.users import UserRepository
from persistence.analytics.repository import AnalyticsRepository
from persistence.api_keys.repository import ApiKeyRepository
from persistence.audit.repository import AuditRepository
from persistence.billing.invoices import InvoiceRepository
from persistence.billing.payments import PaymentMethodRepository, ProviderEventRepository
from persistence.billing.plans import PlanRepository, SubscriptionRepository
from persistence.billing.usage import UsageRepository
from persistence.chatbots.repository import ChatbotRepository
from persistence.conversations.repository import ConversationRepository
from persistence.database import hold_write_lock, savepoint
from persistence.documents.repository import DocumentRepository
from persistence.idempotency.repository import IdempotencyRecords
from persistence.jobs.repository import JobRepository
from persistence.knowledge.repository import KnowledgeRepository
from persistence.notifications.repository import NotificationRepository
from persistence.public_chatbots.repository import PublicChatbotRepository
from persistence.reminders.repository import ReminderRepository
from persistence.tasks.repository import TaskRepository
from persistence.webhooks.repository import WebhookRepository
from persistence.websites.repository import WebsiteRepository


class UnitOfWork:
    """Owns at most one SQLAlchemy session, and the repositories that work in it.

    The session is opened when a repository is first used, so requests that never touch the
    database (health, liveness) never take a pooled connection. Nothing is committed unless
    `commit` is called: the app commits once when a request succeeds and rolls back otherwise;
    services never commit.

    Args:
        session_factory: makes the session (a transactional one for writes; an autocommit one
            for requests that only read).
        publish: what receives the events recorded in this unit of work (`record_event`): it is
            called with this unit of work and the events at `commit`, *before* the transaction
            commits, and writes what the events cause (webhook deliveries and their jobs) in the
            same transaction — a transactional outbox: the change and its consequences are
            committed together or not at all, so no event is lost to a crash between the commit
            and a hand-over (the queue is handed job ids after the commit; a lost hand-over is
            redelivered by the job sweep). None: events are dropped.
    """

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        *,
        publish: Callable[[UnitOfWork, list[Any]], None] | None = None,
    ) -> None:
        self._session_factory = session_factory
        self._session: Session | None = None
        self._publish = publish
        self._outbox: list[Any] = []

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

    @cached_property
    def webhooks(self) -> WebhookRepository:
        """Webhook endpoints and their deliveries."""
        return WebhookRepository(self.session)

    @cached_property
    def chatbots(self) -> ChatbotRepository:
        """Chatbots and their settings."""
        return ChatbotRepository(self.session)

    @cached_property
    def knowledge(self) -> KnowledgeRepository:
        """A chatbot's knowledge index: passages and full-text search."""
        return KnowledgeRepository(self.session)

    @cached_property
    def documents(self) -> DocumentRepository:
        """Documents uploaded to chatbots: their scan verdicts and processing state."""
        return DocumentRepository(self.session)

    @cached_property
    def websites(self) -> WebsiteRepository:
        """A chatbot's website sources and their crawled pages."""
        return WebsiteRepository(self.session)

    @cached_property
    def api_keys(self) -> ApiKeyRepository:
        """A user's API keys (stored hashed), and the lookup of a presented key by its prefix."""
        return ApiKeyRepository(self.session)

    @cached_property
    def conversations(self) -> ConversationRepository:
        """Conversations with chatbots and their messages."""
        return ConversationRepository(self.session)

    @cached_property
    def public_chatbots(self) -> PublicChatbotRepository:
        """What visitors of public chatbots reach."""
        return PublicChatbotRepository(self.session)

    @cached_property
    def plans(self) -> PlanRepository:
        """The plan catalogue (billing)."""
        return PlanRepository(self.session)

    @cached_property
    def subscriptions(self) -> SubscriptionRepository:
        """Accounts' subscriptions (billing)."""
        return SubscriptionRepository(self.session)

    @cached_property
    def invoices(self) -> InvoiceRepository:
        """Invoices and their lines (billing)."""
        return InvoiceRepository(self.session)

    @cached_property
    def payment_methods(self) -> PaymentMethodRepository:
        """Accounts' payment methods (billing)."""
        return PaymentMethodRepository(self.session)

    @cached_property
    def provider_events(self) -> ProviderEventRepository:
        """Inbound payment-provider events, stored once each (billing)."""
        return ProviderEventRepository(self.session)

    @cached_property
    def usage(self) -> UsageRepository:
        """Usage events and counters per meter (billing quotas)."""
        return UsageRepository(self.session)

    @cached_property
    def analytics(self) -> AnalyticsRepository:
        """Usage analytics: per-day request counts, latency histograms, active users, rollups."""
        return AnalyticsRepository(self.session)

    def record_event(self, event: Any) -> None:
        """Keep a domain event (`services.events.Event`) for `publish`, which gets every event of
        the work at the commit, in its transaction (never if the work is rolled back, nor one
        recorded in a savepoint that was rolled back)."""
        if self._publish is not None:
            self._outbox.append(event)

    _PUBLISH_ROUNDS = 10
    """A subscriber may record events of its own; they are published in the same commit, at
    most this many rounds deep (a cycle of events is a bug, not a workload)."""

    def _publish_outbox(self) -> None:
        for _round in range(self._PUBLISH_ROUNDS):
            events, self._outbox = self._outbox, []
            if not events or self._publish is None:
                return
            self._publish(self, events)
        raise RuntimeError(f"events still recorded after {self._PUBLISH_ROUNDS} rounds of publishing")

    def flush(self) -> None:
        """Send pending changes to the database now (within the transaction), so constraints
        are checked and generated values are known before the commit."""
        if self._session is not None:
            self._session.flush()

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """A part of the work that can fail alone: leaving the block by an exception rolls back
        what it did (and re-raises); the rest of the unit of work goes on."""
        recorded = len(self._outbox)
        try:
            with savepoint(self.session):
                yield
        except BaseException:
            del self._outbox[recorded:]
            raise

    def lock_for_writing(self) -> None:
        """Keep other writers out from here to the end (`persistence.database.hold_write_lock`)."""
        hold_write_lock(self.session)

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run `callback` once, after the commit (never if the work is rolled back): for side
        effects outside the database, such as mail, that must not happen for undone work."""
        event.listen(self.session, "after_commit", lambda _session: callback(), once=True)

    def commit(self) -> None:
        """Hand the work's events to `publish` (which writes in this transaction), then commit,
        if anything was opened. An error of a subscriber fails the commit: nothing is kept."""
        self._publish_outbox()
        if self._session is not None:
            self._session.commit()

    def rollback(self) -> None:
        """Discard the work, if anything was opened (and the events it recorded)."""
        self._outbox = []
        if self._session is not None:
            self._session.rollback()

    def close(self) -> None:
        """Return the connection to the pool; uncommitted work (and its events) is discarded."""
        self._outbox = []
        if self._session is not None:
            self._session.close()
            self._session = None
