"""Scheduled backups (BACKUP_SCHEDULE, BACKUP_DIR, BACKUP_KEEP): a worker's periodic check queues
`backups.create` for a scheduled minute that has passed, once; the job writes an archive, is a
no-op when run again for the same minute, and leaves the newest BACKUP_KEEP archives; a failing
backup deletes nothing and leaves no partial file. Frozen time throughout."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import select

import jobs as job_kinds
from adapters.cron_schedule import CronSchedule
from persistence.database import make_engine, make_session_factory
from persistence.jobs.models import Job
from persistence.unit_of_work import UnitOfWork
from services import backups
from services import jobs as job_services
from services.clock import FrozenClock
from tests.backups.conftest import backup_config
from tests.helpers import RecordingQueue, make_settings, migrated_database

NIGHT = datetime(2026, 12, 2, 2, 59, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory):
    """A SQLite database of its own (the schedule does not depend on the kind)."""
    workdir = tmp_path_factory.mktemp("scheduled")
    with migrated_database(None, sqlite_dir=workdir, prefix="charter_backup") as url:
        yield make_settings(url, workdir / "var", backup_schedule="0 3 * * *", backup_keep=2)


@pytest.fixture
def units(settings) -> Iterator:
    engine = make_engine(settings.database_url)
    factory = make_session_factory(engine)
    yield lambda: UnitOfWork(factory)
    engine.dispose()


@pytest.fixture
def config(settings, tmp_path: Path) -> Iterator[backups.BackupConfig]:
    with backup_config(settings, directory=tmp_path / "backups") as made:
        yield made


def _engine(config: backups.BackupConfig) -> job_services.JobEngine:
    return job_services.JobEngine(
        kinds=job_kinds.discover(), queue=RecordingQueue(), random=lambda: 0.0, context={"backups": config}
    )


def _run(engine, units, clock, job_id: uuid.UUID) -> job_services.RunReport:
    return job_services.run(engine=engine, unit_of_work=units, clock=clock, job_id=job_id, worker_id="scheduled")


def _archives(config: backups.BackupConfig) -> list[str]:
    return sorted(path.name for path in config.directory.iterdir())


def test_the_settings_refuse_a_malformed_schedule(tmp_path: Path):
    for expression in ("0 3 * *", "61 * * * *", "0 3 * * * *", "every night"):
        with pytest.raises(ValidationError, match="BACKUP_SCHEDULE"):
            make_settings("sqlite:///x.db", tmp_path, backup_schedule=expression)
    assert make_settings("sqlite:///x.db", tmp_path).backup_schedule == ""  # off by default
    assert make_settings("sqlite:///x.db", tmp_path, backup_schedule=" 0  3 * * 1-5 ").backup_schedule == "0 3 * * 1-5"


def test_the_latest_scheduled_minute_since_the_last_check_is_due():
    nightly = CronSchedule("0 3 * * *")
    at_three = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)
    assert backups.due_slot(schedule=nightly, after=NIGHT, now=NIGHT + timedelta(seconds=40)) == at_three
    assert backups.due_slot(schedule=nightly, after=NIGHT, now=NIGHT + timedelta(seconds=20)) is None
    assert backups.due_slot(schedule=nightly, after=at_three, now=at_three + timedelta(minutes=5)) is None
    quarterly = CronSchedule("*/15 * * * *")
    assert backups.due_slot(schedule=quarterly, after=NIGHT, now=NIGHT + timedelta(minutes=40)) == datetime(
        2026, 12, 2, 3, 30, tzinfo=UTC
    )


def test_a_worker_queues_one_job_for_a_scheduled_minute(config, units):
    engine = _engine(config)
    clock = FrozenClock(NIGHT + timedelta(seconds=40))
    schedule = CronSchedule("0 3 * * *")
    with units() as uow:
        job = backups.queue_if_due(uow=uow, clock=clock, engine=engine, schedule=schedule, after=NIGHT)
    assert job is not None and job.kind == backups.JOB_KIND
    assert job.payload == {"slot": "2026-12-02T03:00:00+00:00"}
    # A second worker's check of the same minute while the job is pending queues nothing.
    with units() as uow:
        assert backups.queue_if_due(uow=uow, clock=clock, engine=engine, schedule=schedule, after=NIGHT) is None
    assert _run(engine, units, clock, job.id).outcome == job_services.Outcome.SUCCEEDED
    assert len(_archives(config)) == 1


def test_the_job_keeps_backup_keep_archives_and_runs_once_per_minute(config, units):
    engine = _engine(config)
    clock = FrozenClock(datetime(2026, 12, 2, 3, 0, 5, tzinfo=UTC))
    made = []
    for night in range(4):
        with units() as uow:
            job = job_services.enqueue(
                uow=uow,
                clock=clock,
                engine=engine,
                kind=backups.JOB_KIND,
                owner_id=None,
                payload={"slot": clock.now().replace(second=0).isoformat()},
            )
        assert _run(engine, units, clock, job.id).outcome == job_services.Outcome.SUCCEEDED
        with units() as uow:
            result = uow.jobs.get(job.id).result
        made.append(result["archive"])
        assert result["pruned"] == ([made[night - 2]] if night >= 2 else [])
        assert _archives(config) == sorted(made[-2:])  # BACKUP_KEEP = 2
        if night == 3:
            # The same minute again (another worker's job, or a re-delivery): nothing new, nothing pruned.
            with units() as uow:
                again = job_services.enqueue(
                    uow=uow,
                    clock=clock,
                    engine=engine,
                    kind=backups.JOB_KIND,
                    owner_id=None,
                    payload={"slot": clock.now().replace(second=0).isoformat()},
                )
            assert _run(engine, units, clock, again.id).outcome == job_services.Outcome.SUCCEEDED
            with units() as uow:
                assert uow.jobs.get(again.id).result == {"skipped": True, "archive": made[-1]}
            assert _archives(config) == sorted(made[-2:])
        clock.advance(days=1)
    for name in _archives(config):
        backups.verify_archive(path=config.directory / name)


class Failing:
    kind = "sqlite"

    def dump(self, target: Path, *, snapshot: str | None) -> None:
        target.write_bytes(b"half a dump")
        raise OSError("No space left on device")

    def restore(self, source: Path) -> None:
        raise AssertionError("never called")


def test_a_failed_backup_deletes_no_older_one_and_leaves_no_partial_file(config, units):
    clock = FrozenClock(datetime(2026, 12, 2, 3, 0, 5, tzinfo=UTC))
    for _ in range(2):
        backups.scheduled_backup(config=config, clock=clock, slot=clock.now())
        clock.advance(days=1)
    kept = _archives(config)
    assert len(kept) == 2
    broken = dataclasses.replace(config, dumper=Failing())
    engine = _engine(broken)
    with units() as uow:
        job = job_services.enqueue(
            uow=uow,
            clock=clock,
            engine=engine,
            kind=backups.JOB_KIND,
            owner_id=None,
            payload={"slot": clock.now().isoformat()},
        )
    report = _run(engine, units, clock, job.id)
    assert report.outcome == job_services.Outcome.FAILED  # not retried: the next scheduled minute tries again
    with units() as uow:
        stored = uow.jobs.get(job.id)
    assert stored.error["type"] == "/problems/backup-failed"
    assert "No space left on device" in stored.error["detail"]
    assert _archives(config) == kept  # nothing deleted, no partial or staging file left
    with pytest.raises(backups.BackupFailed):
        backups.scheduled_backup(config=broken, clock=clock, slot=clock.now())
    assert _archives(config) == kept


def test_a_worker_wired_from_the_settings_queues_and_runs_the_scheduled_backup(settings, units):
    """The wiring end to end: `server.worker.Worker` built from settings with BACKUP_SCHEDULE
    queues the job at its periodic check and runs it with the configuration it built
    (`make_backup_config`), into BACKUP_DIR."""
    from server.worker import Worker

    clock = FrozenClock(NIGHT + timedelta(seconds=45))
    worker = Worker(settings, threads=1, clock=clock)
    try:
        worker.queue_scheduled_backup(NIGHT)
        with units() as uow:
            queued = uow.session.scalars(select(Job).where(Job.kind == backups.JOB_KIND, Job.status == "queued")).all()
        assert len(queued) == 1
        worker.handle(str(queued[0].id))
        with units() as uow:
            done = uow.jobs.get(queued[0].id)
        assert done.status == "succeeded", done.error
        archive = settings.backup_directory / done.result["archive"]
        manifest = backups.verify_archive(path=archive)
        assert manifest.database_kind == "sqlite" and manifest.created_at == clock.now()
        worker.queue_scheduled_backup(clock.now())  # nothing more is due until tomorrow at 03:00
        with units() as uow:
            assert not uow.jobs.pending_of_kind(backups.JOB_KIND)
    finally:
        worker.engine.context["backups"].inventory.engine.dispose()
        worker.db.dispose()
