"""The usage analytics' wiring in an API process (issue 18): the in-memory `RequestStats` the
edge's access log feeds, and the thread that flushes it to the database every
ANALYTICS_FLUSH_SECONDS and once more when the process stops (`services.analytics.flush`).

Started and stopped by the app's ASGI lifespan (`lifespan`), so each process of `charter serve
--workers N` runs its own flusher, and an app built but never served (most tests) starts none.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import structlog
from sqlalchemy.orm import Session, sessionmaker

from persistence.unit_of_work import UnitOfWork
from server.worker import Repeating
from services import analytics

log = structlog.get_logger(__name__)

EXTENSION = "charter.analytics"
"""The Flask extension key under which the app keeps its `AnalyticsFlusher`."""


class AnalyticsFlusher:
    """Flushes `stats` to the database in units of work of `session_factory`, every `interval`
    seconds between `start` and `stop`, and at `stop`. A failed flush is logged (the counts wait
    for the next one, `services.analytics.flush`) and never reaches a request.

    Args:
        stats: the process's in-memory counts.
        session_factory: transactional sessions on the app's engine.
        interval: ANALYTICS_FLUSH_SECONDS.
    """

    def __init__(self, stats: analytics.RequestStats, session_factory: sessionmaker[Session], *, interval: float):
        self.stats = stats
        self.session_factory = session_factory
        self.interval = interval
        self._thread: Repeating | None = None

    def flush(self) -> analytics.FlushReport | None:
        """Flush now; None when it failed (logged with the error class and what waits)."""
        try:
            return analytics.flush(unit_of_work=lambda: UnitOfWork(self.session_factory), stats=self.stats)
        except Exception as error:
            requests, users = self.stats.pending()
            log.warning(
                "analytics_flush_failed",
                error=type(error).__name__,
                pending_requests=requests,
                pending_users=users,
                dropped_requests=self.stats.dropped_requests,
                dropped_users=self.stats.dropped_users,
            )
            return None

    def start(self) -> None:
        """Flush every `interval` seconds from a daemon thread (once started, again is a no-op)."""
        if self._thread is None:
            self._thread = Repeating(self.flush, self.interval, name="analytics-flush").start()

    def stop(self) -> None:
        """Stop the thread and flush what is left."""
        if self._thread is not None:
            self._thread.stop()
            self._thread = None
        self.flush()


def lifespan(flusher: AnalyticsFlusher) -> Callable[[Any], Any]:
    """An ASGI lifespan (connexion's `lifespan=`) that starts `flusher` when the server starts
    and stops it (flushing the rest) when the server stops."""

    @asynccontextmanager
    async def running(_app: Any) -> AsyncIterator[None]:
        flusher.start()
        try:
            yield
        finally:
            flusher.stop()

    return running
