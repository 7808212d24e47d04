"""The job queue, the adapter of the `services.jobs.JobQueue` port: huey delivers job ids to
`charter worker` processes — `SqliteHuey` on a file (one machine, the embedded default) or
`RedisHuey` (several machines). huey only delivers: the job's row in the application database
is the truth, so a message lost with a killed worker costs nothing (the sweep re-queues)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import structlog
from huey import Huey, RedisHuey, SqliteHuey

log = structlog.get_logger(__name__)

TASK_NAME = "charter.run_job"
"""The one huey task: run the job whose id it carries."""
QUEUE_NAME = "charter-jobs"


def make_huey(backend: Literal["sqlite", "redis"], *, sqlite_path: Path, redis_url: str | None) -> Huey:
    """A huey instance that stores no results (the job row holds them).

    Args:
        backend: ``sqlite`` (the file `sqlite_path`, its folder made) or ``redis`` (`redis_url`).
    """
    if backend == "redis":
        if not redis_url:
            raise ValueError("the redis job queue needs a Redis URL")
        return RedisHuey(QUEUE_NAME, url=redis_url, results=False)
    sqlite_path.parent.mkdir(parents=True, exist_ok=True)
    return SqliteHuey(QUEUE_NAME, filename=str(sqlite_path), results=False)


class HueyJobQueue:
    """Delivers job ids through huey's task `TASK_NAME`.

    Args:
        huey: from `make_huey`.
        handler: what a worker does with a delivered id (`server/worker.py`); None in a process
            that only enqueues (the API): a delivery consumed there would fail loudly.
    """

    def __init__(self, huey: Huey, handler: Callable[[str], None] | None = None) -> None:
        self.huey = huey
        self.handler = handler

        def run_job(job_id: str) -> None:
            if self.handler is None:
                raise RuntimeError("this process only enqueues jobs; run `charter worker`")
            self.handler(job_id)

        self.task = huey.task(name=TASK_NAME)(run_job)

    def deliver(self, job_id: uuid.UUID, *, at: datetime) -> None:
        """Enqueue `job_id` now, or schedule it for `at` when that is in the future (huey's
        scheduler moves it to the queue when due, checking once a second). A queue that does not
        answer is logged, not raised: the job's row stays queued and the sweep delivers it again."""
        try:
            if at <= datetime.now(UTC):
                self.task(str(job_id))
            else:
                self.task.schedule(args=(str(job_id),), eta=at)
        except Exception as error:  # Redis down, SQLite locked past its timeout, …
            log.warning("job_delivery_failed", job_id=str(job_id), error=type(error).__name__)
