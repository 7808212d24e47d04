"""Sitemaps for the crawler (sitemaps.org protocol 0.9): the adapter of the
`services.crawling.SitemapReader` port, parsing with ultimate-sitemap-parser (`usp`).

usp can fetch by itself (requests, or a custom `AbstractWebClient`), but here it only parses:
`usp.tree.sitemap_from_str` reads a document the crawler already fetched through its guarded
fetcher. So every sitemap request goes through the SSRF guard, the same-site rule, the per-host
delay and the crawl's bounds, and usp's own discovery (a dozen guessed paths, retries with
sleeps) never runs. A sitemap index comes back with its sub-sitemaps unfetched: the crawler
fetches those itself, within its own limit on sitemap files.

Formats: XML ``urlset`` and ``sitemapindex``, plain-text sitemaps (one URL a line), RSS 2.0 and
Atom feeds; gzip-compressed files (``.xml.gz``) are decompressed here, at most `max_bytes`.
"""

from __future__ import annotations

import gzip
import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from usp.objects.sitemap import AbstractIndexSitemap, InvalidSitemap
from usp.tree import sitemap_from_str

logging.getLogger("usp").setLevel(logging.ERROR)  # usp logs every parse at INFO, every oddity at WARNING


@dataclass(frozen=True)
class SitemapEntries:
    """What one sitemap document lists.

    Attributes:
        pages: the page URLs (``<url><loc>``, text lines, feed links), in document order.
        sitemaps: the sub-sitemap URLs of an index (``<sitemap><loc>``).
        error: why nothing could be read (not a sitemap, bad gzip, too large), or None.
    """

    pages: Sequence[str] = ()
    sitemaps: Sequence[str] = ()
    error: str | None = None


class UspSitemapReader:
    """Reads fetched sitemap documents with usp.

    Args:
        max_bytes: the most bytes a gzip-compressed sitemap may expand to (the protocol allows
            50 MB uncompressed; a larger expansion is refused, not read).
        max_urls: the most page URLs taken from one document.
    """

    def __init__(self, *, max_bytes: int = 50 * 1024 * 1024, max_urls: int = 50_000) -> None:
        self.max_bytes = max_bytes
        self.max_urls = max_urls

    def read(self, body: bytes, *, url: str) -> SitemapEntries:
        """The pages and sub-sitemaps listed in `body`, the document fetched from `url`.

        Never raises for what the document holds: an unreadable one is `SitemapEntries` with
        `error` set.
        """
        if body[:2] == b"\x1f\x8b":
            try:
                with gzip.GzipFile(fileobj=io.BytesIO(body)) as unzipped:
                    body = unzipped.read(self.max_bytes + 1)
            except (OSError, EOFError) as error:
                return SitemapEntries(error=f"not gzip: {error}")
            if len(body) > self.max_bytes:
                return SitemapEntries(error=f"expands to more than {self.max_bytes} bytes")
        text = body.decode("utf-8", errors="replace").lstrip("\ufeff")
        try:
            parsed = sitemap_from_str(text)
        except Exception as error:  # a parser of hostile input: any failure is "unreadable"
            return SitemapEntries(error=f"unreadable: {type(error).__name__}")
        if isinstance(parsed, InvalidSitemap):
            return SitemapEntries(error=parsed.reason.replace("http://usp-local-dummy.local/", url))
        subs = [sub.url for sub in parsed.sub_sitemaps] if isinstance(parsed, AbstractIndexSitemap) else []
        pages: list[str] = []
        if not subs:
            for page in parsed.all_pages():
                pages.append(page.url)
                if len(pages) >= self.max_urls:
                    break
        return SitemapEntries(pages=pages, sitemaps=subs)
