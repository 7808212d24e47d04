"""The crawl loop (services/crawling.py) over a fake site: the real parsers (protego, usp,
trafilatura, selectolax, pypdf: no network in them), a `FakeFetcher` for the web and a
`FakeCrawlClock` for time, so delays are asserted without waiting."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from adapters.web_content import PageContentExtractor
from adapters.web_fetch import FakeFetcher, FakePage
from adapters.web_robots import ProtegoRobotsParser
from adapters.web_sitemaps import UspSitemapReader
from services.clock import FakeCrawlClock
from services.crawling import CrawlLimits, InvalidStartUrl, PageResult, crawl
from tests.crawling.pdfs import make_pdf

S = "https://example.com"


def page(title: str, body: str = "", links: tuple[str, ...] = (), head: str = "") -> FakePage:
    anchors = "".join(f'<a href="{link}">{link}</a> ' for link in links)
    text = body or f"This is the page about {title}, with enough words to count as content."
    return FakePage(
        f"<html><head><title>{title}</title>{head}</head><body><nav>{anchors}</nav><p>{text}</p></body></html>"
    )


@dataclass
class Run:
    results: dict[str, PageResult]
    order: list[PageResult]
    report: object
    fetcher: FakeFetcher
    clock: FakeCrawlClock
    checkpoints: list[tuple[int, int]]

    def status(self, url: str) -> tuple[str, str | None]:
        result = self.results[url]
        return result.status, result.skip_reason


def run(site: dict[str, FakePage], start: str = S + "/", **limits) -> Run:
    fetcher = FakeFetcher(dict(site))
    clock = FakeCrawlClock()
    order: list[PageResult] = []
    checkpoints: list[tuple[int, int]] = []
    options = {"use_sitemap": False, **limits}
    report = crawl(
        start_url=start,
        limits=CrawlLimits(**{k: v for k, v in options.items() if k not in ("should_stop", "already_done", "known")}),
        fetcher=fetcher,
        robots_parser=ProtegoRobotsParser(),
        sitemap_reader=UspSitemapReader(),
        extractor=PageContentExtractor(),
        record=order.append,
        clock=clock,
        checkpoint=lambda done, total: checkpoints.append((done, total)),
        should_stop=options.get("should_stop"),
        already_done=options.get("already_done"),
        known=options.get("known"),
    )
    return Run({r.url: r for r in order}, order, report, fetcher, clock, checkpoints)


def test_breadth_first_within_depth_each_page_once():
    site = {
        S + "/": page("Home", links=("/a", "/b", "/a#x", "/a?utm_source=mail", "https://www.example.com/b/")),
        S + "/a": page("A", links=("/a/deep",)),
        S + "/b": page("B", links=("/",)),
        S + "/a/deep": page("Deep", links=("/a/deeper",)),
        S + "/a/deeper": page("Deeper"),
    }
    result = run(site, max_depth=2)
    assert [r.url for r in result.order] == [S + "/", S + "/a", S + "/b", S + "/a/deep"]
    assert all(r.status == "indexed" for r in result.order)
    assert result.results[S + "/a"].title == "A" and result.results[S + "/a"].words > 5
    assert result.results[S + "/a/deep"].depth == 2
    assert [url for url, _ in result.fetcher.requests if not url.endswith("robots.txt")] == [
        r.url for r in result.order
    ]
    assert result.report.stopped == "done" and result.report.indexed == 4


def test_robots_disallow_and_crawl_delay_are_honoured():
    site = {
        S + "/robots.txt": FakePage("User-agent: *\nDisallow: /private\nCrawl-delay: 5\n", content_type="text/plain"),
        S + "/": page("Home", links=("/private/x", "/public")),
        S + "/public": page("Public"),
    }
    result = run(site, min_delay_seconds=1)
    assert result.status(S + "/private/x") == ("skipped", "robots")
    assert result.results[S + "/private/x"].fetched is False
    assert S + "/private/x" not in [url for url, _ in result.fetcher.requests]
    assert result.report.robots_blocked == [S + "/private/x"]
    assert result.clock.slept == [5, 5]  # robots.txt, then / then /public: Crawl-delay beats the minimum


def test_our_own_group_in_robots_txt_wins():
    site = {
        S + "/robots.txt": FakePage(
            "User-agent: *\nDisallow: /\n\nUser-agent: CharterBot\nAllow: /\n", content_type="text/plain"
        ),
        S + "/": page("Home"),
    }
    assert run(site).status(S + "/") == ("indexed", None)


@pytest.mark.parametrize(
    ("answer", "allowed"),
    [
        (FakePage("gone", status=404, content_type="text/plain"), True),  # unavailable: allow all (RFC 9309 2.3.1.3)
        (FakePage("forbidden", status=403, content_type="text/plain"), True),
        (FakePage("down", status=503, content_type="text/plain"), False),  # unreachable: disallow all (2.3.1.4)
    ],
)
def test_robots_txt_status_rules(answer, allowed):
    result = run({S + "/robots.txt": answer, S + "/": page("Home")})
    assert result.status(S + "/") == (("indexed", None) if allowed else ("skipped", "robots"))
    assert bool(result.report.errors) is not allowed


def test_other_hosts_are_recorded_never_fetched():
    site = {S + "/": page("Home", links=("https://other.example.org/x", "https://docs.example.com/y", "mailto:a@b.c"))}
    result = run(site)
    assert result.status("https://other.example.org/x") == ("skipped", "other_host")
    assert result.status("https://docs.example.com/y") == ("skipped", "other_host")
    assert all("example.org" not in url and "docs." not in url for url, _ in result.fetcher.requests)
    wide = run(site, include_subdomains=True)
    assert wide.status("https://docs.example.com/y") == ("failed", None)  # fetched (404 in the fake)


def test_a_redirect_off_the_site_is_other_host_and_into_robots_is_robots():
    site = {
        S + "/robots.txt": FakePage("User-agent: *\nDisallow: /private\n", content_type="text/plain"),
        S + "/": page("Home", links=("/out", "/sneaky", "/moved")),
        S + "/out": FakePage(status=302, location="https://elsewhere.test/"),
        S + "/sneaky": FakePage(status=301, location="/private/page"),
        S + "/moved": FakePage(status=301, location="/new-home"),
        S + "/new-home": page("New home"),
    }
    result = run(site)
    assert result.status(S + "/out") == ("skipped", "other_host")
    assert result.status(S + "/sneaky") == ("skipped", "robots")
    assert result.results[S + "/moved"].status == "indexed"
    assert result.results[S + "/moved"].final_url == S + "/new-home"
    assert all("elsewhere" not in url and "/private" not in url for url, _ in result.fetcher.requests)


def test_redirect_loop_fails_and_a_redirect_to_a_crawled_page_is_a_duplicate():
    site = {
        S + "/": page("Home", links=("/loop-a", "/alias")),
        S + "/loop-a": FakePage(status=302, location="/loop-b"),
        S + "/loop-b": FakePage(status=302, location="/loop-a"),
        S + "/alias": FakePage(status=301, location="/"),
    }
    result = run(site)
    assert result.status(S + "/loop-a") == ("failed", None)
    assert result.results[S + "/loop-a"].detail == "redirect loop"
    assert result.status(S + "/alias") == ("skipped", "duplicate")


def test_noindex_nofollow_canonical_and_same_text():
    site = {
        S + "/": page("Home", links=("/hidden", "/print", "/copy", "/nofollow", "/header", "/other-bot", "/a.pdf")),
        S + "/hidden": page("Hidden", head='<meta name="robots" content="noindex">', links=("/from-hidden",)),
        S + "/from-hidden": page("Reached through a noindex page"),
        S + "/print": page("Print", head='<link rel="canonical" href="/article">'),
        S + "/article": page("Article"),
        S + "/nofollow": page("Nofollow", head='<meta name="robots" content="nofollow">', links=("/secret",)),
        S + "/secret": page("Secret"),
        S + "/header": FakePage(page("Header").body, x_robots_tag="noindex"),
        S + "/other-bot": FakePage(page("Other bot").body, x_robots_tag="googlebot: noindex"),
        S + "/a.pdf": FakePage(make_pdf("Private manual"), content_type="application/pdf", x_robots_tag="noindex"),
    }
    site[S + "/copy"] = FakePage(site[S + "/"].body)  # the same text under another URL
    result = run(site)
    assert result.status(S + "/hidden") == ("skipped", "noindex")
    assert result.status(S + "/from-hidden") == ("indexed", None)  # noindex still follows links
    assert result.status(S + "/print") == ("skipped", "duplicate")
    assert result.results[S + "/print"].detail == f"canonical: {S}/article"
    assert result.status(S + "/article") == ("indexed", None)  # the canonical page is crawled
    assert result.status(S + "/copy") == ("skipped", "duplicate")
    assert result.status(S + "/nofollow") == ("indexed", None)
    assert S + "/secret" not in result.results
    assert result.status(S + "/header") == ("skipped", "noindex")
    assert result.status(S + "/other-bot") == ("indexed", None)  # another crawler's directive
    assert result.status(S + "/a.pdf") == ("skipped", "noindex")  # X-Robots-Tag: how a PDF says it


def test_types_sizes_ssrf_and_http_errors():
    site = {
        S + "/": page("Home", links=("/image.png", "/big", "/manual.pdf", "/missing", "/internal", "/empty")),
        S + "/image.png": FakePage(b"\x89PNG...", content_type="image/png"),
        S + "/big": FakePage("<html><body>" + "x" * 5000 + "</body></html>"),
        S + "/manual.pdf": FakePage(
            make_pdf("Install the widget", "Then use it", title="Widget manual"), content_type="application/pdf"
        ),
        S + "/empty": FakePage("<html><body><script>render()</script></body></html>"),
    }
    fetcher_site = dict(site)
    result = run(fetcher_site)
    assert result.status(S + "/image.png") == ("skipped", "type")
    assert result.status(S + "/missing") == ("failed", None) and result.results[S + "/missing"].http_status == 404
    assert result.status(S + "/empty") == ("failed", None) and "no text" in result.results[S + "/empty"].detail
    pdf = result.results[S + "/manual.pdf"]
    assert (pdf.status, pdf.kind, pdf.title, list(pdf.pages)) == (
        "indexed",
        "pdf",
        "Widget manual",
        ["Install the widget", "Then use it"],
    )
    small = FakeFetcher(dict(site), refused={S + "/internal"}, max_page_bytes=1000)
    order: list[PageResult] = []
    crawl(
        start_url=S,
        limits=CrawlLimits(use_sitemap=False),
        fetcher=small,
        robots_parser=ProtegoRobotsParser(),
        sitemap_reader=UspSitemapReader(),
        extractor=PageContentExtractor(),
        record=order.append,
        clock=FakeCrawlClock(),
    )
    by_url = {r.url: r for r in order}
    assert (by_url[S + "/big"].status, by_url[S + "/big"].skip_reason) == ("skipped", "size")
    assert (by_url[S + "/internal"].status, by_url[S + "/internal"].skip_reason) == ("skipped", "ssrf")


def test_sitemap_pages_no_link_reaches_are_crawled_at_depth_one():
    site = {
        S + "/robots.txt": FakePage(
            f"User-agent: *\nAllow: /\nSitemap: {S}/sitemap_index.xml\nSitemap: https://cdn.other.test/s.xml\n",
            content_type="text/plain",
        ),
        S + "/sitemap_index.xml": FakePage(
            f'<?xml version="1.0"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><sitemap><loc>{S}/pages.xml</loc></sitemap></sitemapindex>',
            content_type="application/xml",
        ),
        S + "/pages.xml": FakePage(
            f'<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><url><loc>{S}/orphan</loc></url><url><loc>https://other.test/x</loc></url></urlset>',
            content_type="application/xml",
        ),
        S + "/": page("Home"),
        S + "/orphan": page("Orphan"),
    }
    result = run(site, use_sitemap=True)
    assert result.status(S + "/orphan") == ("indexed", None)
    assert result.results[S + "/orphan"].depth == 1
    assert "https://other.test/x" not in result.results  # a sitemap's other hosts are not ours
    assert all("other.test" not in url for url, _ in result.fetcher.requests)


def test_the_default_sitemap_location_is_tried_when_robots_lists_none():
    site = {
        S + "/": page("Home"),
        S + "/sitemap.xml": FakePage(f"{S}/orphan\n", content_type="text/plain"),
        S + "/orphan": page("Orphan"),
    }
    assert run(site, use_sitemap=True).status(S + "/orphan") == ("indexed", None)


def test_include_exclude_and_page_limit():
    links = (*tuple(f"/docs/{n}" for n in range(10)), "/blog/1", "/docs/internal/x")
    site = {S + "/": page("Home", links=links)} | {S + link: page(link) for link in links}
    result = run(site, include_paths=["/docs/*"], exclude_paths=["/docs/internal/*"], max_pages=4)
    assert [r.url for r in result.order] == [S + "/", S + "/docs/0", S + "/docs/1", S + "/docs/2"]
    assert result.report.stopped == "page_limit" and result.report.fetched == 4
    assert result.checkpoints[-1] == (4, 4)


def test_cancellation_and_time_limit():
    links = tuple(f"/p{n}" for n in range(20))
    site = {S + "/": page("Home", links=links)} | {S + link: page(link) for link in links}
    asked = []
    result = run(site, should_stop=lambda: len(asked.append(1) or asked) > 3)
    assert result.report.stopped == "cancelled" and len(result.order) == 3
    timed = run(site, max_seconds=10, min_delay_seconds=3)
    assert timed.report.stopped == "time_limit"
    assert timed.clock.now <= 10 and len(timed.order) == 3  # robots.txt at 0, pages at 3, 6, 9; 12 is too late


@dataclass
class Stored:
    status: str
    links: tuple[str, ...] = ()
    etag: str | None = None
    last_modified: str | None = None
    content_hash: str | None = None


def test_a_resumed_crawl_fetches_nothing_twice_and_goes_on():
    site = {
        S + "/": page("Home", links=("/a", "/b")),
        S + "/a": page("A", links=("/a1",)),
        S + "/b": page("B"),
        S + "/a1": page("A1"),
    }
    first = run(site, max_pages=2)  # the worker "dies" after two pages
    assert [r.url for r in first.order] == [S + "/", S + "/a"]
    stored = {r.url: Stored(r.status, tuple(r.links)) for r in first.order}
    second = run(site, already_done=stored.get)
    assert [r.url for r in second.order] == [S + "/b", S + "/a1"]
    assert [url for url, _ in second.fetcher.requests if not url.endswith("robots.txt")] == [S + "/b", S + "/a1"]
    assert second.report.found == 4 and second.report.indexed == 4


def test_a_recrawl_is_conditional_and_unchanged_pages_are_not_modified():
    site = {
        S + "/": FakePage(page("Home", links=("/a", "/b")).body, etag='"v1"'),
        S + "/a": page("A"),
        S + "/b": page("B"),
    }
    first = run(site)
    stored = {r.url: Stored(r.status, tuple(r.links), r.etag, r.last_modified, r.content_hash) for r in first.order}
    site[S + "/b"] = page("B", body="B has changed: a new paragraph with other words in it.")
    again = run(site, known=stored.get)
    assert dict(again.fetcher.requests)[S + "/"] == {"If-None-Match": '"v1"'}
    assert again.status(S + "/") == ("skipped", "not_modified")  # 304: its stored links are followed
    assert again.status(S + "/a") == ("skipped", "not_modified")  # 200, the same text
    assert again.status(S + "/b") == ("indexed", None)


def test_a_bad_start_url_is_refused():
    with pytest.raises(InvalidStartUrl):
        run({}, start="ftp://example.com/")


def test_urls_considered_are_bounded_whatever_a_page_links_to():
    links = tuple(f"/p{n}" for n in range(50)) + tuple(f"https://site{n}.test/" for n in range(50))
    site = {S + "/": page("Home", links=links)}
    result = run(site, max_urls=20, max_pages=5)
    assert len(result.order) <= 20 and result.report.fetched <= 5
    assert result.report.stopped in ("page_limit", "url_limit")


def test_robots_txt_redirects_are_followed():
    site = {
        "http://example.com/robots.txt": FakePage(status=301, location=S + "/robots.txt"),
        S + "/robots.txt": FakePage("User-agent: *\nDisallow: /no\n", content_type="text/plain"),
        "http://example.com/": page("Home", links=("/no", "/yes")),
        "http://example.com/yes": page("Yes"),
    }
    result = run(site, start="http://example.com/")
    assert result.status("http://example.com/no") == ("skipped", "robots")
    assert result.status("http://example.com/yes") == ("indexed", None)
