"""Crawling one website (issue 15, "Website sources: a crawler that behaves"): the crawl loop, a
pure function over ports, so the chatbots area can run it in a job and a test can run it over a
fake site.

What `crawl` does, and where each rule comes from:

* **Breadth first from the start URL**, links followed up to `CrawlLimits.max_depth`, the pages a
  sitemap lists (when `use_sitemap`) entering at depth 1; same site only, include/exclude globs
  (`services.crawl_scope`); each page fetched once per `url_key` (URL normalisation and
  de-duplication: fragments, default ports, trailing slashes, tracking parameters, www/non-www).
* **robots.txt** (RFC 9309), fetched once per origin (scheme, host, port) before its first page:
  a 2xx body is parsed (the first 500 KiB, section 2.5); a 4xx means "unavailable", every URL
  allowed (section 2.3.1.3); a 5xx or no answer means "unreachable", every URL disallowed
  (section 2.3.1.4). Redirects of robots.txt are followed, up to the fetcher's limit (section
  2.3.1.2), through the SSRF guard. A disallowed URL is a ``robots`` skip, never fetched.
* **Politeness**: one request at a time (so per-host concurrency of one), and between two
  requests to one host at least `min_delay_seconds` or the host's ``Crawl-delay``, whichever is
  longer. A delay that would end past the time budget ends the crawl instead.
* **What a page becomes** (`PageResult.status` and `skip_reason`, the issue's words):
  ``indexed``; ``skipped`` for ``robots`` (disallowed), ``noindex`` (robots meta or
  X-Robots-Tag), ``duplicate`` (a ``rel=canonical`` naming another page of the site, a redirect
  to a page already crawled, or the same text as a page already indexed), ``other_host`` (a link
  or redirect off the site: recorded, never contacted), ``type`` (neither HTML nor PDF),
  ``size`` (over the cap), ``ssrf`` (the SSRF guard refused its address) or ``not_modified``
  (a recrawl's conditional request got 304, or the text's SHA-256 is the stored one); ``failed``
  with the HTTP status or the error (timeouts, redirect loops, no text: a page rendered by
  script has none).
* **Resumable** (issue 15: "resumable after a worker dies (pages already fetched are not fetched
  again)"): `already_done` answers, for a URL this crawl recorded before the worker died, its
  stored result; the page is not fetched again and its stored links (`PageResult.links`) are
  followed, so the walk goes on where it was.
* **Recrawls** (issue 15: "conditional requests with ETag/Last-Modified; unchanged pages are not
  re-indexed"): `known` answers what the previous crawl stored for a URL, its ETag and
  Last-Modified are sent, and an unchanged page is ``not_modified``.
* **Bounded**: at most `max_pages` page fetches, `max_urls` URLs considered, `max_sitemap_files`
  sitemap documents and `max_seconds` of the clock; `should_stop` is asked before every request
  (cancellation); `admit` is asked before every page fetch (the account's quota of crawled
  pages: False stops the crawl, ``quota``); `checkpoint` is told the progress after every page.
  The crawl always returns a `CrawlReport` saying why it stopped ("never stuck in running":
  firecrawl#1347, #1679).
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol
from urllib.parse import urlsplit

from services.clock import CrawlClock, SystemCrawlClock
from services.crawl_scope import CrawlScope, normalize_url, url_key

SKIP_REASONS = ("robots", "noindex", "duplicate", "other_host", "type", "size", "ssrf", "not_modified")
"""Why a page was skipped (issue 15's list, ``not_modified`` for recrawls)."""
ROBOTS_MAX_BYTES = 512 * 1024
"""robots.txt read at most (RFC 9309 section 2.5: a crawler must parse at least 500 KiB)."""


class InvalidStartUrl(ValueError):
    """The start URL is no http(s) URL with a host."""


# --- ports ------------------------------------------------------------------------------------


class FetchOutcome(Protocol):
    """What fetching a URL got (`adapters.web_fetch.FetchResult`)."""

    @property
    def url(self) -> str: ...
    @property
    def final_url(self) -> str: ...
    @property
    def outcome(self) -> str:
        """``ok``, ``not_modified``, ``skipped`` or ``failed``."""
        ...

    @property
    def status_code(self) -> int | None: ...
    @property
    def kind(self) -> str | None:
        """``html`` or ``pdf`` (pages)."""
        ...

    @property
    def body(self) -> bytes: ...
    @property
    def etag(self) -> str | None: ...
    @property
    def last_modified(self) -> str | None: ...
    @property
    def x_robots_tag(self) -> str | None: ...
    @property
    def skip_reason(self) -> str | None: ...
    @property
    def error(self) -> str | None: ...


class PageFetcher(Protocol):
    """Fetches URLs through the SSRF guard (`adapters.web_fetch.HttpxFetcher`; `FakeFetcher`)."""

    def fetch_page(
        self,
        url: str,
        *,
        etag: str | None = None,
        last_modified: str | None = None,
        hop_check: Callable[[str], str | None] | None = None,
    ) -> FetchOutcome:
        """GET an HTML or PDF page, following redirects judged by `hop_check` (None, or the skip
        reason that stops there); conditional when `etag` or `last_modified` is given. Never
        raises for the site's behaviour."""
        ...

    def fetch_file(
        self,
        url: str,
        *,
        max_bytes: int,
        hop_check: Callable[[str], str | None] | None = None,
        truncate: bool = False,
    ) -> FetchOutcome:
        """GET a file of any type (robots.txt, a sitemap) of at most `max_bytes` (cut there when
        `truncate`)."""
        ...


class RobotsRules(Protocol):
    """The robots.txt rules of one origin for our crawler (`adapters.web_robots.ProtegoRules`)."""

    def allowed(self, url: str) -> bool:
        """Whether `url` may be fetched."""
        ...

    def crawl_delay(self) -> float | None:
        """The ``Crawl-delay`` for us, in seconds, or None."""
        ...

    def sitemaps(self) -> Sequence[str]:
        """The ``Sitemap:`` URLs listed."""
        ...


class RobotsParser(Protocol):
    """Parses a robots.txt body (`adapters.web_robots.ProtegoRobotsParser`)."""

    def parse(self, body: bytes) -> RobotsRules: ...


class SitemapListing(Protocol):
    """What one sitemap document lists (`adapters.web_sitemaps.SitemapEntries`)."""

    @property
    def pages(self) -> Sequence[str]: ...
    @property
    def sitemaps(self) -> Sequence[str]: ...
    @property
    def error(self) -> str | None: ...


class SitemapReader(Protocol):
    """Reads a fetched sitemap document (`adapters.web_sitemaps.UspSitemapReader`)."""

    def read(self, body: bytes, *, url: str) -> SitemapListing: ...


class PageContent(Protocol):
    """What a page says (`adapters.web_content.Extracted`)."""

    @property
    def title(self) -> str: ...
    @property
    def text(self) -> str: ...
    @property
    def links(self) -> Sequence[str]: ...
    @property
    def noindex(self) -> bool: ...
    @property
    def nofollow(self) -> bool: ...
    @property
    def canonical(self) -> str | None: ...
    @property
    def pages(self) -> Sequence[str]:
        """A PDF's text page by page."""
        ...

    @property
    def error(self) -> str | None: ...


class ContentExtractor(Protocol):
    """Extracts a page's text, title, links and directives (`adapters.web_content`)."""

    def extract(self, body: bytes, *, kind: str, url: str, robots_header: str | None = None) -> PageContent:
        """What the page says; `robots_header` is the answer's X-Robots-Tag, whose directives
        join the page's robots meta tags in `noindex` and `nofollow`. Never raises for what the
        page holds (an unreadable page has `error` set)."""
        ...


class PriorPage(Protocol):
    """A page's stored result (`PageResult` as the chatbots area keeps it)."""

    @property
    def status(self) -> str: ...
    @property
    def links(self) -> Sequence[str]: ...
    @property
    def etag(self) -> str | None: ...
    @property
    def last_modified(self) -> str | None: ...
    @property
    def content_hash(self) -> str | None: ...


# --- what goes in and what comes out ---------------------------------------------------------


@dataclass(frozen=True)
class CrawlLimits:
    """What one crawl may do (issue 15's ``max_pages``, ``max_depth``, ``include_paths``,
    ``exclude_paths``, ``use_sitemap``, and the bounds that keep a job finite).

    Attributes:
        max_pages: page fetches at most (a hard limit: redirects of one fetch count once;
            robots.txt and sitemaps do not count).
        max_depth: links followed from the start URL at most.
        include_paths: globs a path must match (one of) when given (`services.crawl_scope`).
        exclude_paths: globs that exclude a path.
        include_subdomains: also crawl the site's subdomains.
        use_sitemap: read the sitemaps robots.txt lists (else ``/sitemap.xml``).
        min_delay_seconds: the least wait between two requests to one host.
        max_seconds: the crawl's time budget (its clock's seconds).
        max_urls: URLs considered at most (queued or recorded), whatever the site links to.
        max_sitemap_files: sitemap documents fetched at most (indexes included).
        sitemap_max_bytes: one sitemap document's cap (the protocol's 50 MB).
    """

    max_pages: int = 100
    max_depth: int = 3
    include_paths: Sequence[str] = ()
    exclude_paths: Sequence[str] = ()
    include_subdomains: bool = False
    use_sitemap: bool = True
    min_delay_seconds: float = 1.0
    max_seconds: float = 3600.0
    max_urls: int = 10_000
    max_sitemap_files: int = 20
    sitemap_max_bytes: int = 50 * 1024 * 1024


@dataclass(frozen=True)
class PageResult:
    """What became of one URL (what the chatbots area stores per page).

    Attributes:
        url: the normalised URL.
        status: ``indexed``, ``skipped`` or ``failed``.
        depth: links from the start URL (sitemap pages: 1).
        fetched: whether a request was made for it.
        final_url: the URL that answered, after redirects.
        skip_reason: one of `SKIP_REASONS` when skipped.
        detail: more, in words (the error, the canonical URL, the duplicate's original, …).
        http_status: the last HTTP status, if an answer came.
        kind: ``html`` or ``pdf``.
        title: the page's title.
        text: its main text (indexed pages).
        pages: a PDF's text page by page.
        words: words in `text`.
        content_hash: SHA-256 (hex) of `text`, what recrawls and duplicates compare.
        etag: the answer's ETag (for the next recrawl).
        last_modified: the answer's Last-Modified (likewise).
        links: the normalised same-site links it has (followed or not), what a resumed crawl
            follows without fetching it again.
    """

    url: str
    status: str
    depth: int
    fetched: bool = False
    final_url: str | None = None
    skip_reason: str | None = None
    detail: str | None = None
    http_status: int | None = None
    kind: str | None = None
    title: str = ""
    text: str = ""
    pages: Sequence[str] = ()
    words: int = 0
    content_hash: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    links: Sequence[str] = ()


@dataclass
class CrawlReport:
    """How a crawl ended.

    Attributes:
        stopped: ``done`` (nothing left), ``page_limit``, ``url_limit`` (`max_urls` reached:
            more was linked than considered), ``time_limit``, ``cancelled`` or ``quota`` (`admit`
            refused a page: the account's quota of crawled pages is used up).
        found: URLs recorded or replayed (pages of this crawl).
        indexed / skipped / failed: recorded pages by status (replayed ones included).
        fetched: page fetches made by this run.
        robots_blocked: URLs that robots.txt disallowed.
        errors: crawl-level problems in words (robots.txt unreachable, unreadable sitemaps).
    """

    stopped: str = "done"
    found: int = 0
    indexed: int = 0
    skipped: int = 0
    failed: int = 0
    fetched: int = 0
    robots_blocked: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class _AllowAll:
    """RFC 9309 section 2.3.1.3: robots.txt unavailable (4xx): no restriction."""

    def allowed(self, url: str) -> bool:
        return True

    def crawl_delay(self) -> float | None:
        return None

    def sitemaps(self) -> Sequence[str]:
        return ()


class _DisallowAll(_AllowAll):
    """RFC 9309 section 2.3.1.4: robots.txt unreachable (5xx, no answer): nothing may be crawled."""

    def allowed(self, url: str) -> bool:
        return False


def content_hash(text: str) -> str:
    """SHA-256 (hex) of `text` with its whitespace collapsed (what makes two pages the same)."""
    return hashlib.sha256(" ".join(text.split()).encode("utf-8")).hexdigest()


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


# --- the loop ---------------------------------------------------------------------------------


class _Crawl:
    """One run of `crawl` (its state; the function below is the interface)."""

    def __init__(
        self,
        *,
        start: str,
        limits: CrawlLimits,
        fetcher: PageFetcher,
        robots_parser: RobotsParser,
        sitemap_reader: SitemapReader,
        extractor: ContentExtractor,
        clock: CrawlClock,
        record: Callable[[PageResult], None],
        checkpoint: Callable[[int, int], None] | None,
        should_stop: Callable[[], bool] | None,
        admit: Callable[[str], bool] | None,
        already_done: Callable[[str], PriorPage | None] | None,
        known: Callable[[str], PriorPage | None] | None,
    ) -> None:
        self.limits = limits
        self.scope = CrawlScope(
            start,
            include_subdomains=limits.include_subdomains,
            include_paths=tuple(limits.include_paths),
            exclude_paths=tuple(limits.exclude_paths),
            max_depth=limits.max_depth,
        )
        self.start = start
        self.fetcher = fetcher
        self.robots_parser = robots_parser
        self.sitemap_reader = sitemap_reader
        self.extractor = extractor
        self.clock = clock
        self.record_page = record
        self.checkpoint = checkpoint
        self.should_stop = should_stop
        self.admit = admit
        self.already_done = already_done
        self.known = known
        self.deadline = clock.monotonic() + limits.max_seconds
        self.queue: deque[tuple[str, int]] = deque()
        self.keys: set[str] = set()
        self.hashes: dict[str, str] = {}
        self.robots: dict[str, RobotsRules] = {}
        self.next_request: dict[str, float] = {}
        self.report = CrawlReport()
        self.url_limit_hit = False

    # -- helpers ---------------------------------------------------------------------------

    def emit(self, result: PageResult) -> None:
        self.report.found += 1
        setattr(self.report, result.status, getattr(self.report, result.status) + 1)
        if result.skip_reason == "robots":
            self.report.robots_blocked.append(result.url)
        self.record_page(result)

    def consider(self, url: str, depth: int) -> None:
        """Queue a normalised URL found at `depth`, or record it as another host's."""
        key = url_key(url)
        if key in self.keys:
            return
        if len(self.keys) >= self.limits.max_urls:
            self.url_limit_hit = True
            return
        if not self.scope.same_site(url):
            self.keys.add(key)
            self.emit(PageResult(url, "skipped", depth, skip_reason="other_host", detail="not on the crawled site"))
            return
        if not self.scope.depth_allowed(depth) or not self.scope.path_allowed(url):
            return
        self.keys.add(key)
        self.queue.append((url, depth))

    def pace(self, url: str) -> bool:
        """Wait until `url`'s host may be asked again; False when that is past the deadline."""
        host = urlsplit(url).netloc
        wait = self.next_request.get(host, 0.0) - self.clock.monotonic()
        if self.clock.monotonic() + max(wait, 0.0) > self.deadline:
            return False
        if wait > 0:
            self.clock.sleep(wait)
        return True

    def paced(self, url: str) -> None:
        """Remember that `url`'s host was just asked."""
        host = urlsplit(url).netloc
        rules = self.robots.get(_origin(url))
        delay = max(self.limits.min_delay_seconds, (rules.crawl_delay() if rules else None) or 0.0)
        self.next_request[host] = self.clock.monotonic() + delay

    def rules_for(self, url: str) -> RobotsRules:
        """The robots.txt rules of `url`'s origin (fetched the first time: RFC 9309)."""
        origin = _origin(url)
        rules = self.robots.get(origin)
        if rules is not None:
            return rules
        robots_url = origin + "/robots.txt"
        if not self.pace(robots_url):
            raise _Stop("time_limit")
        fetched = self.fetcher.fetch_file(robots_url, max_bytes=ROBOTS_MAX_BYTES, truncate=True)
        if fetched.outcome == "ok":
            rules = self.robots_parser.parse(fetched.body)
        elif fetched.status_code is not None and 400 <= fetched.status_code < 500:
            rules = _AllowAll()
        elif fetched.outcome == "skipped" and fetched.skip_reason == "ssrf":
            rules = _AllowAll()  # the guard refuses the origin's pages too: each is an "ssrf" skip
        else:
            rules = _DisallowAll()
            what = f"HTTP {fetched.status_code}" if fetched.status_code else (fetched.error or fetched.outcome)
            self.report.errors.append(f"{robots_url} unreachable ({what}): nothing on {origin} is crawled")
        self.robots[origin] = rules
        self.paced(robots_url)
        return rules

    def hop_check(self, target: str) -> str | None:
        """Whether a redirect may go to `target`: same site and allowed by robots.txt."""
        normal = normalize_url(target)
        if normal is None or not self.scope.same_site(normal):
            return "other_host"
        if not self.rules_for(normal).allowed(normal):
            return "robots"
        return None

    def out_of_budget(self) -> str | None:
        if self.should_stop is not None and self.should_stop():
            return "cancelled"
        if self.clock.monotonic() >= self.deadline:
            return "time_limit"
        if self.report.fetched >= self.limits.max_pages:
            return "page_limit"
        return None

    # -- sitemaps --------------------------------------------------------------------------

    def read_sitemaps(self) -> None:
        """Queue the pages the site's sitemaps list (depth 1), reading at most
        `max_sitemap_files` documents on the site."""
        rules = self.rules_for(self.start)
        listed = [normalize_url(url) for url in rules.sitemaps()]
        pending = deque(url for url in listed if url is not None and self.scope.same_site(url))
        if not pending:
            pending.append(_origin(self.start) + "/sitemap.xml")
        seen: set[str] = set(pending)
        files = 0
        while pending and files < self.limits.max_sitemap_files and self.out_of_budget() is None:
            sitemap_url = pending.popleft()
            files += 1
            if not self.pace(sitemap_url):
                return
            fetched = self.fetcher.fetch_file(
                sitemap_url,
                max_bytes=self.limits.sitemap_max_bytes,
                hop_check=lambda target: None if self.scope.same_site(normalize_url(target) or "") else "other_host",
            )
            self.paced(sitemap_url)
            if fetched.outcome != "ok":
                if fetched.status_code != 404:
                    self.report.errors.append(f"sitemap {sitemap_url}: {fetched.error or fetched.outcome}")
                continue
            listing = self.sitemap_reader.read(fetched.body, url=sitemap_url)
            if listing.error:
                self.report.errors.append(f"sitemap {sitemap_url}: {listing.error}")
            for sub in listing.sitemaps:
                normal = normalize_url(sub)
                if normal is not None and normal not in seen and self.scope.same_site(normal):
                    seen.add(normal)
                    pending.append(normal)
            for page in listing.pages:
                normal = normalize_url(page)
                if normal is not None and self.scope.same_site(normal):  # a sitemap's other hosts: not ours
                    self.consider(normal, 1)

    # -- one page --------------------------------------------------------------------------

    def links_of(self, content: PageContent, base: str) -> list[str]:
        found: dict[str, None] = {}
        for link in content.links:
            normal = normalize_url(link, base)
            if normal is not None:
                found.setdefault(normal, None)
        return list(found)

    def visit(self, url: str, depth: int) -> None:
        prior = self.already_done(url) if self.already_done is not None else None
        if prior is not None:  # a resumed crawl: recorded before, not fetched again
            self.report.found += 1
            if prior.status in ("indexed", "skipped", "failed"):
                setattr(self.report, prior.status, getattr(self.report, prior.status) + 1)
            for link in prior.links:
                self.consider(link, depth + 1)
            return
        if not self.rules_for(url).allowed(url):
            self.emit(PageResult(url, "skipped", depth, skip_reason="robots", detail="disallowed by robots.txt"))
            return
        if not self.pace(url):
            self.queue.appendleft((url, depth))
            raise _Stop("time_limit")
        if self.admit is not None and not self.admit(url):
            self.queue.appendleft((url, depth))
            raise _Stop("quota")
        known = self.known(url) if self.known is not None else None
        fetched = self.fetcher.fetch_page(
            url,
            etag=known.etag if known else None,
            last_modified=known.last_modified if known else None,
            hop_check=self.hop_check,
        )
        self.report.fetched += 1
        self.paced(fetched.final_url)
        base = PageResult(
            url,
            "skipped",
            depth,
            fetched=True,
            final_url=fetched.final_url,
            http_status=fetched.status_code,
            kind=fetched.kind,
            etag=fetched.etag,
            last_modified=fetched.last_modified,
        )
        if fetched.outcome == "skipped":
            self.emit(replace(base, skip_reason=fetched.skip_reason, detail=fetched.error))
            return
        if fetched.outcome == "failed":
            self.emit(replace(base, status="failed", detail=fetched.error or f"HTTP {fetched.status_code}"))
            return
        if fetched.outcome == "not_modified":
            links = list(known.links) if known else []
            self.emit(
                replace(
                    base,
                    skip_reason="not_modified",
                    detail="unchanged since the last crawl (304)",
                    etag=fetched.etag or (known.etag if known else None),
                    last_modified=fetched.last_modified or (known.last_modified if known else None),
                    content_hash=known.content_hash if known else None,
                    links=links,
                )
            )
            for link in links:
                self.consider(link, depth + 1)
            return
        self.page(url, depth, fetched, base, known)

    def page(self, url: str, depth: int, fetched: FetchOutcome, base: PageResult, known: PriorPage | None) -> None:
        final = normalize_url(fetched.final_url) or url
        if url_key(final) != url_key(url):
            if url_key(final) in self.keys:
                self.emit(replace(base, skip_reason="duplicate", detail=f"redirects to {final}, crawled already"))
                return
            self.keys.add(url_key(final))
        content = self.extractor.extract(
            fetched.body, kind=fetched.kind or "html", url=final, robots_header=fetched.x_robots_tag
        )
        if content.error:
            self.emit(replace(base, status="failed", detail=content.error))
            return
        found = [] if content.nofollow else self.links_of(content, final)
        links = [link for link in found if self.scope.same_site(link)]
        text = content.text.strip()
        digest = content_hash(text) if text else None
        result = replace(
            base,
            title=content.title,
            links=links,
            content_hash=digest,
            words=len(text.split()),
        )
        for link in found:
            self.consider(link, depth + 1)
        canonical = normalize_url(content.canonical, final) if content.canonical else None
        if canonical is not None and self.scope.same_site(canonical) and url_key(canonical) != url_key(final):
            self.emit(replace(result, skip_reason="duplicate", detail=f"canonical: {canonical}"))
            self.consider(canonical, depth)
            return
        if content.noindex:
            self.emit(replace(result, skip_reason="noindex", detail="robots noindex"))
            return
        if digest is None:
            self.emit(replace(result, status="failed", detail="no text could be extracted"))
            return
        if known is not None and known.content_hash == digest:
            self.emit(replace(result, skip_reason="not_modified", detail="the same text as at the last crawl"))
            return
        if digest in self.hashes:
            self.emit(replace(result, skip_reason="duplicate", detail=f"the same text as {self.hashes[digest]}"))
            return
        self.hashes[digest] = final
        self.emit(replace(result, status="indexed", text=text, pages=tuple(content.pages)))

    # -- the walk --------------------------------------------------------------------------

    def run(self) -> CrawlReport:
        self.keys.add(url_key(self.start))
        self.queue.append((self.start, 0))
        try:
            if self.limits.use_sitemap and self.out_of_budget() is None:
                self.read_sitemaps()
            while self.queue:
                reason = self.out_of_budget()
                if reason is not None:
                    raise _Stop(reason)
                url, depth = self.queue.popleft()
                self.visit(url, depth)
                if self.checkpoint is not None:
                    done = self.report.found
                    self.checkpoint(done, done + min(len(self.queue), self.limits.max_pages - self.report.fetched))
            self.report.stopped = "url_limit" if self.url_limit_hit else "done"
        except _Stop as stop:
            self.report.stopped = stop.reason
        return self.report


class _Stop(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def crawl(
    *,
    start_url: str,
    limits: CrawlLimits,
    fetcher: PageFetcher,
    robots_parser: RobotsParser,
    sitemap_reader: SitemapReader,
    extractor: ContentExtractor,
    record: Callable[[PageResult], None],
    clock: CrawlClock | None = None,
    checkpoint: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    already_done: Callable[[str], PriorPage | None] | None = None,
    known: Callable[[str], PriorPage | None] | None = None,
    admit: Callable[[str], bool] | None = None,
) -> CrawlReport:
    """Crawl the website at `start_url` (the module docstring's rules), calling `record` once per
    URL with what became of it.

    Args:
        start_url: an absolute http(s) URL; its host (without ``www.``) is the site.
        limits: the crawl's scope and bounds.
        fetcher: fetches through the SSRF guard (`adapters.web_fetch.HttpxFetcher`).
        robots_parser: parses robots.txt (`adapters.web_robots.ProtegoRobotsParser`).
        sitemap_reader: reads sitemaps (`adapters.web_sitemaps.UspSitemapReader`).
        extractor: reads pages (`adapters.web_content.PageContentExtractor`).
        record: called with each `PageResult`, in crawl order (the caller stores it).
        clock: the monotonic clock and sleep (default: the system's).
        checkpoint: called after each URL with (done, total): URLs handled and that plus the
            ones queued (at most the pages still allowed), for a progress bar.
        should_stop: asked before each request; True cancels the crawl (``cancelled``).
        already_done: a URL's stored result from this crawl before a restart, or None: such a
            page is not fetched again, its stored links are followed.
        known: a URL's stored result from the previous crawl (a recrawl), or None: its ETag and
            Last-Modified make the request conditional.
        admit: asked with a URL right before it is fetched (after robots.txt and the pace);
            False stops the crawl there (``quota``), the URL not fetched. The caller counts the
            fetch it admits (the account's ``crawled_pages``).

    Returns:
        A `CrawlReport` (why it stopped, counts, robots-blocked URLs, crawl-level errors).

    Raises:
        InvalidStartUrl: `start_url` is no http(s) URL with a host.
    """
    start = normalize_url(start_url)
    if start is None:
        raise InvalidStartUrl(f"not an http(s) URL with a host: {start_url[:200]!r}")
    return _Crawl(
        start=start,
        limits=limits,
        fetcher=fetcher,
        robots_parser=robots_parser,
        sitemap_reader=sitemap_reader,
        extractor=extractor,
        clock=clock or SystemCrawlClock(),
        record=record,
        checkpoint=checkpoint,
        should_stop=should_stop,
        already_done=already_done,
        known=known,
        admit=admit,
    ).run()
