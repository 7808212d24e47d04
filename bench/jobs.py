"""Jobs through the queue (issue 14): how many jobs a second real `charter worker` processes
run, on the SQLite and on the Redis queue, and how late 1,000 reminders due at one instant fire.

1. **Throughput.** For each queue — SQLite (huey's `SqliteHuey`, a file in a temporary folder)
   and Redis (the database BENCH_REDIS_URL names, default ``redis://127.0.0.1:6379/13``, flushed
   before and after; skipped, saying so, when it does not answer) — and each worker layout
   (`--layouts`; default one process of 1 thread, then one of 2 threads): a fresh database, the
   workers started and ready, then JOBS jobs of the bench's own no-op kind (`bench.job_kinds`,
   loaded only by these workers through JOB_EXTRA_MODULES, never one of the service's kinds)
   enqueued one per unit of work, as API requests enqueue them, while the workers run them.
   jobs/s = JOBS / (the last job's `finished_at` - the first enqueue). Also: the producer's own
   rate, and each job's time from `created_at` to `finished_at` (p50/p99).
2. **Reminder lateness.** One worker as production runs it (2 threads, the reminder sweep every
   2 s) on the SQLite queue; REMINDERS reminders (`in_app`), 10 per task, all due at the same
   instant LEAD seconds after the bench starts creating them through `services.reminders`
   (each enqueues its scheduled `reminders.fire` job). Once they have fired: fired_at -
   remind_at, p50/p99/max, and how many the scheduled job fired against the backstop sweep. The
   run fails unless each fired exactly once (status `fired`, one notification each). The
   issue's promise is "within 5 s of its time".

Usage: ``python -m bench.jobs [--jobs 1000] [--reminders 1000] [--lead 30] [--layouts 1x1,1x2]
[--only throughput|reminders] [--no-save]`` (2 to 3 minutes on SQLite with the defaults). LEAD
must cover creating the reminders through the service: 5 to 15 s for 1,000 on this 2-core
machine under other jobs' load, on SQLite and on PostgreSQL. DATABASE_URL naming PostgreSQL: temporary databases on that
server (made and dropped); else SQLite files in temporary folders. Writes
bench/results/jobs-<date>-<database>.{json,md} and appends the tables to bench/RESULTS.md (not
with ``--no-save``). Every process talks to 127.0.0.1 only, every wait has a deadline, and
every worker started is stopped when its measurement ends.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import redis
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

import jobs as job_kinds
from adapters.job_queue import HueyJobQueue, make_huey
from bench.job_kinds import NOOP_KIND
from persistence.accounts.models import User
from persistence.database import make_engine, make_session_factory
from persistence.jobs.models import Job
from persistence.notifications.models import Notification
from persistence.reminders.models import Reminder
from persistence.unit_of_work import UnitOfWork
from services import jobs, reminders, tasks
from services.clock import SystemClock
from services.errors import DomainError
from tests.helpers import migrated_database
from tests.processes import CHARTER, charter_environment, log_tail, stop_process

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/13"
"""A Redis database no test uses (the tests start redis-servers of their own); flushed."""
DEFAULT_LAYOUTS = "1x1,1x2"
"""The throughput runs' worker layouts, `<processes>x<threads>`: one process of 1 thread, then of 2
(``--layouts 1x1,1x2,2x1`` adds two processes of 1 thread; a third run per queue, ~35 s each)."""
REMINDERS_PER_TASK = 10
REMINDERS_PER_UNIT_OF_WORK = 100
REMINDER_WORKER_THREADS = 2
"""`charter worker`'s default."""
FIRE_WITHIN_SECONDS = 5.0
"""The issue's promise: a reminder fires within 5 seconds of its time."""
START_TIMEOUT_SECONDS = 30.0
POLL_SECONDS = 0.2


class BenchFailed(SystemExit):
    """The measurement is void (a worker died, a deadline passed, a reminder did not fire
    exactly once): raised with the reason."""


@dataclass(frozen=True)
class Queue:
    """The huey queue a run uses: ``sqlite`` (a file in the run's folder) or ``redis``."""

    name: str
    redis_url: str | None = None

    def environment(self, workdir: Path) -> dict[str, str]:
        """The worker settings that select this queue."""
        values = {"JOB_QUEUE": self.name, "VAR_DIR": str(workdir / "var")}
        if self.redis_url:
            values["REDIS_URL"] = self.redis_url
        return values

    def job_engine(self, workdir: Path, extra_modules: Sequence[str] = ()) -> jobs.JobEngine:
        """A job engine that enqueues onto this queue (this process only enqueues)."""
        huey = make_huey(self.name, sqlite_path=workdir / "var" / "job-queue.db", redis_url=self.redis_url)  # type: ignore[arg-type]
        return jobs.JobEngine(kinds=job_kinds.discover(extra_modules), queue=HueyJobQueue(huey))

    @contextlib.contextmanager
    def emptied(self) -> Iterator[None]:
        """Redis: FLUSHDB of this one database before and after (nothing for SQLite, whose file
        lives in the run's temporary folder)."""
        if self.redis_url is None:
            yield
            return
        client = redis.Redis.from_url(self.redis_url, socket_timeout=5, socket_connect_timeout=5)
        try:
            client.flushdb()
            yield
        finally:
            client.flushdb()
            client.close()


def checked_redis_url(url: str) -> str | None:
    """`url` when it names a numbered database on a loopback Redis that answers PING within 2 s;
    None (the Redis rows are skipped) when it does not answer.

    Raises:
        BenchFailed: the URL names another host or no database number (the bench flushes it).
    """
    parsed = urlsplit(url)
    if parsed.scheme != "redis" or parsed.hostname not in ("127.0.0.1", "localhost") or not parsed.path[1:].isdigit():
        raise BenchFailed(f"BENCH_REDIS_URL must be redis://127.0.0.1:<port>/<db number> (it is flushed): {url}")
    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError:
        return None
    finally:
        client.close()
    return url


def layouts(text: str) -> list[tuple[int, int]]:
    """``"1x1,1x2"`` → ``[(1, 1), (1, 2)]``: (worker processes, threads each), each 1 to 4.

    Raises:
        argparse.ArgumentTypeError: anything else.
    """
    parsed = []
    for item in text.split(","):
        processes, _, threads = item.strip().partition("x")
        if not (processes.isdigit() and threads.isdigit() and 1 <= int(processes) <= 4 and 1 <= int(threads) <= 4):
            raise argparse.ArgumentTypeError(f"not <processes>x<threads> (1 to 4 each): {item!r}")
        parsed.append((int(processes), int(threads)))
    return parsed


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile of `values` (not empty): the smallest value with at least
    `fraction` of them at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def wait_for(condition: Callable[[], Any], what: str, timeout: float, logs: Sequence[Path]) -> Any:
    """Poll `condition` every POLL_SECONDS until it is truthy (its value is returned).

    Raises:
        BenchFailed: `timeout` seconds passed first (the workers' log tails are in the message).
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(POLL_SECONDS)
    tails = "\n".join(f"--- {path.name}\n{log_tail(path)}" for path in logs)
    raise BenchFailed(f"{what} did not happen within {timeout:.0f} s:\n{tails}")


@contextlib.contextmanager
def fresh_database(workdir: Path) -> Iterator[str]:
    """A new migrated database: on DATABASE_URL's server when it names PostgreSQL (dropped on
    exit), else a SQLite file in `workdir`. Yields its URL."""
    server = os.environ.get("DATABASE_URL", "")
    postgres = server if server.startswith("postgresql") else None
    with contextlib.ExitStack() as stack:
        with contextlib.redirect_stderr(io.StringIO()):  # alembic's INFO line per migration, per run
            url = stack.enter_context(migrated_database(postgres, sqlite_dir=workdir, prefix="charter_bench_jobs"))
        yield url


@contextlib.contextmanager
def running_workers(
    url: str, workdir: Path, queue: Queue, *, processes: int, threads: int, extra_modules: str = ""
) -> Iterator[list[Path]]:
    """Start `processes` `charter worker --threads <threads>` on `url` and `queue` (logs at
    INFO, the production default, in JSON, into `workdir`), wait until each has logged
    `job_worker_started`, and yield their log files. Stops every one of them on exit."""
    environment = charter_environment(
        DATABASE_URL=url,
        LOG_LEVEL="INFO",
        LOG_FORMAT="json",
        PYTHONPATH=str(ROOT),
        **queue.environment(workdir),
        **({"JOB_EXTRA_MODULES": extra_modules} if extra_modules else {}),
    )
    started: list[subprocess.Popen] = []
    logs: list[Path] = []
    try:
        for number in range(processes):
            log = workdir / f"worker-{number}.log"
            with log.open("wb") as output:
                started.append(
                    subprocess.Popen(
                        [str(CHARTER), "worker", "--threads", str(threads)],
                        cwd=workdir,
                        env=environment,
                        stdout=output,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                    )
                )
            logs.append(log)

        def ready() -> bool:
            for process, log in zip(started, logs, strict=True):
                if process.poll() is not None:
                    raise BenchFailed(f"a worker exited with {process.returncode}:\n{log_tail(log)}")
            return all("job_worker_started" in log.read_text(errors="replace") for log in logs)

        wait_for(ready, "the workers' start", START_TIMEOUT_SECONDS, logs)
        yield logs
    finally:
        for process in started:
            stop_process(process, timeout=10)


def _scalar(factory: sessionmaker[Session], statement: Any) -> Any:
    with factory() as session:
        return session.scalar(statement)


def _rows(factory: sessionmaker[Session], statement: Any) -> list[Any]:
    with factory() as session:
        return list(session.execute(statement))


def measure_throughput(queue: Queue, *, processes: int, threads: int, count: int) -> dict[str, Any]:
    """Enqueue `count` no-op jobs (one unit of work each) while `processes` workers of `threads`
    threads run them; jobs/s from the first enqueue to the last `finished_at`, the producer's
    rate, and p50/p99 of each job's `created_at` → `finished_at`.

    Raises:
        BenchFailed: a job did not succeed, or they did not all finish in time.
    """
    with (
        tempfile.TemporaryDirectory(prefix="charter-bench-jobs-") as folder,
        fresh_database(Path(folder)) as url,
        queue.emptied(),
    ):
        workdir = Path(folder)
        db = make_engine(url, pool_size=2, max_overflow=2)
        try:
            factory = make_session_factory(db)
            engine = queue.job_engine(workdir, ["bench.job_kinds"])
            clock = SystemClock()
            with running_workers(
                url, workdir, queue, processes=processes, threads=threads, extra_modules="bench.job_kinds"
            ) as logs:
                first = datetime.now(UTC)
                started = time.perf_counter()
                for _ in range(count):
                    with UnitOfWork(factory) as uow:
                        jobs.enqueue(uow=uow, clock=clock, engine=engine, kind=NOOP_KIND, owner_id=None)
                enqueue_seconds = time.perf_counter() - started
                ours = Job.kind == NOOP_KIND

                def finished() -> bool:
                    done = _scalar(factory, select(func.count()).where(ours, Job.status.in_(("succeeded", "failed"))))
                    return done == count

                wait_for(finished, f"{count} jobs", max(120.0, count / 10), logs)
            rows = _rows(factory, select(Job.status, Job.attempts, Job.created_at, Job.finished_at).where(ours))
        finally:
            db.dispose()
    unsucceeded = [row for row in rows if row.status != "succeeded"]
    if len(rows) != count or unsucceeded:
        raise BenchFailed(f"{len(unsucceeded)} of {len(rows)} jobs did not succeed: the measurement is void")
    last = max(row.finished_at for row in rows)
    seconds = (last - first).total_seconds()
    latencies = [(row.finished_at - row.created_at).total_seconds() for row in rows]
    return {
        "queue": queue.name,
        "processes": processes,
        "threads": threads,
        "jobs": count,
        "seconds": seconds,
        "jobs_per_second": count / seconds,
        "enqueue_per_second": count / enqueue_seconds,
        "latency_p50_ms": percentile(latencies, 0.50) * 1000,
        "latency_p99_ms": percentile(latencies, 0.99) * 1000,
        "retried": sum(row.attempts > 1 for row in rows),
    }


def _owner(factory: sessionmaker[Session], clock: SystemClock) -> uuid.UUID:
    now = clock.now()
    owner = User(
        id=uuid.uuid4(),
        email=f"bench-{uuid.uuid4().hex[:8]}@example.com",
        display_name="Bench",
        password_hash="x",
        role="user",
        status="active",
        created_at=now,
        updated_at=now,
    )
    with UnitOfWork(factory) as uow:
        uow.users.add(owner)
    return owner.id


def _create_reminders(
    factory: sessionmaker[Session], engine: jobs.JobEngine, *, owner_id: uuid.UUID, count: int, remind_at: datetime
) -> None:
    """`count` `in_app` reminders at `remind_at` through `services.reminders.create_reminder`
    (each enqueues its `reminders.fire` job, due then), REMINDERS_PER_TASK per task, one unit of
    work per REMINDERS_PER_UNIT_OF_WORK (the bench's set-up, kept short)."""
    clock = SystemClock()
    for first_of_unit in range(0, count, REMINDERS_PER_UNIT_OF_WORK):
        with UnitOfWork(factory) as uow:
            for first in range(
                first_of_unit, min(count, first_of_unit + REMINDERS_PER_UNIT_OF_WORK), REMINDERS_PER_TASK
            ):
                task = tasks.create_task(uow=uow, clock=clock, owner_id=owner_id, data={"title": f"Bench task {first}"})
                for _ in range(min(REMINDERS_PER_TASK, count - first)):
                    reminders.create_reminder(
                        uow=uow,
                        clock=clock,
                        engine=engine,
                        owner_id=owner_id,
                        task_id=task.id,
                        data={"remind_at": remind_at.isoformat()},
                    )


def measure_reminders(queue: Queue, *, count: int, lead: float) -> dict[str, Any]:
    """`count` reminders due at one instant `lead` seconds ahead, one worker of
    REMINDER_WORKER_THREADS threads; each reminder's fired_at - remind_at, and who fired it.

    Raises:
        BenchFailed: creating them took longer than `lead`, they did not all fire in time, or one
            did not fire exactly once (status, fired_at, its notification).
    """
    with (
        tempfile.TemporaryDirectory(prefix="charter-bench-reminders-") as folder,
        fresh_database(Path(folder)) as url,
        queue.emptied(),
    ):
        workdir = Path(folder)
        db = make_engine(url, pool_size=2, max_overflow=2)
        try:
            factory = make_session_factory(db)
            engine = queue.job_engine(workdir)
            clock = SystemClock()
            with running_workers(url, workdir, queue, processes=1, threads=REMINDER_WORKER_THREADS) as logs:
                owner_id = _owner(factory, clock)
                remind_at = clock.now() + timedelta(seconds=lead)
                started = time.perf_counter()
                try:
                    _create_reminders(factory, engine, owner_id=owner_id, count=count, remind_at=remind_at)
                except DomainError as error:
                    raise BenchFailed(
                        f"creating the reminders overran their time: raise --lead ({error.detail})"
                    ) from None
                create_seconds = time.perf_counter() - started
                if clock.now() >= remind_at:
                    raise BenchFailed(f"creating {count} reminders took {create_seconds:.1f} s: raise --lead")

                def fired() -> bool:
                    return _scalar(factory, select(func.count()).where(Reminder.status == "fired")) == count

                wait_for(fired, f"{count} reminders' firing", lead + 120.0, logs)
                fire_jobs = Job.kind == reminders.FIRE_KIND

                def jobs_ended() -> bool:
                    pending = _scalar(
                        factory, select(func.count()).where(fire_jobs, Job.status.in_(("queued", "running")))
                    )
                    return pending == 0

                wait_for(jobs_ended, "the reminders.fire jobs' end", 120.0, logs)
            rows = _rows(factory, select(Reminder.id, Reminder.status, Reminder.remind_at, Reminder.fired_at))
            notes = dict(
                _rows(
                    factory,
                    select(Notification.reminder_id, func.count()).group_by(Notification.reminder_id),
                )
            )
            job_rows = _rows(factory, select(Job.status, Job.result).where(fire_jobs))
        finally:
            db.dispose()
    problems = []
    if len(rows) != count or any(row.status != "fired" or row.fired_at is None for row in rows):
        problems.append(f"{sum(row.status == 'fired' for row in rows)} of {len(rows)} rows fired, {count} made")
    if any(row.fired_at is not None and row.fired_at < row.remind_at for row in rows):
        problems.append("a reminder fired before its time")
    if notes != {row.id: 1 for row in rows}:
        problems.append(f"notifications per reminder are not exactly one each: {sum(notes.values())} in all")
    if len(job_rows) != count or any(row.status != "succeeded" for row in job_rows):
        problems.append(f"{sum(row.status == 'succeeded' for row in job_rows)} of {len(job_rows)} fire jobs succeeded")
    if problems:
        raise BenchFailed("reminders did not fire exactly once: " + "; ".join(problems))
    lateness = [(row.fired_at - row.remind_at).total_seconds() for row in rows]
    by_job = sum(bool(row.result and row.result.get("fired")) for row in job_rows)
    return {
        "queue": queue.name,
        "reminders": count,
        "fired": len(rows),
        "create_seconds": create_seconds,
        "p50_s": percentile(lateness, 0.50),
        "p99_s": percentile(lateness, 0.99),
        "max_s": max(lateness),
        "min_s": min(lateness),
        "by_job": by_job,
        "by_sweep": count - by_job,
        "meets_5s": percentile(lateness, 0.99) <= FIRE_WITHIN_SECONDS,
    }


def report(
    throughput: list[dict[str, Any]],
    lateness: dict[str, Any] | None,
    *,
    args: argparse.Namespace,
    skipped: str,
    where: str,
    load_before: float,
) -> str:
    """The markdown section for bench/RESULTS.md: the command and the machine, then the
    throughput table (when measured) and the reminders' (when measured)."""
    stamp = dt.datetime.now(dt.UTC)
    load = f"{load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end"
    options = f"--jobs {args.jobs} --layouts {','.join(f'{p}x{t}' for p, t in args.layouts)} " * bool(throughput)
    options += f"--reminders {args.reminders} --lead {args.lead:g}" * (lateness is not None)
    only = f" --only {args.only}" if args.only else ""
    lines = [
        f"## Jobs through the queue — {stamp:%Y-%m-%d %H:%M} UTC",
        "",
        f"`{'DATABASE_URL=postgresql+psycopg://… ' if where == 'PostgreSQL' else ''}python -m bench.jobs "
        f"{options.strip()}{only}`: real `charter worker` processes on {where} (a fresh database per run), "
        f"logging at INFO; the same {os.cpu_count()}-core machine (1-minute load average {load}: other jobs "
        "share it).",
    ]
    if throughput:
        lines += [
            "",
            f"Throughput: {args.jobs:,} jobs of the bench's no-op kind enqueued one per unit of work while the "
            "workers run them; jobs/s from the first enqueue to the last `finished_at`; latency is each job's "
            "`created_at` → `finished_at`.",
            "",
            "| queue | worker processes x threads | jobs/s | enqueued/s (producer) | latency p50 ms | p99 ms "
            "| retried |",
            "|---|---|---:|---:|---:|---:|---:|",
            *(
                f"| {r['queue']} | {r['processes']} x {r['threads']} | {r['jobs_per_second']:.0f} | "
                f"{r['enqueue_per_second']:.0f} | {r['latency_p50_ms']:.0f} | {r['latency_p99_ms']:.0f} | "
                f"{r['retried']} |"
                for r in throughput
            ),
        ]
        if skipped:
            lines += ["", skipped]
    if lateness is not None:
        lines += [
            "",
            f"Reminder lateness: {lateness['reminders']:,} `in_app` reminders on "
            f"{math.ceil(lateness['reminders'] / REMINDERS_PER_TASK)} tasks, all due {args.lead:g} s after their "
            f"creation began (creating them took {lateness['create_seconds']:.1f} s), one worker of "
            f"{REMINDER_WORKER_THREADS} threads on the {lateness['queue']} queue, reminder sweep every 2 s (the "
            "defaults); fired_at - remind_at:",
            "",
            "| fired (each once) | by its job | by the sweep | p50 s | p99 s | max s | p99 within 5 s |",
            "|---:|---:|---:|---:|---:|---:|---|",
            f"| {lateness['fired']:,} | {lateness['by_job']:,} | {lateness['by_sweep']:,} | "
            f"{lateness['p50_s']:.2f} | {lateness['p99_s']:.2f} | {lateness['max_s']:.2f} | "
            f"{'yes' if lateness['meets_5s'] else '**no**'} |",
        ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000, help="jobs per throughput run (default 1000)")
    parser.add_argument("--reminders", type=int, default=1000, help="reminders due at once (default 1000)")
    parser.add_argument(
        "--lead",
        type=float,
        default=30.0,
        help="seconds from starting to create the reminders to their time (default 30)",
    )
    parser.add_argument(
        "--layouts",
        type=layouts,
        default=layouts(DEFAULT_LAYOUTS),
        help=f"throughput runs' worker layouts, <processes>x<threads>, comma-separated (default {DEFAULT_LAYOUTS})",
    )
    parser.add_argument("--only", choices=("throughput", "reminders"), help="measure only this part")
    parser.add_argument("--no-save", action="store_true", help="print the tables only")
    args = parser.parse_args()
    if not CHARTER.exists():
        raise BenchFailed(f"the charter console script is not installed next to {sys.executable}")
    redis_url = checked_redis_url(os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS_URL))
    queues = [Queue("sqlite")] + ([Queue("redis", redis_url)] if redis_url else [])
    skipped = "" if redis_url else "Redis did not answer on BENCH_REDIS_URL: no Redis rows."
    load_before = os.getloadavg()[0]
    where = "PostgreSQL" if os.environ.get("DATABASE_URL", "").startswith("postgresql") else "SQLite"
    throughput = []
    for queue in queues if args.only != "reminders" else []:
        for processes, threads in args.layouts:
            result = measure_throughput(queue, processes=processes, threads=threads, count=args.jobs)
            print(
                f"{queue.name} {processes}x{threads}: {result['jobs_per_second']:.0f} jobs/s "
                f"(producer {result['enqueue_per_second']:.0f}/s)",
                flush=True,
            )
            throughput.append(result)
    lateness = (
        measure_reminders(Queue("sqlite"), count=args.reminders, lead=args.lead) if args.only != "throughput" else None
    )
    text = report(throughput, lateness, args=args, skipped=skipped, where=where, load_before=load_before)
    print(text)
    if not args.no_save:
        stamp = dt.datetime.now(dt.UTC)
        out = ROOT / "bench" / "results" / f"jobs-{stamp:%Y-%m-%d-%H%M}-{where.lower()}"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_suffix(".json").write_text(
            json.dumps(
                {"date": stamp.isoformat(), "args": vars(args), "throughput": throughput, "reminders": lateness},
                indent=2,
            )
        )
        out.with_suffix(".md").write_text(text)
        summary = ROOT / "bench" / "RESULTS.md"
        previous = summary.read_text() if summary.exists() else "# Benchmark results\n"
        summary.write_text(previous.rstrip("\n") + "\n\n" + text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
