"""Website sources of a chatbot (issue 15, "Website sources: a crawler that behaves"): adding a
site to crawl, its crawl as a job, its pages, recrawls and removal.

Rules and where they come from:

* **The SSRF guard at creation** (API_STYLE, Security; issue 15): the start URL's host is
  resolved and every address must be public (`adapters.address_guard.AddressGuard`, the one
  webhooks use); a refusal is 422 `/problems/unsafe-crawl-url` naming the rule, and nothing is
  created. The crawl applies the guard again to every connection (so every redirect); a page it
  refuses is an ``ssrf`` skip. `CRAWLER_ALLOW_PRIVATE_ADDRESSES` lifts it, for tests only.
* **A crawl is a job** (API_STYLE, Long-running work): creating a website or asking for a
  recrawl queues `websites.crawl` (`CRAWL_KIND`) and answers 202 with the website and the job's
  `Location`. The job (`crawl_website`) runs `services.crawling.crawl` over the adapters the
  wiring put in the job engine's context (`CrawlerConfig`), committing each page as it is
  recorded (its row, and its passages in the chatbot's index for an indexed page), reporting
  progress at each page (which renews the lease and notices a cancellation).
* **Never stuck in running** (firecrawl#1347, #1679): the job always ends the website in
  ``completed``, ``failed`` or ``cancelled`` (``queued`` again while a failed attempt will be
  retried); a job that ended without the website saying so (a worker killed on its last attempt,
  a queued job cancelled) is reported with the job's outcome (`observed_status`).
* **Resumable** (issue 15): a website's `crawl_number` counts its crawls; the pages a crawl
  recorded carry its number, so a job run again after its worker died does not fetch them again
  (`already_done`) and follows their stored links.
* **Same site** (issue 15: "same site only (no other hosts; subdomains only if asked)"): a
  crawl follows links on its start URL's host, ``www.`` or not; with `include_subdomains`
  (default false, a crawl setting kept with the others) also on hosts under it
  (`services.crawl_scope.CrawlScope.same_site`); anything else is an ``other_host`` skip.
* **Recrawls** (issue 15): the previous crawl's ETag and Last-Modified make each request
  conditional (RFC 9110 section 13); an unchanged page (304, or the same text) is a
  ``not_modified`` skip that keeps its passages; pages the new crawl no longer reaches are
  removed with their passages when it finishes its walk (`stopped: done`). A recrawl while a
  crawl is queued or running is 409 `/problems/website-crawl-running`.
* **Quota** (issue 17): every page fetch a crawl makes counts one on the owner's
  ``crawled_pages`` meter (`USAGE_METERS`, `services.usage`; per billing period), counted
  before the fetch, once per page and crawl (a resumed crawl does not count a page again).
  Adding a website or asking for a recrawl when the meter is already used up is 402
  `/problems/quota-exceeded` (nothing queued); a crawl that reaches the quota stops there,
  ``completed`` with `stopped: quota` and the reason in `error` (not a failure: what it
  found is kept).
* **Owner-scoped** through the chatbot (`services.chatbots.get_chatbot`): another user's
  chatbot's websites are 404; administrators see every chatbot's.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from persistence.accounts.models import User
from persistence.jobs.models import Job
from persistence.unit_of_work import UnitOfWork
from persistence.websites.models import FINAL_STATUSES, WebPage, Website
from services import chatbots, knowledge, usage
from services import jobs as job_services
from services.clock import Clock, CrawlClock
from services.crawl_scope import normalize_url, url_key
from services.crawling import (
    ContentExtractor,
    CrawlLimits,
    InvalidStartUrl,
    PageFetcher,
    PageResult,
    RobotsParser,
    SitemapReader,
    crawl,
)
from services.cursors import decode_cursor, decode_values, encode_values, page
from services.document_passages import chunk_passages
from services.document_text import TextBlock
from services.errors import Conflict, InvalidInput, NotFound, ProblemType

CRAWL_KIND = "websites.crawl"
"""The job kind that crawls a website (declared in jobs/websites.py)."""
USAGE_METERS = [
    usage.Meter(
        name="crawled_pages",
        unit="pages",
        periodic=True,
        description="Pages your websites' crawls fetched this billing period.",
    )
]
"""The meter this area counts (`services.usage`)."""
MAX_WEBSITES_PER_CHATBOT = 20
"""A chatbot's website sources at most."""
MAX_ROBOTS_BLOCKED = 100
"""URLs kept in a website's `robots_blocked` at most (the pages list has them all)."""
MAX_STORED_LINKS = 500
"""Links kept per page row (what a resumed crawl follows)."""
MAX_ERROR_CHARS = 2000
"""A website's `error` at most."""
DEFAULTS: dict[str, Any] = {
    "max_pages": 100,
    "max_depth": 3,
    "include_paths": [],
    "exclude_paths": [],
    "use_sitemap": True,
    "include_subdomains": False,
}
"""The crawl settings a creation may leave out (the contract says the same)."""
PAGES_SCOPE = "web_pages"


class UnsafeCrawlUrl(InvalidInput):
    """The start URL is refused by the SSRF guard (its `detail` names the rule)."""

    problem = ProblemType("/problems/unsafe-crawl-url", "Crawl URL refused", 422)


class WebsiteCrawlRunning(Conflict):
    """A recrawl was asked for while the website's crawl is queued or running."""

    problem = ProblemType("/problems/website-crawl-running", "A crawl is already under way", 409)


class WebsiteLimitReached(Conflict):
    """The chatbot has `MAX_WEBSITES_PER_CHATBOT` websites already."""

    problem = ProblemType("/problems/website-limit-reached", "Too many websites", 409)


class UrlGuard(Protocol):
    """The SSRF guard (`adapters.address_guard.AddressGuard`)."""

    def check(self, url: str) -> str | None:
        """Why `url` may not be called (the rule, in words), or None when it may."""
        ...


@dataclass
class CrawlerConfig:
    """What the website services need besides a unit of work and a clock (built by the wiring,
    `server.worker.make_crawler_config`, and kept in the job engine's context as ``crawler``).

    Attributes:
        guard: the SSRF guard, applied to the start URL at creation.
        make_fetcher: a new fetcher for one crawl (closed after it when it has `close`); it
            applies the guard to every connection.
        robots_parser, sitemap_reader, extractor: the crawler's parsers (`adapters.web_*`).
        crawl_clock: the crawl's monotonic clock and sleep (politeness delays).
        min_delay_seconds: the least wait between two requests to one host.
        max_seconds: one crawl's time budget.
    """

    guard: UrlGuard
    make_fetcher: Callable[[], PageFetcher]
    robots_parser: RobotsParser
    sitemap_reader: SitemapReader
    extractor: ContentExtractor
    crawl_clock: CrawlClock
    min_delay_seconds: float = 1.0
    max_seconds: float = 3600.0


def config_of(engine: job_services.JobEngine) -> CrawlerConfig:
    """The crawler configuration the wiring put in the job engine's `context`.

    Raises:
        LookupError: the wiring gave none (a bug of the wiring).
    """
    config = engine.context.get("crawler")
    if not isinstance(config, CrawlerConfig):
        raise LookupError("the job engine has no crawler configuration")
    return config


@dataclass(frozen=True)
class WebsitePage:
    """One page of websites and the cursor of the next page (None on the last)."""

    items: list[Website]
    next_cursor: str | None


@dataclass(frozen=True)
class PagePage:
    """One page of a website's pages and the cursor of the next page (None on the last)."""

    items: list[WebPage]
    next_cursor: str | None


# --- operations ---------------------------------------------------------------------------------


def _checked_start_url(config: CrawlerConfig, url: str) -> str:
    normal = normalize_url(url)
    if normal is None:
        raise UnsafeCrawlUrl(
            "This URL cannot be crawled: it is no absolute http or https URL with a host.", pointer="/start_url"
        )
    refused = config.guard.check(normal)
    if refused is not None:
        reason = refused if len(refused) <= 300 else refused[:299] + "…"
        raise UnsafeCrawlUrl(f"This URL cannot be crawled: {reason}.", pointer="/start_url")
    return normal


def _enqueue_crawl(*, uow: UnitOfWork, clock: Clock, engine: job_services.JobEngine, website: Website) -> Job:
    job = job_services.enqueue(
        uow=uow,
        clock=clock,
        engine=engine,
        kind=CRAWL_KIND,
        owner_id=website.owner_id,
        subject=job_services.Subject("website", str(website.id)),
        payload={"website_id": str(website.id), "crawl_number": website.crawl_number},
    )
    website.job_id = job.id
    uow.flush()
    return job


def create_website(
    *,
    uow: UnitOfWork,
    clock: Clock,
    engine: job_services.JobEngine,
    caller: User,
    chatbot_id: uuid.UUID,
    data: Mapping[str, Any],
) -> tuple[Website, Job]:
    """Add a website to the chatbot's sources and queue its crawl (`websites.crawl`).

    Args:
        data: the contract's `WebsiteCreate` (`start_url`; optional `max_pages` 1-1000,
            `max_depth` 0-10, `include_paths`/`exclude_paths` globs on the path, `use_sitemap`,
            `include_subdomains`),
            already validated against the contract.

    Returns:
        The website (``queued``) and its crawl job (the answer is 202 with the job's Location).

    Raises:
        NotFound: no such chatbot of the caller (`chatbots.get_chatbot`).
        UnsafeCrawlUrl: the start URL is no http(s) URL with a host, or the SSRF guard refuses
            it (422, naming the rule; pointer ``/start_url``).
        WebsiteLimitReached: the chatbot has `MAX_WEBSITES_PER_CHATBOT` websites (409).
        QuotaExceeded: the owner's ``crawled_pages`` are used up for this period (402).
    """
    chatbot = chatbots.get_chatbot(uow=uow, caller=caller, chatbot_id=chatbot_id, lock=True)
    start_url = _checked_start_url(config_of(engine), str(data["start_url"]))
    if uow.websites.count(chatbot.id) >= MAX_WEBSITES_PER_CHATBOT:
        raise WebsiteLimitReached(f"A chatbot has at most {MAX_WEBSITES_PER_CHATBOT} websites; delete one first.")
    usage.check_quota(uow, owner_id=chatbot.owner_id, meter="crawled_pages", quantity=0, clock=clock)
    settings = {name: data.get(name, default) for name, default in DEFAULTS.items()}
    settings["include_paths"] = list(settings["include_paths"])
    settings["exclude_paths"] = list(settings["exclude_paths"])
    now = clock.now()
    website = Website(
        id=uuid.uuid4(),
        chatbot_id=chatbot.id,
        owner_id=chatbot.owner_id,
        start_url=start_url,
        settings=settings,
        status="queued",
        crawl_number=1,
        pages_found=0,
        pages_indexed=0,
        pages_failed=0,
        pages_skipped=0,
        robots_blocked=[],
        created_at=now,
        updated_at=now,
    )
    uow.websites.add(website)
    return website, _enqueue_crawl(uow=uow, clock=clock, engine=engine, website=website)


def list_websites(
    *, uow: UnitOfWork, caller: User, chatbot_id: uuid.UUID, limit: int, cursor: str | None = None
) -> WebsitePage:
    """The chatbot's websites, newest first, `limit` per page after `cursor`.

    Raises:
        NotFound: no such chatbot of the caller.
        InvalidInput: a cursor this list did not make.
    """
    chatbot = chatbots.get_chatbot(uow=uow, caller=caller, chatbot_id=chatbot_id)
    rows = uow.websites.page(chatbot_id=chatbot.id, limit=limit + 1, before=decode_cursor(cursor) if cursor else None)
    items, next_cursor = page(rows, limit, lambda website: (website.created_at, website.id))
    return WebsitePage(items, next_cursor)


def get_website(*, uow: UnitOfWork, caller: User, chatbot_id: uuid.UUID, website_id: uuid.UUID) -> Website:
    """The chatbot's website.

    Raises:
        NotFound: no such chatbot of the caller, or no such website of it.
    """
    chatbot = chatbots.get_chatbot(uow=uow, caller=caller, chatbot_id=chatbot_id)
    website = uow.websites.get(website_id, chatbot_id=chatbot.id)
    if website is None:
        raise NotFound("No website with this id exists for this chatbot.")
    return website


def list_pages(
    *,
    uow: UnitOfWork,
    caller: User,
    chatbot_id: uuid.UUID,
    website_id: uuid.UUID,
    limit: int,
    cursor: str | None = None,
    status: str | None = None,
) -> PagePage:
    """The website's pages in the order its crawls first recorded them, `limit` per page after
    `cursor`, of `status` (``indexed``, ``skipped``, ``failed``) when given.

    Raises:
        NotFound: as `get_website`.
        InvalidInput: a cursor this list did not make.
    """
    website = get_website(uow=uow, caller=caller, chatbot_id=chatbot_id, website_id=website_id)
    after = int(decode_values(cursor, kinds=("integer",), scope=PAGES_SCOPE)[0]) if cursor else None
    rows = uow.websites.page_of_pages(website_id=website.id, limit=limit + 1, after=after, status=status)
    items = rows[:limit]
    next_cursor = encode_values([items[-1].position], scope=PAGES_SCOPE) if len(rows) > limit else None
    return PagePage(items, next_cursor)


def recrawl_website(
    *,
    uow: UnitOfWork,
    clock: Clock,
    engine: job_services.JobEngine,
    caller: User,
    chatbot_id: uuid.UUID,
    website_id: uuid.UUID,
) -> tuple[Website, Job]:
    """Crawl the website again (a new `websites.crawl` job): requests are conditional on what
    the last crawl stored, unchanged pages are not re-indexed.

    Raises:
        NotFound: as `get_website`.
        WebsiteCrawlRunning: its crawl is queued or running (409): cancel its job first.
        QuotaExceeded: the owner's ``crawled_pages`` are used up for this period (402).
    """
    chatbots.get_chatbot(uow=uow, caller=caller, chatbot_id=chatbot_id, lock=True)
    website = get_website(uow=uow, caller=caller, chatbot_id=chatbot_id, website_id=website_id)
    if observed_status(uow=uow, websites=[website])[website.id] not in FINAL_STATUSES:
        raise WebsiteCrawlRunning("This website's crawl is queued or running; wait for it or cancel its job.")
    usage.check_quota(uow, owner_id=website.owner_id, meter="crawled_pages", quantity=0, clock=clock)
    now = clock.now()
    website.crawl_number += 1
    website.status = "queued"
    website.stopped = None
    website.error = None
    website.started_at = None
    website.finished_at = None
    website.updated_at = now
    return website, _enqueue_crawl(uow=uow, clock=clock, engine=engine, website=website)


def delete_website(*, uow: UnitOfWork, caller: User, chatbot_id: uuid.UUID, website_id: uuid.UUID) -> None:
    """Remove the website: its pages' passages from the chatbot's index, its pages and its row.
    A crawl still running notices at its next page and stops.

    Raises:
        NotFound: as `get_website`.
    """
    chatbots.get_chatbot(uow=uow, caller=caller, chatbot_id=chatbot_id, lock=True)
    website = get_website(uow=uow, caller=caller, chatbot_id=chatbot_id, website_id=website_id)
    purge_website(uow=uow, website=website)


def purge_website(*, uow: UnitOfWork, website: Website) -> None:
    """Remove a website's passages, pages and row (its deletion, and its chatbot's)."""
    for row in uow.websites.pages(website.id):
        knowledge.remove_source(uow=uow, chatbot_id=website.chatbot_id, source_type="web_page", source_id=row.id)
    uow.websites.delete(website)


def exported_websites(*, uow: UnitOfWork, owner_id: uuid.UUID) -> list[Website]:
    """Every website of the owner's chatbots (those being deleted left out), oldest first: their
    data export's section."""
    return uow.websites.all_of_owner(owner_id)


def observed_status(*, uow: UnitOfWork, websites: Sequence[Website]) -> dict[uuid.UUID, str]:
    """Each website's status as a client should see it: its own, except that a website whose
    crawl job has ended while the website still says ``queued`` or ``running`` (its worker was
    killed on the last attempt, or the queued job was cancelled) takes the job's outcome
    (``failed``, ``cancelled``; ``completed`` for a job that succeeded)."""
    observed = {website.id: website.status for website in websites}
    for website in websites:
        if website.status in FINAL_STATUSES or website.job_id is None:
            continue
        job = uow.jobs.get(website.job_id)
        if job is None:
            continue
        ended = {"failed": "failed", "cancelled": "cancelled", "succeeded": "completed"}.get(str(job.status))
        if ended is not None:
            observed[website.id] = ended
    return observed


# --- the crawl job ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Prior:
    """A stored page's result, detached from its session (`services.crawling.PriorPage`)."""

    status: str
    skip_reason: str | None
    links: tuple[str, ...]
    etag: str | None
    last_modified: str | None
    content_hash: str | None
    crawl_number: int

    @classmethod
    def of(cls, row: WebPage) -> _Prior:
        return cls(
            row.status,
            row.skip_reason,
            tuple(row.links or ()),
            row.etag,
            row.last_modified,
            row.content_hash,
            row.crawl_number,
        )

    @property
    def in_index(self) -> bool:
        """Whether its passages are in the index (indexed, or unchanged at a recrawl)."""
        return self.status == "indexed" or self.skip_reason == "not_modified"


def _blocks(result: PageResult) -> list[TextBlock]:
    """A page's text as blocks for `chunk_passages`: a PDF's pages (numbered), an HTML page's
    paragraphs (its lines)."""
    if result.pages:
        return [TextBlock(text=" ".join(text.split()), page=number) for number, text in enumerate(result.pages, 1)]
    return [TextBlock(text=" ".join(line.split())) for line in result.text.splitlines() if line.strip()]


def _clip(text: str | None, limit: int) -> str | None:
    if text is None:
        return None
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _WebsiteGone(Exception):
    """The website was deleted, or a newer crawl of it was asked for, while this one ran."""


class _CrawlRun:
    """One run of the `websites.crawl` job (its state; `crawl_website` is the interface)."""

    def __init__(self, run: job_services.JobRun) -> None:
        self.run = run
        self.config = config_of(run.engine)
        self.website_id = uuid.UUID(str(run.payload["website_id"]))
        self.number = int(run.payload["crawl_number"])
        self.current: dict[str, _Prior] = {}
        self.previous: dict[str, _Prior] = {}
        self.gone = False
        self.over_quota: str | None = None

    def website(self, uow: UnitOfWork) -> Website:
        website = uow.websites.get(self.website_id)
        if website is None or website.crawl_number != self.number:
            self.gone = True
            raise _WebsiteGone(str(self.website_id))
        return website

    def start(self) -> tuple[str, dict[str, Any]]:
        """Mark the website ``running`` and read what this crawl needs: its start URL, its
        settings, and the stored pages (this crawl's, to resume; the previous crawl's, to
        recrawl conditionally)."""
        now = self.run.clock.now()
        with self.run.unit_of_work() as uow:
            website = self.website(uow)
            website.status = "running"
            website.started_at = website.started_at or now
            website.finished_at = None
            website.error = None
            website.updated_at = now
            for row in uow.websites.pages(website.id):
                prior = _Prior.of(row)
                if prior.crawl_number == self.number:
                    self.current[row.url_key] = prior
                elif prior.in_index:
                    self.previous[row.url_key] = prior
            return website.start_url, dict(website.settings)

    def record(self, result: PageResult) -> None:
        """Store one page in its own transaction: its row, its passages, the website's counts."""
        now = self.run.clock.now()
        with self.run.unit_of_work() as uow:
            website = self.website(uow)
            key = url_key(result.url)
            stored = uow.websites.page_by_key(website.id, key)
            row = stored or WebPage(
                id=uuid.uuid4(),
                website_id=website.id,
                position=uow.websites.next_position(website.id),
                url_key=key,
                fetched_at=None,
            )
            row.crawl_number = self.number
            row.url = result.url
            row.title = _clip(result.title, 500) or None
            row.status = result.status
            row.skip_reason = result.skip_reason
            row.detail = _clip(result.detail, 500)
            row.http_status = result.http_status
            row.depth = result.depth
            row.words = result.words
            row.content_hash = result.content_hash
            row.etag = _clip(result.etag, 500)
            row.last_modified = _clip(result.last_modified, 100)
            row.links = list(result.links)[:MAX_STORED_LINKS]
            if result.fetched:
                row.fetched_at = now
            if stored is None:
                uow.websites.add_page(row)
            if result.status == "indexed":
                knowledge.index_source(
                    uow=uow,
                    clock=self.run.clock,
                    chatbot_id=website.chatbot_id,
                    source=knowledge.KnowledgeSource("web_page", row.id, title=row.title, url=result.url),
                    passages=chunk_passages(_blocks(result)),
                )
            elif result.skip_reason != "not_modified":
                knowledge.remove_source(
                    uow=uow, chatbot_id=website.chatbot_id, source_type="web_page", source_id=row.id
                )
            if result.skip_reason == "robots" and len(website.robots_blocked) < MAX_ROBOTS_BLOCKED:
                website.robots_blocked = [*website.robots_blocked, result.url]
            self.count(uow, website)
            website.updated_at = now

    def count(self, uow: UnitOfWork, website: Website) -> None:
        counts = uow.websites.counts(website.id, self.number)
        website.pages_indexed = counts.get("indexed", 0)
        website.pages_skipped = counts.get("skipped", 0)
        website.pages_failed = counts.get("failed", 0)
        website.pages_found = sum(counts.values())

    def admit(self, url: str) -> bool:
        """Count the page about to be fetched on the owner's ``crawled_pages`` (once per page
        and crawl), in a unit of work of its own; False, keeping why, when the quota is used up."""
        with self.run.unit_of_work() as uow:
            website = self.website(uow)
            try:
                usage.record_usage(
                    uow,
                    owner_id=website.owner_id,
                    meter="crawled_pages",
                    quantity=1,
                    idempotency_key=f"crawl:{website.id}:{self.number}:{url_key(url)}"[:200],
                    clock=self.run.clock,
                )
            except usage.QuotaExceeded as exceeded:
                self.over_quota = f"The crawl stopped at your plan's quota of crawled pages. {exceeded.detail}"
                return False
        return True

    def should_stop(self) -> bool:
        if self.gone:
            return True
        with self.run.unit_of_work() as uow:
            job = uow.jobs.get(self.run.job_id)
            return job is None or job.cancel_requested

    def checkpoint(self, done: int, total: int) -> None:
        self.run.checkpoint(done, total, f"{done} of {total} URLs handled")

    def finish(self, status: str, *, stopped: str | None = None, error: str | None = None, prune: bool = False) -> None:
        """End the website in `status` (and drop the pages an earlier crawl found that this one,
        walked to its end, did not: `prune`)."""
        now = self.run.clock.now()
        with self.run.unit_of_work() as uow:
            try:
                website = self.website(uow)
            except _WebsiteGone:
                return
            if prune:
                for row in uow.websites.pages(website.id):
                    if row.crawl_number < self.number:
                        knowledge.remove_source(
                            uow=uow, chatbot_id=website.chatbot_id, source_type="web_page", source_id=row.id
                        )
                        uow.websites.delete_page(row)
            self.count(uow, website)
            website.status = status
            website.stopped = stopped
            website.error = _clip(error, MAX_ERROR_CHARS)
            website.finished_at = now if status in FINAL_STATUSES else None
            website.updated_at = now

    def result(self, status: str, stopped: str | None = None) -> dict[str, Any]:
        with self.run.unit_of_work() as uow:
            website = uow.websites.get(self.website_id)
            counts = (
                {
                    "found": website.pages_found,
                    "indexed": website.pages_indexed,
                    "skipped": website.pages_skipped,
                    "failed": website.pages_failed,
                }
                if website is not None
                else {}
            )
        return {"website_id": str(self.website_id), "status": status, "stopped": stopped, **counts}


def crawl_website(run: job_services.JobRun) -> dict[str, Any]:
    """The `websites.crawl` job: crawl the website named by the payload (`website_id`,
    `crawl_number`) and keep what it finds (the module docstring's rules).

    Returns:
        The job's result: the website's id, its final status, why the crawl stopped and the
        page counts (or ``status: gone`` when the website was deleted or recrawled meanwhile).

    Raises:
        JobCancelled: the job was cancelled (the website ends ``cancelled``).
        LeaseLost: this attempt lost the job (another worker has it; nothing more is written).
        JobFailed: the start URL cannot be crawled at all (the website ends ``failed``).
        Exception: anything unexpected; the website is ``queued`` again when the engine will
            retry, else ``failed``.
    """
    state = _CrawlRun(run)
    try:
        start_url, settings = state.start()
    except _WebsiteGone:
        return {"website_id": str(state.website_id), "status": "gone", "stopped": None}
    limits = CrawlLimits(
        max_pages=int(settings.get("max_pages", DEFAULTS["max_pages"])),
        max_depth=int(settings.get("max_depth", DEFAULTS["max_depth"])),
        include_paths=tuple(settings.get("include_paths") or ()),
        exclude_paths=tuple(settings.get("exclude_paths") or ()),
        use_sitemap=bool(settings.get("use_sitemap", True)),
        include_subdomains=bool(settings.get("include_subdomains", False)),
        min_delay_seconds=state.config.min_delay_seconds,
        max_seconds=state.config.max_seconds,
    )
    try:
        fetcher = state.config.make_fetcher()
        try:
            report = crawl(
                start_url=start_url,
                limits=limits,
                fetcher=fetcher,
                robots_parser=state.config.robots_parser,
                sitemap_reader=state.config.sitemap_reader,
                extractor=state.config.extractor,
                record=state.record,
                clock=state.config.crawl_clock,
                checkpoint=state.checkpoint,
                should_stop=state.should_stop,
                admit=state.admit,
                already_done=lambda url: state.current.get(url_key(url)),
                known=lambda url: state.previous.get(url_key(url)),
            )
        finally:
            close = getattr(fetcher, "close", None)
            if callable(close):
                close()
    except _WebsiteGone:
        return {"website_id": str(state.website_id), "status": "gone", "stopped": None}
    except job_services.JobCancelled:
        state.finish("cancelled", stopped="cancelled")
        raise
    except job_services.LeaseLost:
        raise
    except InvalidStartUrl as error:
        state.finish("failed", error=str(error))
        raise job_services.JobFailed(f"The website cannot be crawled: {error}") from error
    except Exception as error:
        last = run.attempt >= run.engine.kinds[run.kind].retry.max_attempts
        state.finish(
            "failed" if last else "queued",
            error=f"The crawl stopped with an unexpected error ({type(error).__name__})"
            + ("." if last else "; it will be tried again."),
        )
        raise
    if state.gone:
        return {"website_id": str(state.website_id), "status": "gone", "stopped": report.stopped}
    if report.stopped == "cancelled":
        state.finish("cancelled", stopped="cancelled")
        raise job_services.JobCancelled(str(run.job_id))
    errors = [*report.errors, *([state.over_quota] if report.stopped == "quota" and state.over_quota else [])]
    state.finish("completed", stopped=report.stopped, error="\n".join(errors) or None, prune=report.stopped == "done")
    return state.result("completed", report.stopped)
