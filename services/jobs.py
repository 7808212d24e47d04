"""Background jobs (issue 14): the engine every area that starts long work uses.

A job is a row of the application database (`persistence/jobs`), which is the truth about it;
the queue (huey, behind the `JobQueue` port) only delivers job ids to workers. The rules, after
ARCHITECTURE.md ("Jobs are at-least-once and idempotent") and API_STYLE ("Long-running work"):

* **Claim atomically.** A worker runs a job only after one conditional UPDATE took it from
  `queued` to `running` (`JobRepository.claim`); a duplicate delivery, a cancelled job or a job
  another worker holds is left alone. The worker id and attempt number fence every later write.
* **Lease.** A running job is leased to its worker for `JobEngine.lease`; the worker renews it
  (`renew_lease`, and every `JobRun.checkpoint`) while the job runs. `sweep` puts a job whose
  lease ran out (its worker was killed) back in the queue, so every job runs at least once, and
  job functions are written to be idempotent.
* **Retries** per kind (`RetryPolicy`): exponential backoff with jitter, at most
  `max_attempts` attempts; the last error is kept; after the last attempt the job is `failed`
  (a dead letter: listed with `status=failed`, and `retry` queues it again).
* **Cancel**: a queued job is cancelled at once, a running one at its next checkpoint.

Job kinds are declared by the modules of the `jobs` package (`JobKind`), discovered by the
wiring and handed to the engine; job functions receive a `JobRun` and call services.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from persistence.jobs.models import FINISHED_STATUSES, Job
from persistence.jobs.repository import ANY_OWNER
from persistence.unit_of_work import UnitOfWork
from services import events
from services.clock import Clock
from services.cursors import decode_cursor, page
from services.errors import Conflict, DomainError, Forbidden, NotFound, ProblemType
from services.events import EventType
from services.notifications import MailTransport

if TYPE_CHECKING:
    from persistence.accounts.models import User


class JobStatus(StrEnum):
    """A job's status; the contract lists the same values."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class JobStateConflict(Conflict):
    """The job is in a state that does not allow this (cancelling a finished job, retrying one
    that has not failed or been cancelled)."""

    problem = ProblemType("/problems/job-state-conflict", "Job state conflict", 409)


class JobFailed(DomainError):
    """What a job's `error` says when its function raised something unexpected or its worker
    stopped on the last attempt. Never an HTTP answer: it is the problem object kept on the job."""

    problem = ProblemType("/problems/job-failed", "Job failed", 500)


class JobCancelled(Exception):
    """Raised by `JobRun.checkpoint` when the job was asked to stop: the job function lets it
    propagate (after undoing what must not stay half done) and the job ends `cancelled`."""


class LeaseLost(Exception):
    """Raised by `JobRun.checkpoint` when this attempt no longer holds the job (its lease ran
    out and the sweep gave it to another attempt): the job function stops, writing nothing."""


class JobQueue(Protocol):
    """The port to the queue that delivers job ids to workers (`adapters/job_queue.py`: huey)."""

    def deliver(self, job_id: uuid.UUID, *, at: datetime) -> None:
        """Have a worker call `run` for `job_id` at `at` (an aware datetime) or soon after.

        Raises nothing: a queue that cannot be reached is logged by the adapter, and the job,
        still queued in the database, is delivered again by `sweep` (`JobEngine.redeliver_after`).
        """
        ...


@dataclass(frozen=True)
class RetryPolicy:
    """How a kind's failed attempts are retried.

    Attributes:
        max_attempts: attempts in all (1: never retried), at least 1.
        base_delay_seconds: the delay after the first failed attempt, before jitter.
        max_delay_seconds: the longest delay, before jitter.
        jitter: the fraction of the delay that is random (0 to 1): the delay is drawn uniformly
            from ``[d * (1 - jitter), d]`` — "equal jitter" with the default 0.5 (AWS Architecture
            Blog, "Exponential Backoff And Jitter", 2015), so retries of many jobs that failed
            together spread out instead of hitting a recovering dependency at once.
    """

    max_attempts: int = 5
    base_delay_seconds: float = 10.0
    max_delay_seconds: float = 3600.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.base_delay_seconds < 0 or not 0 <= self.jitter <= 1:
            raise ValueError("max_attempts >= 1, base_delay_seconds >= 0 and 0 <= jitter <= 1")

    def delay(self, failed_attempts: int, draw: float) -> timedelta:
        """The wait before the next attempt after `failed_attempts` (1 or more) failed attempts.

        ``d = min(max_delay, base_delay * 2 ** (failed_attempts - 1))``, then
        ``d * (1 - jitter * draw)`` with `draw` uniform in [0, 1) (0: the whole delay).
        """
        exponent = min(failed_attempts - 1, 62)  # 2 ** 62 s is past any max_delay; no overflow
        ceiling = min(self.max_delay_seconds, self.base_delay_seconds * 2.0**exponent)
        return timedelta(seconds=ceiling * (1 - self.jitter * draw))


@dataclass(frozen=True)
class Subject:
    """What a job works on: a resource type (e.g. ``crawl``) and its id."""

    type: str
    id: str


JobFunction = Callable[["JobRun"], "dict[str, Any] | None"]
"""A job function: does the work of one attempt and returns the job's result (a JSON object)
or None. Idempotent: it may run again after a worker died half way."""


@dataclass(frozen=True)
class JobKind:
    """A kind of job, declared by a module of the `jobs` package in its `JOB_KINDS`.

    Attributes:
        name: ``<area>.<what>``, e.g. ``maintenance.purge_expired`` (at most 100 characters).
        run: the job function.
        retry: how failed attempts are retried.
    """

    name: str
    run: JobFunction
    retry: RetryPolicy = field(default_factory=RetryPolicy)


@dataclass
class JobEngine:
    """What the job services need besides a unit of work and a clock (built by the wiring).

    Attributes:
        kinds: every declared kind, by name.
        queue: the delivery port.
        lease: how long a claim or a renewal holds a job.
        redeliver_after: a queued job still waiting this long after it was due is delivered
            again by `sweep` (its delivery was lost, e.g. the process died between the commit
            and the hand-over to the queue); duplicates are harmless, the claim decides.
        random: a uniform draw in [0, 1) for the retry jitter (a test passes a fixed one).
        mail: sends mail at once, raising on failure, for job functions that mail (the
            attempt fails and the kind's retry policy applies); None where no job mails.
        context: what job functions need from the wiring besides units of work and a clock,
            by area (e.g. ``"webhooks"``: `services.webhooks.WebhookConfig`, its adapters).
    """

    kinds: Mapping[str, JobKind]
    queue: JobQueue
    lease: timedelta = timedelta(seconds=60)
    redeliver_after: timedelta = timedelta(minutes=5)
    random: Callable[[], float] = field(default=lambda: 0.5)
    mail: MailTransport | None = None
    context: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class JobPage:
    """One page of jobs and the cursor of the next page (None on the last page)."""

    items: list[Job]
    next_cursor: str | None


def problem_object(problem: ProblemType, detail: str) -> dict[str, Any]:
    """An RFC 9457 problem object for a job's `error`."""
    return {"type": problem.type, "title": problem.title, "status": problem.status, "detail": detail}


# --- starting work -----------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueStatistics:
    """The job queue at one moment (what `/metrics` exports and the alert rules in
    ops/prometheus watch): jobs queued and running by kind, and how long the oldest due job has
    waited, in seconds (0 when none waits)."""

    queued: dict[str, int]
    running: dict[str, int]
    oldest_due_age_seconds: float


def queue_statistics(*, uow: UnitOfWork, clock: Clock) -> QueueStatistics:
    """The queue now, from the jobs table (the source of truth: the huey queue only carries
    deliveries). A due job older than a few minutes means no worker is taking jobs."""
    now = clock.now()
    counts, oldest = uow.jobs.queue_statistics(now=now)
    queued = {kind: count for (kind, status), count in counts.items() if status == "queued"}
    running = {kind: count for (kind, status), count in counts.items() if status == "running"}
    age = max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0
    return QueueStatistics(queued=queued, running=running, oldest_due_age_seconds=age)


def enqueue(
    *,
    uow: UnitOfWork,
    clock: Clock,
    engine: JobEngine,
    kind: str,
    owner_id: uuid.UUID | None,
    subject: Subject | None = None,
    payload: Mapping[str, Any] | None = None,
    at: datetime | None = None,
) -> Job:
    """Record a new queued job in `uow` and hand its id to the queue after the commit (never if
    the work is rolled back). An operation that starts work answers 202 with
    ``Location: /api/v1/jobs/{job.id}`` (API_STYLE, Long-running work).

    Args:
        kind: a declared kind's name.
        owner_id: the user the job works for (who may see it), or None for the service's own work.
        subject: the resource the job works on, if any.
        payload: the job function's arguments, a JSON object.
        at: when the job is due (an aware datetime; None or a past instant: now). The queue
            holds it until then and no worker claims it earlier (`JobRepository.claim`).

    Raises:
        LookupError: `kind` is not declared (a bug of the calling area).
    """
    declared = engine.kinds.get(kind)
    if declared is None:
        raise LookupError(f"no job kind {kind!r} is declared")
    now = clock.now()
    due = max(at, now) if at is not None else now
    job = Job(
        id=uuid.uuid4(),
        kind=kind,
        owner_id=owner_id,
        subject_type=subject.type if subject else None,
        subject_id=subject.id if subject else None,
        status=JobStatus.QUEUED,
        cancel_requested=False,
        attempts=0,
        max_attempts=declared.retry.max_attempts,
        next_attempt_at=due,
        payload=dict(payload or {}),
        progress_done=0,
        created_at=now,
    )
    uow.jobs.add(job)
    _deliver_after_commit(uow, engine, job.id, due)
    return job


def enqueue_unless_pending(*, uow: UnitOfWork, clock: Clock, engine: JobEngine, kind: str) -> Job | None:
    """`enqueue` a job of the service's own (no owner, no subject, no payload) unless one of that
    kind is already queued or running: for recurring maintenance. Two callers at once may both
    enqueue one; such jobs are idempotent. Returns the new job, or None."""
    if uow.jobs.pending_of_kind(kind):
        return None
    return enqueue(uow=uow, clock=clock, engine=engine, kind=kind, owner_id=None)


def _deliver_after_commit(uow: UnitOfWork, engine: JobEngine, job_id: uuid.UUID, at: datetime) -> None:
    uow.after_commit(lambda: engine.queue.deliver(job_id, at=at))


# --- reading and changing jobs through the API --------------------------------------------------


def _is_admin(caller: User) -> bool:
    return caller.role == "admin"


def get_job(*, uow: UnitOfWork, caller: User, job_id: uuid.UUID) -> Job:
    """The job, if the caller owns it or is an administrator.

    Raises:
        NotFound: no such job, or another user's (API_STYLE, Security: no existence leak).
    """
    job = uow.jobs.get(job_id)
    if job is None or not (_is_admin(caller) or job.owner_id == caller.id):
        raise NotFound("No job with this id exists for you.")
    return job


def exported_jobs(*, uow: UnitOfWork, owner_id: uuid.UUID) -> list[Job]:
    """Every job of the owner, finished ones included, oldest first: their data export's section
    (GDPR articles 15 and 20, as `GET /api/v1/jobs` shows them to the owner).

    The handler answers each as the contract's `Job`, which never holds the job's `payload`
    (its function's arguments: a `reminder_id` or a `delivery_id` today, but a later kind's may
    hold what must not be read back, such as a credential); `result` and `error` are in it, as
    the owner already reads them through the jobs API. The service's own jobs (no owner) are in
    nobody's export.

    Args:
        owner_id: the user whose jobs these are.
    """
    return uow.jobs.all_of_owner(owner_id)


def list_jobs(
    *,
    uow: UnitOfWork,
    caller: User,
    limit: int,
    cursor: str | None = None,
    statuses: list[str] | None = None,
    kind: str | None = None,
    owner_id: uuid.UUID | None = None,
) -> JobPage:
    """The caller's jobs (an administrator's: everyone's, or `owner_id`'s), newest first, one
    page of at most `limit` after `cursor` (a keyset cursor: created_at and id).

    Raises:
        Forbidden: `owner_id` names another user and the caller is not an administrator.
        InvalidInput: a cursor this list did not make.
    """
    if _is_admin(caller):
        owner: uuid.UUID | object = owner_id if owner_id is not None else ANY_OWNER
    elif owner_id is not None and owner_id != caller.id:
        raise Forbidden("Only administrators may list other users' jobs.")
    else:
        owner = caller.id
    rows = uow.jobs.list_page(
        limit=limit + 1,
        owner_id=owner,
        before=decode_cursor(cursor) if cursor else None,
        statuses=statuses,
        kind=kind,
    )
    items, next_cursor = page(rows, limit, lambda job: (job.created_at, job.id))
    return JobPage(items=items, next_cursor=next_cursor)


def cancel(*, uow: UnitOfWork, clock: Clock, caller: User, job_id: uuid.UUID) -> Job:
    """Cancel a job: a queued one at once (`cancelled`); a running one is asked to stop and
    becomes `cancelled` at its next checkpoint (`cancel_requested` is true until then).

    Raises:
        NotFound: as `get_job`.
        JobStateConflict: the job has finished (succeeded, failed or cancelled).
    """
    get_job(uow=uow, caller=caller, job_id=job_id)
    job = uow.jobs.get_for_change(job_id)
    if job is None:
        raise NotFound("No job with this id exists for you.")
    if job.status in FINISHED_STATUSES:
        raise JobStateConflict(f"The job has finished ({job.status}); there is nothing to cancel.")
    job.cancel_requested = True
    if job.status == JobStatus.QUEUED:
        job.status = JobStatus.CANCELLED
        job.finished_at = clock.now()
    uow.flush()
    return job


def retry(*, uow: UnitOfWork, clock: Clock, engine: JobEngine, caller: User, job_id: uuid.UUID) -> Job:
    """Queue a failed or cancelled job again, with a fresh count of attempts (its last error is
    kept until an attempt succeeds); the queue gets it after the commit.

    Raises:
        NotFound: as `get_job`.
        JobStateConflict: the job is queued, running or succeeded.
    """
    get_job(uow=uow, caller=caller, job_id=job_id)
    job = uow.jobs.get_for_change(job_id)
    if job is None:
        raise NotFound("No job with this id exists for you.")
    if job.status not in (JobStatus.FAILED, JobStatus.CANCELLED):
        raise JobStateConflict(f"Only a failed or cancelled job can be retried; this one is {job.status}.")
    now = clock.now()
    job.status = JobStatus.QUEUED
    job.cancel_requested = False
    job.attempts = 0
    job.next_attempt_at = now
    job.started_at = None
    job.finished_at = None
    job.lease_expires_at = None
    job.worker_id = None
    job.result = None
    job.progress_done = 0
    job.progress_total = None
    job.progress_message = None
    uow.flush()
    _deliver_after_commit(uow, engine, job.id, now)
    return job


# --- running jobs (the worker) ------------------------------------------------------------------


class Outcome(StrEnum):
    """What `run` did with a delivery."""

    NOT_CLAIMED = "not_claimed"
    """Not run: cancelled, held by another worker, already finished, not due yet, or unknown."""
    SUCCEEDED = "succeeded"
    RETRYING = "retrying"
    FAILED = "failed"
    CANCELLED = "cancelled"
    LEASE_LOST = "lease_lost"
    """Run, but the lease was taken away meanwhile: nothing was written (another attempt owns it)."""


@dataclass(frozen=True)
class RunReport:
    """`run`'s answer: the outcome, the attempt, and the exception of a failed attempt (for the
    worker's log, with its traceback)."""

    outcome: Outcome
    attempt: int = 0
    error: BaseException | None = None
    kind: str | None = None
    """The job's kind, once it was claimed (for the worker's log and trace)."""


@dataclass
class JobRun:
    """What a job function gets: the job's data, the attempt, a clock, units of work, and
    `checkpoint` to report progress, keep the lease and learn whether to stop.

    Attributes:
        payload: the job's arguments (a JSON object).
        owner_id, subject: whom and what the job is for.
        attempt: this attempt's number (1 for the first).
    """

    job_id: uuid.UUID
    kind: str
    owner_id: uuid.UUID | None
    subject: Subject | None
    payload: dict[str, Any]
    attempt: int
    worker_id: str
    clock: Clock
    unit_of_work: Callable[[], UnitOfWork]
    engine: JobEngine

    def checkpoint(self, done: int, total: int | None = None, message: str | None = None) -> None:
        """Record progress (`done` of `total` units, a `message` of at most 500 characters) and
        renew the lease.

        Raises:
            JobCancelled: the job was asked to stop: let it propagate.
            LeaseLost: this attempt no longer holds the job: stop at once.
        """
        now = self.clock.now()
        with self.unit_of_work() as uow:
            held = uow.jobs.change_attempt(
                self.job_id,
                held_by=self.worker_id,
                attempt=self.attempt,
                progress_done=done,
                progress_total=total,
                progress_message=message[:500] if message else None,
                lease_expires_at=now + self.engine.lease,
            )
            job = uow.jobs.get(self.job_id) if held else None
        if job is None:
            raise LeaseLost(str(self.job_id))
        if job.cancel_requested:
            raise JobCancelled(str(self.job_id))


def run(
    *,
    engine: JobEngine,
    unit_of_work: Callable[[], UnitOfWork],
    clock: Clock,
    job_id: uuid.UUID,
    worker_id: str,
    on_claimed: Callable[[int], None] | None = None,
) -> RunReport:
    """One delivery of `job_id` to the worker `worker_id`: claim it, run its kind's function,
    write the outcome (each step a unit of work of its own, from `unit_of_work`).

    Outcomes: succeeded (the function's result kept); a failure is retried after the kind's
    backoff (`queued` again, the error kept) until `max_attempts`, then `failed` — at once for a
    `DomainError` (a rule refused the work: trying again would not change that) or an unknown
    kind; `cancelled` when the function let `JobCancelled` through. Writes are fenced by the
    worker id and attempt: an attempt that lost its lease writes nothing. `on_claimed(attempt)`
    is called once the job is claimed, before its function runs (the worker starts renewing
    the lease there).
    """
    now = clock.now()
    with unit_of_work() as uow:
        claimed = uow.jobs.claim(job_id, now=now, worker_id=worker_id, lease_until=now + engine.lease)
        job = uow.jobs.get(job_id) if claimed else None
    if job is None:
        return RunReport(Outcome.NOT_CLAIMED)
    report = _run_claimed(
        engine=engine, unit_of_work=unit_of_work, clock=clock, job=job, worker_id=worker_id, on_claimed=on_claimed
    )
    return dataclasses.replace(report, kind=job.kind)


def _run_claimed(
    *,
    engine: JobEngine,
    unit_of_work: Callable[[], UnitOfWork],
    clock: Clock,
    job: Job,
    worker_id: str,
    on_claimed: Callable[[int], None] | None,
) -> RunReport:
    """`run` once `job` is claimed: run its kind's function and write the outcome."""
    job_id = job.id
    attempt = job.attempts
    if on_claimed is not None:
        on_claimed(attempt)
    context = JobRun(
        job_id=job.id,
        kind=job.kind,
        owner_id=job.owner_id,
        subject=Subject(job.subject_type, job.subject_id) if job.subject_type and job.subject_id else None,
        payload=dict(job.payload),
        attempt=attempt,
        worker_id=worker_id,
        clock=clock,
        unit_of_work=unit_of_work,
        engine=engine,
    )

    def settle(event: EventType | None = None, **values: Any) -> bool:
        with unit_of_work() as uow:
            changed = uow.jobs.change_attempt(job_id, held_by=worker_id, attempt=attempt, **values)
            if changed and event is not None:
                _job_event(uow, clock, job, event, attempt, values)
            return changed

    kind = engine.kinds.get(job.kind)
    if kind is None:
        problem = problem_object(JobFailed.problem, f"No worker knows the job kind {job.kind!r}.")
        settle(
            EventType.JOB_FAILED, status=JobStatus.FAILED, error=problem, finished_at=clock.now(), lease_expires_at=None
        )
        return RunReport(Outcome.FAILED, attempt)
    try:
        result = kind.run(context)
    except JobCancelled:
        ended = settle(status=JobStatus.CANCELLED, finished_at=clock.now(), lease_expires_at=None)
        return RunReport(Outcome.CANCELLED if ended else Outcome.LEASE_LOST, attempt)
    except LeaseLost:
        return RunReport(Outcome.LEASE_LOST, attempt)
    except Exception as error:
        return _failed(engine, clock, kind, job, attempt, error, settle)
    ended = settle(
        EventType.JOB_SUCCEEDED,
        status=JobStatus.SUCCEEDED,
        result=result,
        error=None,
        finished_at=clock.now(),
        lease_expires_at=None,
    )
    return RunReport(Outcome.SUCCEEDED if ended else Outcome.LEASE_LOST, attempt)


def _job_event(uow: UnitOfWork, clock: Clock, job: Job, event: EventType, attempt: int, values: dict[str, Any]) -> None:
    """Record `job.succeeded` or `job.failed` for the job's owner (webhooks, issue 14). The
    service's own jobs (no owner) and webhook deliveries (an event per delivery would deliver
    itself) raise none."""
    if job.owner_id is None or job.kind.startswith("webhooks."):
        return
    finished_at = values.get("finished_at")
    data = {
        "job": {
            "id": str(job.id),
            "kind": job.kind,
            "status": str(values["status"]),
            "attempts": attempt,
            "result": values.get("result"),
            "error": values.get("error"),
            "finished_at": finished_at.isoformat().replace("+00:00", "Z") if finished_at else None,
        }
    }
    events.emit(uow, clock=clock, owner_id=job.owner_id, type=event, data=data)


def _failed(
    engine: JobEngine,
    clock: Clock,
    kind: JobKind,
    job: Job,
    attempt: int,
    error: Exception,
    settle: Callable[..., bool],
) -> RunReport:
    if isinstance(error, DomainError):
        problem = problem_object(error.problem, error.detail)
    else:
        problem = problem_object(
            JobFailed.problem,
            f"The job stopped with an unexpected error ({type(error).__name__}); the worker's log has the details.",
        )
    now = clock.now()
    if isinstance(error, DomainError) or attempt >= job.max_attempts:
        ended = settle(
            EventType.JOB_FAILED, status=JobStatus.FAILED, error=problem, finished_at=now, lease_expires_at=None
        )
        return RunReport(Outcome.FAILED if ended else Outcome.LEASE_LOST, attempt, error)
    next_attempt_at = now + kind.retry.delay(attempt, engine.random())
    ended = settle(
        status=JobStatus.QUEUED,
        error=problem,
        next_attempt_at=next_attempt_at,
        worker_id=None,
        lease_expires_at=None,
    )
    if ended:
        engine.queue.deliver(job.id, at=next_attempt_at)
    return RunReport(Outcome.RETRYING if ended else Outcome.LEASE_LOST, attempt, error)


def renew_lease(
    *,
    unit_of_work: Callable[[], UnitOfWork],
    clock: Clock,
    engine: JobEngine,
    job_id: uuid.UUID,
    worker_id: str,
    attempt: int,
) -> bool:
    """Extend the lease of a job this worker runs to now + `engine.lease` (the worker does this
    periodically while the function runs). False when this attempt no longer holds the job."""
    with unit_of_work() as uow:
        return uow.jobs.change_attempt(
            job_id, held_by=worker_id, attempt=attempt, lease_expires_at=clock.now() + engine.lease
        )


@dataclass(frozen=True)
class SweepReport:
    """What `sweep` did: jobs re-queued after their lease expired, jobs that thereby ended
    (failed on their last attempt, or cancelled as asked), and queued jobs delivered again."""

    requeued: list[uuid.UUID]
    ended: list[uuid.UUID]
    redelivered: list[uuid.UUID]


def sweep(*, unit_of_work: Callable[[], UnitOfWork], clock: Clock, engine: JobEngine, limit: int = 100) -> SweepReport:
    """Recover jobs whose worker is gone (ARCHITECTURE: "a sweep re-queues expired leases").

    A running job whose lease expired is queued again for now, or, when it was asked to stop,
    `cancelled`, or, when that was its last attempt, `failed` with a `/problems/job-failed`
    error (and the owner's `job.failed` event). Each change is conditional on the job still
    being that expired attempt, so sweeps running in several workers at once change each job
    once. Queued jobs overdue by more than
    `engine.redeliver_after` are delivered again. At most `limit` jobs of each sort per call.
    """
    now = clock.now()
    requeued: list[uuid.UUID] = []
    ended: list[uuid.UUID] = []
    with unit_of_work() as uow:
        for job in uow.jobs.expired_leases(now=now, limit=limit):
            if job.cancel_requested:
                values: dict[str, Any] = {"status": JobStatus.CANCELLED, "finished_at": now}
            elif job.attempts >= job.max_attempts:
                values = {
                    "status": JobStatus.FAILED,
                    "finished_at": now,
                    "error": problem_object(
                        JobFailed.problem,
                        f"The worker running attempt {job.attempts} of {job.max_attempts} stopped (its lease expired).",
                    ),
                }
            else:
                values = {"status": JobStatus.QUEUED, "next_attempt_at": now, "worker_id": None}
            changed = uow.jobs.change_attempt(
                job.id,
                held_by=job.worker_id or "",
                attempt=job.attempts,
                lease_expired_before=now,
                lease_expires_at=None,
                **values,
            )
            if changed:
                (requeued if values["status"] == JobStatus.QUEUED else ended).append(job.id)
                if values["status"] == JobStatus.FAILED:
                    _job_event(uow, clock, job, EventType.JOB_FAILED, job.attempts, values)
        redelivered = uow.jobs.overdue(due_before=now - engine.redeliver_after, limit=limit)
    for job_id in [*requeued, *redelivered]:
        engine.queue.deliver(job_id, at=now)
    return SweepReport(requeued=requeued, ended=ended, redelivered=redelivered)
