"""The crawler's parsers: robots.txt (protego), sitemaps (usp, from bytes) and page content
(trafilatura, selectolax, pypdf). No network."""

from __future__ import annotations

import gzip

from adapters.web_content import PageContentExtractor, decode_html, robots_directives
from adapters.web_robots import ProtegoRobotsParser
from adapters.web_sitemaps import UspSitemapReader
from tests.crawling.pdfs import make_pdf

ROBOTS = b"""# comment
User-agent: *
Disallow: /private/
Allow: /private/open
Crawl-delay: 2

User-agent: OtherBot
Disallow: /

Sitemap: https://example.com/sitemap_index.xml
"""


def test_robots_rules_for_our_agent():
    rules = ProtegoRobotsParser().parse(ROBOTS)
    assert not rules.allowed("https://example.com/private/x")
    assert rules.allowed("https://example.com/private/open")  # the longer rule wins (RFC 9309 2.2.2)
    assert rules.allowed("https://example.com/public")
    assert rules.crawl_delay() == 2.0
    assert list(rules.sitemaps()) == ["https://example.com/sitemap_index.xml"]


def test_a_group_of_our_own_replaces_the_star_group():
    rules = ProtegoRobotsParser().parse(
        b"User-agent: *\nDisallow: /\nCrawl-delay: 9\n\nUser-agent: charterbot\nDisallow: /x\n"
    )
    assert rules.allowed("https://example.com/a") and not rules.allowed("https://example.com/x")
    assert rules.crawl_delay() is None


def test_a_broken_robots_txt_is_read_as_far_as_it_goes():
    rules = ProtegoRobotsParser().parse(
        b"\xef\xbb\xbfUser-agent: *\nNonsense: /typo\nDisallow: /real\n\xff\xfe garbage\n"
    )
    assert rules.allowed("https://example.com/typo") and not rules.allowed("https://example.com/real")


URLSET = b"""<?xml version="1.0" encoding="UTF-8"?>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
  <url><loc>https://example.com/a</loc><lastmod>2026-11-01</lastmod></url>
  <url><loc>https://example.com/b</loc></url>
</urlset>"""
INDEX = b"""<?xml version="1.0" encoding="UTF-8"?>
<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
  <sitemap><loc>https://example.com/pages.xml.gz</loc></sitemap>
  <sitemap><loc>https://example.com/posts.xml</loc></sitemap>
</sitemapindex>"""


def test_sitemaps_urlset_index_text_and_gzip():
    reader = UspSitemapReader()
    assert list(reader.read(URLSET, url="https://example.com/s.xml").pages) == [
        "https://example.com/a",
        "https://example.com/b",
    ]
    index = reader.read(INDEX, url="https://example.com/i.xml")
    assert (list(index.pages), list(index.sitemaps)) == (
        [],
        ["https://example.com/pages.xml.gz", "https://example.com/posts.xml"],
    )
    assert (
        next(iter(reader.read(gzip.compress(URLSET), url="https://example.com/s.xml.gz").pages))
        == "https://example.com/a"
    )
    text = reader.read(b"https://example.com/x\nhttps://example.com/y\n", url="https://example.com/s.txt")
    assert list(text.pages) == ["https://example.com/x", "https://example.com/y"]


def test_unreadable_sitemaps_say_so():
    reader = UspSitemapReader(max_bytes=1000)
    assert reader.read(b"<html><body>not a sitemap</body></html>", url="https://example.com/s.xml").error
    assert (
        "expands to more than"
        in reader.read(gzip.compress(b"<" + b"x" * 5000), url="https://example.com/s.xml.gz").error
    )
    assert reader.read(b"\x1f\x8b broken", url="https://example.com/s.xml.gz").error.startswith("not gzip")
    capped = UspSitemapReader(max_urls=1).read(URLSET, url="https://example.com/s.xml")
    assert list(capped.pages) == ["https://example.com/a"]


PAGE = b"""<!doctype html><html><head>
<title>Pricing | Example</title>
<base href="https://example.com/en/">
<meta name="robots" content="NOINDEX, follow">
<link rel="alternate" href="/de/pricing"><link rel="canonical" href="pricing">
</head><body>
<nav><a href="/">Home</a> <a href="docs/">Docs</a> <a href="#top">Top</a> <a href="mailto:x@example.com">Mail</a></nav>
<article><h1>Pricing</h1>
<p>Every plan includes unlimited projects and a generous amount of storage for teams.</p></article>
<footer>Copyright</footer></body></html>"""


def test_html_text_title_links_and_directives():
    page = PageContentExtractor().extract(PAGE, kind="html", url="https://example.com/en/pricing?ref=x")
    assert page.error is None
    assert "unlimited projects" in page.text and "Copyright" not in page.text
    assert page.title.startswith("Pricing")
    assert page.links == ["https://example.com/", "https://example.com/en/docs/", "mailto:x@example.com"]
    assert (page.noindex, page.nofollow) == (True, False)
    assert page.canonical == "https://example.com/en/pricing"


def test_robots_directives_of_meta_tags_and_headers():
    assert robots_directives("noindex, nofollow") == {"noindex", "nofollow"}
    assert robots_directives("googlebot: noindex") == set()  # another crawler's
    assert robots_directives("CharterBot: noindex") == {"noindex"}
    assert robots_directives(None) == set()
    crawler_meta = b'<html><head><meta name="CharterBot" content="none"></head><body><p>x</p></body></html>'
    page = PageContentExtractor().extract(crawler_meta, kind="html", url="https://example.com/")
    assert (page.noindex, page.nofollow) == (True, True)


def test_html_encodings():
    assert decode_html("café".encode()) == "café"
    assert "café" in decode_html(b'<meta charset="iso-8859-1"><p>caf\xe9</p>')
    assert "café" in decode_html(b"<p>caf\xe9</p>")  # no declaration: windows-1252
    assert decode_html(b"\xef\xbb\xbfhi") == "hi"


def test_pdf_pages_keep_their_numbers():
    pdf = PageContentExtractor().extract(
        make_pdf("First page", "Second page"), kind="pdf", url="https://example.com/a.pdf"
    )
    assert list(pdf.pages) == ["First page", "Second page"] and pdf.title == "First page"
    broken = PageContentExtractor().extract(b"%PDF-1.4 truncated", kind="pdf", url="https://example.com/b.pdf")
    assert broken.error is not None and broken.text == ""
