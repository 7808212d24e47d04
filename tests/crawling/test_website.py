"""The crawler against a real website served on 127.0.0.1 (tests/crawling/website.py): the
guarded httpx fetcher, protego, usp, trafilatura and pypdf together. Which pages are indexed, and
why each other one is not; the host an external link names is never even resolved; with
``allow_private=False`` the guard refuses every spelling of the loopback address before any
request. Nothing but 127.0.0.1 is contacted."""

from __future__ import annotations

import itertools

import pytest

from adapters.address_guard import AddressGuard, system_resolver
from adapters.web_content import PageContentExtractor
from adapters.web_fetch import HttpxFetcher, charter_version
from adapters.web_robots import ProtegoRobotsParser
from adapters.web_sitemaps import UspSitemapReader
from services.clock import FakeCrawlClock, SystemCrawlClock
from services.crawling import CrawlLimits, PageResult, crawl
from tests.crawling.website import serving

INFO_URL = "https://charter.example/docs/crawler"


class RecordingResolver:
    """The system resolver, recording every name it is asked (numeric hosts never reach it)."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append(host)
        return system_resolver(host, port)


def run_crawl(start: str, guard: AddressGuard, clock, **limits) -> tuple[dict[str, PageResult], object]:
    fetcher = HttpxFetcher(guard, info_url=INFO_URL, timeout_seconds=0.5, total_seconds=5)
    results: list[PageResult] = []
    try:
        report = crawl(
            start_url=start,
            limits=CrawlLimits(**{"max_seconds": 60, **limits}),
            fetcher=fetcher,
            robots_parser=ProtegoRobotsParser(),
            sitemap_reader=UspSitemapReader(),
            extractor=PageContentExtractor(),
            record=results.append,
            clock=clock,
        )
    finally:
        fetcher.close()
    return {result.url: result for result in results}, report


def test_the_crawler_indexes_what_it_should_and_says_why_not_for_the_rest():
    resolver = RecordingResolver()
    clock = FakeCrawlClock()  # the Crawl-delay is asserted from the recorded waits, not waited
    with serving() as site:
        results, report = run_crawl(site.url + "/", AddressGuard(allow_private=True, resolver=resolver), clock)
        requested = site.paths()
        agents = {request.headers.get("user-agent") for request in site.requests}
        hosts = {request.headers.get("host") for request in site.requests}
    base = site.url
    outcome = {url.removeprefix(base): (r.status, r.skip_reason) for url, r in results.items()}
    assert outcome == {
        "/": ("indexed", None),
        "/orphan": ("indexed", None),  # listed by the sitemap, linked from nowhere
        "/about": ("indexed", None),  # also linked as /about?utm_source=…#team: one page
        "/docs/": ("indexed", None),
        "/docs/setup": ("indexed", None),
        "/manual.pdf": ("indexed", None),
        "/private/secret": ("skipped", "robots"),
        "http://elsewhere.invalid/page": ("skipped", "other_host"),
        "/away": ("skipped", "other_host"),  # a redirect to elsewhere.invalid
        "/hidden": ("skipped", "noindex"),
        "/huge": ("skipped", "size"),
        "/print": ("skipped", "duplicate"),  # rel=canonical → /about
        "/data.zip": ("skipped", "type"),
        "/loop-a": ("failed", None),
        "/slow": ("failed", None),
    }
    assert results[base + "/loop-a"].detail == "redirect loop"
    assert results[base + "/slow"].detail.startswith("timeout")
    assert results[base + "/print"].detail == f"canonical: {base}/about"
    assert results[base + "/orphan"].depth == 1
    pdf = results[base + "/manual.pdf"]
    assert (pdf.kind, pdf.title, list(pdf.pages)) == ("pdf", "Widget manual", ["Install the widget", "Use the widget"])
    home = results[base + "/"]
    assert home.title == "Home" and home.words > 10 and len(home.content_hash) == 64 and home.http_status == 200
    assert report.stopped == "done" and report.robots_blocked == [base + "/private/secret"]
    assert report.indexed == 6 and report.skipped == 7 and report.failed == 2

    # what was asked of the site: robots.txt and the sitemap first, no page twice, never the
    # disallowed one; the external host never even resolved, and the huge page cut short
    assert requested[:2] == ["/robots.txt", "/sitemap.xml"]
    assert "/private/secret" not in requested
    assert len(requested) == len(set(requested))  # a → b → a: the loop is seen before asking a again
    assert set(requested) == {
        "/robots.txt",
        "/sitemap.xml",
        "/",
        "/orphan",
        "/about",
        "/docs/",
        "/docs/setup",
        "/manual.pdf",
        "/away",
        "/hidden",
        "/huge",
        "/print",
        "/data.zip",
        "/loop-a",
        "/loop-b",
        "/slow",
    }
    assert resolver.asked == []
    assert hosts == {f"127.0.0.1:{site.port}"}
    assert agents == {f"CharterBot/{charter_version()} (+{INFO_URL})"}
    assert all(wait == pytest.approx(1.0, abs=0.01) for wait in clock.slept) and len(clock.slept) >= 10


def test_the_crawl_delay_is_really_waited_between_requests():
    with serving() as site:
        results, _report = run_crawl(
            site.url + "/docs/",
            AddressGuard(allow_private=True),
            SystemCrawlClock(),
            use_sitemap=False,
            min_delay_seconds=0.3,
            max_pages=2,
        )
        times = [request.at for request in site.requests]
    assert [url.removeprefix(site.url) for url in results] == ["/docs/", "/docs/setup"]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert len(gaps) == 2 and all(gap >= 0.95 for gap in gaps), gaps  # robots.txt says Crawl-delay: 1


@pytest.mark.parametrize(
    "host", ["localhost", "127.0.0.2", "[::1]", "0x7f000001", "127.1", "2130706433", "[::ffff:127.0.0.1]"]
)
def test_without_allow_private_every_loopback_spelling_is_refused_before_any_request(host):
    with serving() as site:
        results, _report = run_crawl(f"http://{host}:{site.port}/", AddressGuard(allow_private=False), FakeCrawlClock())
        requested = site.paths()
    assert requested == []
    assert [(r.status, r.skip_reason) for r in results.values()] == [("skipped", "ssrf")]
    assert "loopback" in next(iter(results.values())).detail
