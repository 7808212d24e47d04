"""Real `charter worker` processes: a job runs and succeeds; a worker killed with SIGKILL mid-job
leaves a job that runs again once its (short) lease expires, its effect made exactly once; two
workers on one Redis queue run N jobs exactly once each. On SQLite and on PostgreSQL; every wait
has a deadline; every process is stopped when its test ends."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import jobs as job_kinds
from adapters.job_queue import HueyJobQueue, make_huey
from persistence.database import make_engine, make_session_factory
from persistence.unit_of_work import UnitOfWork
from services import jobs
from services.clock import SystemClock
from services.jobs import JobEngine
from tests.helpers import ROOT
from tests.processes import CHARTER, charter_environment, log_tail, stop_process
from tests.served import migrated_database_of_kind

LEASE_SECONDS = 2
DEADLINE_SECONDS = 40.0


class Cluster:
    """A database, a queue, and the `charter worker` processes the test starts."""

    def __init__(self, url: str, workdir: Path, *, redis_url: str | None = None) -> None:
        self.url = url
        self.workdir = workdir
        self.redis_url = redis_url
        self.engine = make_engine(url, pool_size=2, max_overflow=2)
        self.factory = make_session_factory(self.engine)
        backend = "redis" if redis_url else "sqlite"
        self.jobs = JobEngine(
            kinds=job_kinds.discover(["tests.jobs.kinds"]),
            queue=HueyJobQueue(make_huey(backend, sqlite_path=workdir / "var" / "job-queue.db", redis_url=redis_url)),
        )
        self.processes: list[subprocess.Popen] = []
        self.effects = workdir / "effects"
        self.effects.mkdir()

    def start_worker(self) -> subprocess.Popen:
        if not CHARTER.exists():
            pytest.skip("the charter console script is not installed")
        environment = charter_environment(
            DATABASE_URL=self.url,
            VAR_DIR=str(self.workdir / "var"),
            JOB_QUEUE="redis" if self.redis_url else "sqlite",
            JOB_LEASE_SECONDS=str(LEASE_SECONDS),
            JOB_SWEEP_INTERVAL_SECONDS="0.5",
            JOB_EXTRA_MODULES="tests.jobs.kinds",
            LOG_LEVEL="INFO",
            PYTHONPATH=str(ROOT),
            **({"REDIS_URL": self.redis_url} if self.redis_url else {}),
        )
        log_path = self.workdir / f"worker-{len(self.processes)}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [str(CHARTER), "worker", "--threads", "2"],
                cwd=self.workdir,
                env=environment,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self.processes.append(process)
        return process

    def logs(self) -> str:
        return "\n".join(log_tail(path) for path in sorted(self.workdir.glob("worker-*.log")))

    def enqueue(self, **payload) -> uuid.UUID:
        with UnitOfWork(self.factory) as uow:
            job = jobs.enqueue(
                uow=uow,
                clock=SystemClock(),
                engine=self.jobs,
                kind="test.record",
                owner_id=None,
                payload={"dir": str(self.effects), **payload},
            )
            return job.id

    def job(self, job_id: uuid.UUID):
        with UnitOfWork(self.factory) as uow:
            return uow.jobs.get(job_id)

    def wait_for(self, condition, what: str, timeout: float = DEADLINE_SECONDS):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            time.sleep(0.1)
        pytest.fail(f"{what} did not happen within {timeout}s:\n{self.logs()}")

    def runs(self) -> list[tuple[str, int, int]]:
        log = self.effects / "runs.log"
        lines = log.read_text().splitlines() if log.exists() else []
        return [(job, int(attempt), int(pid)) for job, attempt, pid in (line.split() for line in lines)]

    def close(self) -> None:
        for process in self.processes:
            stop_process(process)
        self.engine.dispose()


@contextlib.contextmanager
def cluster(kind: str, workdir: Path, redis_url: str | None = None) -> Iterator[Cluster]:
    with migrated_database_of_kind(kind, workdir) as url:
        made = Cluster(url, workdir, redis_url=redis_url)
        try:
            yield made
        finally:
            made.close()


@pytest.mark.chaos  # also in `make chaos`: a worker SIGKILLed mid-job
@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_a_killed_workers_job_runs_again_after_its_lease_and_its_effect_happens_once(database, tmp_path):
    with cluster(database, tmp_path) as jobs_here:
        first = jobs_here.start_worker()
        quick = jobs_here.enqueue()
        done = jobs_here.wait_for(lambda: jobs_here.job(quick).status == "succeeded" and jobs_here.job(quick), "a job")
        assert (done.attempts, done.result, done.progress_message) == (1, {"attempt": 1}, "recorded")

        hanging = jobs_here.enqueue(hang_on_attempt=1)
        jobs_here.wait_for(lambda: any(run[0] == str(hanging) for run in jobs_here.runs()), "the first attempt")
        first.kill()  # SIGKILL: no cleanup, the huey message is gone with it
        first.wait(timeout=10)
        assert jobs_here.job(hanging).status == "running"
        jobs_here.start_worker()
        row = jobs_here.wait_for(
            lambda: (job := jobs_here.job(hanging)).status == "succeeded" and job, "the job's second attempt"
        )
        assert (row.attempts, row.result) == (2, {"attempt": 2})
        assert [(attempt) for job, attempt, _ in jobs_here.runs() if job == str(hanging)] == [1, 2]
        assert sorted(path.name for path in jobs_here.effects.glob("effect-*")) == sorted(
            [f"effect-{quick}", f"effect-{hanging}"]
        )


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")
@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_two_workers_on_a_redis_queue_run_each_job_exactly_once(database, tmp_path):
    from tests.server.redis_server import RedisServer

    redis_server = RedisServer(tmp_path)
    redis_server.start()
    try:
        with cluster(database, tmp_path, redis_url=redis_server.url) as jobs_here:
            jobs_here.start_worker()
            jobs_here.start_worker()
            made = [jobs_here.enqueue() for _ in range(30)]
            jobs_here.wait_for(lambda: all(jobs_here.job(job_id).status == "succeeded" for job_id in made), "30 jobs")
            runs = jobs_here.runs()
            assert sorted(job for job, _, _ in runs) == sorted(str(job_id) for job_id in made)  # each exactly once
            assert {attempt for _, attempt, _ in runs} == {1}
            assert len(list(jobs_here.effects.glob("effect-*"))) == 30
    finally:
        redis_server.stop()
