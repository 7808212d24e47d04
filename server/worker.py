"""The job wiring: the `JobEngine` every process builds from the settings, and `charter worker`,
the process that runs jobs (a huey consumer, a lease keeper per running job, and a sweeper).

Imported by the other wiring modules (`server.app`, `server.cli`) and by nothing else.
"""

from __future__ import annotations

import functools
import os
import random
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import structlog
from huey.consumer import Consumer

import jobs
from adapters import resilience
from adapters.address_guard import AddressGuard
from adapters.answer_extractive import ExtractiveAnswerProvider
from adapters.cache_memory import MemoryCacheBackend
from adapters.cache_redis import RedisCacheBackend
from adapters.clamd import ClamdScanner
from adapters.cron_schedule import CronSchedule
from adapters.database_dump import PostgresDumpTool, SqliteDumpTool
from adapters.file_storage import LocalFileStore
from adapters.job_queue import HueyJobQueue, make_huey
from adapters.llm_chat import OpenAIChatClient
from adapters.mail import LogMailer, SmtpMailer
from adapters.secret_box import FernetBox
from adapters.web_content import PageContentExtractor
from adapters.web_fetch import HttpxFetcher
from adapters.web_robots import ProtegoRobotsParser
from adapters.web_sitemaps import UspSitemapReader
from adapters.webhook_http import HttpxSender
from persistence.backups import DatabaseInventory, facts_of_sqlite_file
from persistence.database import make_engine, make_session_factory
from persistence.unit_of_work import UnitOfWork
from server.integration import metrics
from server.integration.payments import build_payment_provider, provider_event_config, relay_fake_events
from server.log_config import configure_logging
from server.settings import ConfigurationError, Settings
from server.tracing import add_trace_ids, name_job_span, start_tracing
from services import analytics, backups, caching, conversations, documents, webhooks, websites
from services import jobs as job_services
from services import reminders as reminder_services
from services.answer_llm import LLMAnswerProvider
from services.billing_state import BillingConfig
from services.clock import Clock, SystemClock, SystemCrawlClock

log = structlog.get_logger(__name__)

MAINTENANCE_KIND = "maintenance.purge_expired"
MAINTENANCE_EVERY_SECONDS = 3600.0
"""Each worker queues `maintenance.purge_expired` this often (unless one is pending)."""
ANALYTICS_ROLLUP_KIND = "analytics.rollup"
"""Queued by each worker every ANALYTICS_ROLLUP_INTERVAL_SECONDS (unless one is pending)."""
BILLING_CYCLE_KIND = "billing.cycle"
"""Queued every BILLING_CYCLE_INTERVAL_SECONDS by each worker (unless one is pending)."""
_RANDOM = random.Random()  # noqa: S311 - retry jitter, not a secret


def make_job_engine(
    settings: Settings, handler: Callable[[str], None] | None = None
) -> tuple[job_services.JobEngine, HueyJobQueue]:
    """The job engine (every kind `jobs.discover` finds, plus JOB_EXTRA_MODULES'), over the huey
    queue JOB_QUEUE picks; `handler` runs delivered job ids (None: this process only enqueues)."""
    queue = HueyJobQueue(
        make_huey(settings.job_backend, sqlite_path=settings.job_queue_file, redis_url=settings.redis_url),
        handler,
    )
    cache = make_cache(settings)
    engine = job_services.JobEngine(
        kinds=jobs.discover(settings.job_extra_modules),
        queue=queue,
        lease=timedelta(seconds=settings.job_lease_seconds),
        redeliver_after=timedelta(seconds=max(300, 5 * settings.job_lease_seconds)),
        random=_RANDOM.random,
        mail=make_mailer(settings) if handler is not None else None,
        context={
            "webhooks": make_webhook_config(settings),
            "documents": make_document_config(settings),
            "crawler": make_crawler_config(settings),
            "conversations": make_conversation_config(settings, cache=cache),
            "cache": cache,
            **({"backups": make_backup_config(settings)} if handler is not None else {}),
            "analytics": analytics.AnalyticsConfig(retention_days=settings.analytics_retention_days),
            "billing": make_billing_config(settings),
            "provider_events": provider_event_config(settings),
        },
    )
    return engine, queue


@functools.cache
def contract_version() -> str:
    """The contract's ``info.version`` (what `GET /` says), read from the root document alone."""
    import yaml

    from server.contract import ROOT_DOCUMENT

    return str(yaml.safe_load(ROOT_DOCUMENT.read_text())["info"]["version"])


def make_backup_config(settings: Settings) -> backups.BackupConfig:
    """The backups' adapters: pg_dump / pg_restore or SQLite's backup API for DATABASE_URL, the
    inventory on an engine of its own (one connection, no statement timeout: counting a large
    table may take long), the documents' file store, BACKUP_DIR, BACKUP_KEEP and BACKUP_SCHEDULE,
    and the contract's version for the manifest. The engine connects on first use only."""
    from sqlalchemy.engine import make_url

    dumper: backups.DumpTool
    if settings.is_sqlite:
        dumper = SqliteDumpTool(make_url(settings.database_url).database or "")
    else:
        dumper = PostgresDumpTool(settings.database_url)
    engine = make_engine(
        settings.database_url,
        pool_size=1,
        max_overflow=1,
        connect_timeout=settings.db_connect_timeout_seconds,
        statement_timeout_ms=0,
    )
    return backups.BackupConfig(
        directory=settings.backup_directory,
        keep=settings.backup_keep,
        dumper=dumper,
        inventory=DatabaseInventory(engine),
        copy_facts=facts_of_sqlite_file,
        store=LocalFileStore(settings.documents_dir),
        app_version=contract_version(),
        schedule=CronSchedule(settings.backup_schedule) if settings.backup_schedule else None,
    )


def breaker_policy(settings: Settings) -> dict[str, Any]:
    """A dependency breaker's thresholds (BREAKER_FAILURES, BREAKER_RESET_SECONDS), as keyword
    arguments of `adapters.resilience.join` and `join_family`."""
    return {"failures": settings.breaker_failures, "reset_seconds": settings.breaker_reset_seconds}


def make_billing_config(settings: Settings) -> BillingConfig:
    """The billing configuration: the payment provider PAYMENT_PROVIDER names (one per process,
    shared by the API and the jobs of the process), TRIAL_DAYS and DUNNING_RETRY_DAYS."""
    return BillingConfig(
        provider=build_payment_provider(settings),
        trial_days=settings.trial_days,
        retry_days=tuple(settings.dunning_retry_days),
    )


def make_crawler_config(settings: Settings) -> websites.CrawlerConfig:
    """The crawler's adapters: the SSRF guard (CRAWLER_ALLOW_PRIVATE_ADDRESSES), a guarded httpx
    fetcher per crawl (CRAWLER_INFO_URL in its User-Agent, CRAWLER_TIMEOUT_SECONDS,
    CRAWLER_PAGE_SECONDS, CRAWLER_MAX_PAGE_BYTES, CRAWLER_MAX_PDF_BYTES), protego,
    ultimate-sitemap-parser and trafilatura, the system's monotonic clock, and the crawl's
    pacing and time budget (CRAWLER_MIN_DELAY_SECONDS, CRAWLER_MAX_SECONDS)."""
    guard = AddressGuard(allow_private=settings.crawler_allow_private_addresses)
    breakers = resilience.join_family(
        "web_fetch", fallback="the page is recorded as failed and the crawl continues", **breaker_policy(settings)
    )

    def make_fetcher() -> HttpxFetcher:
        return HttpxFetcher(
            guard,
            info_url=settings.crawler_info_url,
            timeout_seconds=settings.crawler_timeout_seconds,
            total_seconds=settings.crawler_page_seconds,
            max_html_bytes=settings.crawler_max_page_bytes,
            max_pdf_bytes=settings.crawler_max_pdf_bytes,
            breakers=breakers,
        )

    return websites.CrawlerConfig(
        guard=guard,
        make_fetcher=make_fetcher,
        robots_parser=ProtegoRobotsParser(),
        sitemap_reader=UspSitemapReader(),
        extractor=PageContentExtractor(),
        crawl_clock=SystemCrawlClock(),
        min_delay_seconds=settings.crawler_min_delay_seconds,
        max_seconds=settings.crawler_max_seconds,
    )


def make_mailer(settings: Settings) -> SmtpMailer | LogMailer:
    """SMTP when SMTP_HOST is set; otherwise a mailer that only logs that mail was not sent."""
    if not settings.smtp_host:
        return LogMailer()
    return SmtpMailer(
        host=settings.smtp_host,
        port=settings.smtp_port,
        security=settings.smtp_security,
        username=settings.smtp_username,
        password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
        sender=settings.mail_from,
        timeout=settings.smtp_timeout_seconds,
        breaker=resilience.join(
            "smtp", fallback="the mail job is retried later with backoff", **breaker_policy(settings)
        ),
    )


def make_chat_client(settings: Settings) -> OpenAIChatClient | None:
    """The client of the OpenAI-compatible chat server (LLM_* settings) for the `openai` answer
    provider; None when LLM_BASE_URL is unset. Without LLM_API_KEY a placeholder key is sent
    (servers that need none accept any)."""
    if not settings.llm_base_url:
        return None
    return OpenAIChatClient(
        base_url=settings.llm_base_url,
        api_key=settings.llm_api_key.get_secret_value() if settings.llm_api_key else "unused",
        model=settings.llm_model,
        connect_timeout_seconds=settings.llm_connect_timeout_seconds,
        idle_timeout_seconds=settings.llm_timeout_seconds,
        max_seconds=settings.llm_max_seconds,
        max_tokens=settings.llm_max_tokens,
        retry_attempts=settings.llm_retry_attempts,
        retry_wait_seconds=settings.llm_retry_wait_seconds,
        retry_max_wait_seconds=settings.llm_retry_max_wait_seconds,
        breaker_failures=settings.llm_breaker_failures,
        breaker_reset_seconds=settings.llm_breaker_reset_seconds,
        breaker=resilience.join(
            "answer_provider",
            failures=settings.llm_breaker_failures,
            reset_seconds=settings.llm_breaker_reset_seconds,
            fallback="the extractive provider answers (fallback: true)",
        ),
    )


def make_webhook_config(settings: Settings) -> webhooks.WebhookConfig:
    """The webhook adapters: the SSRF guard (WEBHOOK_ALLOW_PRIVATE_ADDRESSES), the httpx sender
    (WEBHOOK_TIMEOUT_SECONDS, WEBHOOK_MAX_RESPONSE_BYTES) and the secret box (ENCRYPTION_KEYS).

    Raises:
        server.settings.ConfigurationError: production without ENCRYPTION_KEYS, or a bad key.
    """
    guard = AddressGuard(allow_private=settings.webhook_allow_private_addresses)
    return webhooks.WebhookConfig(
        guard=guard,
        sender=HttpxSender(
            guard,
            timeout_seconds=settings.webhook_timeout_seconds,
            max_response_bytes=settings.webhook_max_response_bytes,
            breakers=resilience.join_family(
                "webhook_delivery",
                fallback="the delivery is retried by its schedule, then dead-lettered",
                **breaker_policy(settings),
            ),
        ),
        box=FernetBox(settings.encryption_key_list),
    )


def make_document_config(settings: Settings) -> documents.DocumentConfig:
    """The documents adapters: the file store on `VAR_DIR/documents`, clamd when CLAMD_URL is
    set, DOCUMENT_MAX_BYTES and DOCUMENT_BLOCK_UNSCANNABLE.

    Raises:
        ValueError: CLAMD_URL is neither ``tcp://host:port`` nor ``unix:///path``.
    """
    return documents.DocumentConfig(
        store=LocalFileStore(settings.documents_dir),
        max_bytes=settings.document_max_bytes,
        scanner=ClamdScanner(
            settings.clamd_url,
            breaker=resilience.join(
                "clamd", fallback="the document is held (scanning) and its job retried", **breaker_policy(settings)
            ),
        )
        if settings.clamd_url
        else None,
        block_unscannable=settings.document_block_unscannable,
    )


def make_cache(settings: Settings) -> caching.Cache:
    """The process's cache (`services.caching`): in Redis when REDIS_URL is set (shared by every
    process), else in this process's memory (CACHE_MAX_ENTRIES); keys start with
    CACHE_KEY_PREFIX; each read is counted in `charter_cache_requests_total`."""
    backend: caching.CacheBackend
    if settings.redis_url:
        backend = RedisCacheBackend(settings.redis_url)
    else:
        backend = MemoryCacheBackend(max_entries=settings.cache_max_entries)
    return caching.Cache(backend, prefix=settings.cache_key_prefix, observe=metrics.count_cache_read)


def make_conversation_config(
    settings: Settings, *, cache: caching.Cache | None = None
) -> conversations.ConversationConfig:
    """The conversations' adapters: the answer provider ANSWER_PROVIDER names, and the full-text
    retriever. `extractive` answers alone; `openai` is `services.answer_llm.LLMAnswerProvider` on
    this process's chat client (`make_chat_client`: one per process, so one circuit breaker per
    process), with the extractive provider as its fallback (`fallback: true` on its answers).

    Raises:
        server.settings.ConfigurationError: `openai` without LLM_BASE_URL (the settings refuse it
            already; this guards settings built without validation).
    """
    extractive = ExtractiveAnswerProvider()
    cache = cache if cache is not None else make_cache(settings)
    if settings.answer_provider != "openai":
        return conversations.ConversationConfig(
            provider=extractive, cache=cache, answer_ttl_seconds=settings.answer_cache_ttl_seconds
        )
    client = make_chat_client(settings)
    if client is None:
        raise ConfigurationError("ANSWER_PROVIDER=openai needs LLM_BASE_URL")
    return conversations.ConversationConfig(
        provider=LLMAnswerProvider(client, name="openai"),
        fallback=extractive,
        cache=cache,
        answer_ttl_seconds=settings.answer_cache_ttl_seconds,
        # what changes an openai answer besides the question, its passages and the chatbot's settings
        provider_identity=f"openai|{settings.llm_base_url}|{settings.llm_model}|{settings.llm_max_tokens}",
    )


def event_publisher(
    engine: job_services.JobEngine, clock: Callable[[], Clock]
) -> Callable[[UnitOfWork, list[Any]], None]:
    """What receives a unit of work's events at its commit (`UnitOfWork.publish`): fans them out
    to webhooks (`services.webhooks.fan_out`) in that unit of work, before it commits."""

    def publish(uow: UnitOfWork, events: list[Any]) -> None:
        webhooks.fan_out(uow=uow, clock=clock(), engine=engine, events=events)

    return publish


class Repeating:
    """Calls `action` every `interval` seconds in a daemon thread until `stop` (the first call
    after one interval). An exception is logged and the next call still happens."""

    def __init__(self, action: Callable[[], object], interval: float, *, name: str) -> None:
        self.action = action
        self.interval = interval
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> Repeating:
        self.thread.start()
        return self

    def _loop(self) -> None:
        while not self.stopped.wait(self.interval):
            try:
                self.action()
            except Exception:
                log.exception("job_background_call_failed", thread=self.thread.name)

    def stop(self) -> None:
        self.stopped.set()
        if self.thread is not threading.current_thread():
            self.thread.join(timeout=10)


class Worker:
    """Runs delivered jobs in this process: `handle` is huey's task body.

    Args:
        settings: the configuration.
        clock: the time the services see.
    """

    def __init__(
        self, settings: Settings, *, threads: int, clock: Clock | None = None, span_exporter: Any = None
    ) -> None:
        self.settings = settings
        self.tracing = start_tracing(
            service_name=f"{settings.otel_service_name}-worker",
            endpoint=settings.otel_exporter_otlp_endpoint,
            exporter=span_exporter,
        )
        self.clock = clock or SystemClock()
        self.db = make_engine(
            settings.database_url,
            pool_size=threads + 2,
            max_overflow=threads,
            pool_timeout=settings.db_pool_timeout_seconds,
            pool_pre_ping=settings.db_pool_pre_ping,
            connect_timeout=settings.db_connect_timeout_seconds,
            statement_timeout_ms=settings.db_statement_timeout_ms,
        )
        if self.tracing is not None:
            self.tracing.instrument_engine(self.db)
        self.session_factory = make_session_factory(self.db)
        self.engine, self.queue = make_job_engine(settings, self.handle)
        self.identity = f"{socket.gethostname()}/{os.getpid()}"
        self.publish = event_publisher(self.engine, lambda: self.clock)
        # Payments (issue 17): the fake provider's events (billing's charges) become jobs.
        relay_fake_events(
            self.engine.context["billing"].provider,
            units=self.unit_of_work,
            clock=lambda: self.clock,
            engine=self.engine,
        )

    def unit_of_work(self) -> UnitOfWork:
        """A new unit of work on this worker's engine; its events go to webhooks at its commit."""
        return UnitOfWork(self.session_factory, publish=self.publish)

    def handle(self, job_id: str) -> None:
        """Run one delivery (`_deliver`), in a span of its own when tracing is on (its queries and
        outgoing calls are its children), named by the job's kind."""
        if self.tracing is None:
            self._deliver(job_id)
            return
        with self.tracing.job_span(job_id) as span:
            report = self._deliver(job_id)
            outcome = str(report.outcome)
            name_job_span(span, kind=report.kind, outcome=outcome, attempt=report.attempt, error=report.error)

    def _deliver(self, job_id: str) -> job_services.RunReport:
        """Run one delivery (`services.jobs.run`), renewing the lease every third of it while the
        job function runs, and log the outcome (a failure with its traceback)."""
        worker_id = f"{self.identity}/{threading.current_thread().name}"
        keeper: Repeating | None = None

        def claimed(attempt: int) -> None:
            nonlocal keeper
            keeper = Repeating(
                lambda: job_services.renew_lease(
                    unit_of_work=self.unit_of_work,
                    clock=self.clock,
                    engine=self.engine,
                    job_id=uuid.UUID(job_id),
                    worker_id=worker_id,
                    attempt=attempt,
                ),
                self.settings.job_lease_seconds / 3,
                name=f"lease-{job_id[:8]}",
            ).start()

        try:
            report = job_services.run(
                engine=self.engine,
                unit_of_work=self.unit_of_work,
                clock=self.clock,
                job_id=uuid.UUID(job_id),
                worker_id=worker_id,
                on_claimed=claimed,
            )
        finally:
            if keeper is not None:
                keeper.stop()
        fields = {"job_id": job_id, "outcome": str(report.outcome), "attempt": report.attempt}
        if report.error is not None:
            log.warning("job_attempt_failed", **fields, exc_info=report.error)
        elif report.outcome is not job_services.Outcome.NOT_CLAIMED:
            log.info("job_attempt_ended", **fields)
        return report

    def sweep(self) -> None:
        """One sweep (`services.jobs.sweep`), logged when it changed anything."""
        report = job_services.sweep(unit_of_work=self.unit_of_work, clock=self.clock, engine=self.engine)
        if report.requeued or report.ended or report.redelivered:
            log.info(
                "job_sweep",
                requeued=len(report.requeued),
                ended=len(report.ended),
                redelivered=len(report.redelivered),
            )

    def sweep_reminders(self) -> None:
        """Fire due reminders whose `reminders.fire` delivery was lost
        (`services.reminders.sweep_due`), logged when it fired any."""
        fired = reminder_services.sweep_due(unit_of_work=self.unit_of_work, clock=self.clock, engine=self.engine)
        if fired:
            log.info("reminder_sweep", fired=fired)

    def queue_scheduled_backup(self, after: datetime) -> None:
        """Queue `backups.create` when BACKUP_SCHEDULE names a minute since `after`
        (`services.backups.queue_if_due`); nothing without a schedule."""
        config = self.engine.context.get("backups")
        if not isinstance(config, backups.BackupConfig) or config.schedule is None:
            return
        with self.unit_of_work() as uow:
            job = backups.queue_if_due(
                uow=uow, clock=self.clock, engine=self.engine, schedule=config.schedule, after=after
            )
        if job is not None:
            log.info("backup_queued", job_id=str(job.id), schedule=config.schedule.expression)

    def queue_maintenance(self) -> None:
        """Queue `maintenance.purge_expired` unless one is queued or running."""
        self.queue_periodic(MAINTENANCE_KIND)

    def queue_periodic(self, kind: str) -> None:
        """Queue a job of the service's own `kind` unless one is queued or running."""
        with self.unit_of_work() as uow:
            job_services.enqueue_unless_pending(uow=uow, clock=self.clock, engine=self.engine, kind=kind)


def run_worker(settings: Settings, *, threads: int, parent_pid: int | None = None) -> int:
    """`charter worker`: consume the job queue with `threads` threads until SIGINT (graceful:
    running jobs finish) or SIGTERM (at once; their leases expire and the sweep re-queues them).
    With `parent_pid`, stop when that process is gone (the worker `charter serve --with-worker`
    starts). Returns the exit status."""
    configure_logging(
        level=settings.log_level,
        fmt=settings.log_format,
        trace_ids=add_trace_ids,
    )
    worker = Worker(settings, threads=threads)
    consumer: Consumer = worker.queue.huey.create_consumer(
        workers=threads,
        worker_type="thread",
        periodic=False,
        initial_delay=0.05,
        backoff=1.5,
        max_delay=1.0,
    )
    last_maintenance = [-MAINTENANCE_EVERY_SECONDS]
    last_backup_check = [worker.clock.now()]
    last_rollup = [-settings.analytics_rollup_interval_seconds]
    last_billing_cycle = [-settings.billing_cycle_interval_seconds]

    orphaned = threading.Event()

    def parent_gone() -> None:
        if os.getppid() != parent_pid and not orphaned.is_set():
            orphaned.set()
            log.info("job_worker_parent_gone", parent_pid=parent_pid)
            os.kill(os.getpid(), signal.SIGINT)  # huey's graceful stop: running jobs finish

    # uvicorn re-raises the signal that stopped it, so `charter serve` may end without stopping
    # its child: the child watches its parent once a second instead.
    watcher = Repeating(parent_gone, 1.0, name="parent-watch").start() if parent_pid is not None else None

    def background() -> None:
        worker.sweep()
        if time.monotonic() - last_maintenance[0] >= MAINTENANCE_EVERY_SECONDS:
            last_maintenance[0] = time.monotonic()
            worker.queue_maintenance()
        now = worker.clock.now()
        worker.queue_scheduled_backup(last_backup_check[0])
        last_backup_check[0] = now
        if time.monotonic() - last_rollup[0] >= settings.analytics_rollup_interval_seconds:
            last_rollup[0] = time.monotonic()
            worker.queue_periodic(ANALYTICS_ROLLUP_KIND)
        if time.monotonic() - last_billing_cycle[0] >= settings.billing_cycle_interval_seconds:
            last_billing_cycle[0] = time.monotonic()
            worker.queue_periodic(BILLING_CYCLE_KIND)

    sweeper = Repeating(background, settings.job_sweep_interval_seconds, name="job-sweeper").start()
    reminder_sweeper = Repeating(
        worker.sweep_reminders, settings.reminder_sweep_interval_seconds, name="reminder-sweeper"
    ).start()
    log.info(
        "job_worker_started",
        queue=settings.job_backend,
        threads=threads,
        kinds=sorted(worker.engine.kinds),
        lease_seconds=settings.job_lease_seconds,
    )
    try:
        consumer.run()
    finally:
        sweeper.stop()
        reminder_sweeper.stop()
        if watcher is not None:
            watcher.stop()
        worker.db.dispose()
        backup_engine = getattr(getattr(worker.engine.context.get("backups"), "inventory", None), "engine", None)
        if backup_engine is not None:
            backup_engine.dispose()
    return 0
