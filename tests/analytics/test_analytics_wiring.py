"""The analytics' wiring outside a request (issue 18): a flush that fails is logged and keeps
its counts (the flusher thread never raises), and a worker queues the rollup once while one is
pending."""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlalchemy import func, select

from jobs.analytics import ROLLUP_KIND
from persistence.database import make_engine, make_session_factory
from persistence.jobs.models import Job
from server.analytics import AnalyticsFlusher
from server.worker import ANALYTICS_ROLLUP_KIND, Worker
from services import analytics
from tests.helpers import run_job


def test_a_failed_flush_is_logged_and_its_counts_wait(tmp_path, capsys, caplog):
    engine = make_engine(f"sqlite:///{tmp_path}/no-tables.db")  # no migration: every insert fails
    try:
        day = datetime(2025, 9, 1, 12, tzinfo=UTC).timestamp()
        stats = analytics.RequestStats(now=lambda: day)
        stats.record("listTasks", 200, 0.001, None)
        flusher = AnalyticsFlusher(stats, make_session_factory(engine), interval=3600)
        assert flusher.flush() is None
        assert flusher.flush() is None  # again: the counts are still there, not doubled
        assert stats.pending() == (1, 0)
        captured = capsys.readouterr()
        # structlog prints, or hands to the standard logging once an app configured it
        assert "analytics_flush_failed" in captured.out + captured.err + caplog.text
        flusher.stop()  # the last flush fails too, quietly
        assert sorted(stats.take().request_rows()) == [(date(2025, 9, 1), "listTasks", 1, 0, 0)]
    finally:
        engine.dispose()


def test_a_worker_queues_the_rollup_once_while_one_is_pending(app, settings, new_uow):
    assert ANALYTICS_ROLLUP_KIND == ROLLUP_KIND
    worker = Worker(settings, threads=1)
    try:

        def pending() -> list[Job]:
            with new_uow() as uow:
                return list(uow.session.scalars(select(Job).where(Job.kind == ROLLUP_KIND, Job.status == "queued")))

        before = len(pending())
        worker.queue_periodic(ROLLUP_KIND)
        worker.queue_periodic(ROLLUP_KIND)
        queued = pending()
        assert len(queued) == max(before, 1)
        for job in queued:  # leave none behind for other tests
            run_job(app, str(job.id))
        with new_uow() as uow:
            assert (
                uow.session.scalar(
                    select(func.count()).select_from(Job).where(Job.kind == ROLLUP_KIND, Job.status == "queued")
                )
                == 0
            )
    finally:
        worker.db.dispose()
