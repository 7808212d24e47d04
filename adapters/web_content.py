"""What a fetched page says (issue 15: "main text via trafilatura (selectolax/lxml where it
helps), ``<meta name="robots" content="noindex">`` and ``rel=canonical`` honoured"): the adapter
of the `services.crawling.ContentExtractor` port.

* HTML: trafilatura finds the main text and the title (boilerplate such as navigation and
  footers left out); selectolax reads what trafilatura does not report: the robots meta tag
  (``<meta name="robots">`` and ``<meta name="charterbot">``, Google's convention of a
  crawler-specific name), ``<link rel="canonical">``, ``<base href>`` and every ``<a href>``
  (links are taken from the whole page, navigation included: that is how a crawler finds pages).
* PDF: pypdf's text of each page, in order, so passages can keep their page numbers; the title
  from the document information, else the first line of text.

It never raises for what a document holds: an unreadable one is `Extracted` with `error` set.
"""

from __future__ import annotations

import codecs
import io
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from urllib.parse import urljoin

import trafilatura
from pypdf import PdfReader
from selectolax.lexbor import LexborHTMLParser

from adapters.web_fetch import AGENT_NAME

logging.getLogger("trafilatura").setLevel(logging.ERROR)
logging.getLogger("pypdf").setLevel(logging.ERROR)

MAX_LINKS = 2000
"""Links read from one page at most (in document order)."""
MAX_PDF_PAGES = 2000
"""PDF pages read at most."""


@dataclass(frozen=True)
class Extracted:
    """What one page says.

    Attributes:
        title: the page's title ("" when it has none).
        text: its main text, paragraphs separated by newlines.
        links: the absolute URLs of its ``<a href>`` links (raw: not normalised, not filtered),
            at most `MAX_LINKS`.
        noindex: the page asks not to be indexed (robots meta ``noindex`` or ``none``).
        nofollow: the page asks that its links not be followed (``nofollow`` or ``none``).
        canonical: the absolute URL of its ``<link rel="canonical">``, if any.
        pages: a PDF's text page by page (page n is ``pages[n - 1]``); empty for HTML.
        error: why nothing could be read, or None.
    """

    title: str = ""
    text: str = ""
    links: Sequence[str] = ()
    noindex: bool = False
    nofollow: bool = False
    canonical: str | None = None
    pages: Sequence[str] = field(default_factory=tuple)
    error: str | None = None


_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([a-zA-Z0-9_.:-]+)""", re.IGNORECASE)


def decode_html(body: bytes) -> str:
    """An HTML document's text: UTF-8 (a byte order mark or valid UTF-8), else the charset its
    ``<meta>`` declares in the first 4 KiB, else windows-1252 (what browsers assume; the WHATWG
    Encoding Standard maps ISO-8859-1 to it). Undecodable bytes are replaced, never fatal."""
    if body.startswith(codecs.BOM_UTF8):
        return body[3:].decode("utf-8", errors="replace")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        pass
    declared = _META_CHARSET.search(body[:4096])
    if declared is not None:
        try:
            return body.decode(declared.group(1).decode("ascii"), errors="replace")
        except LookupError:
            pass
    return body.decode("cp1252", errors="replace")


def robots_directives(value: str | None) -> set[str]:
    """The directives of a robots meta tag or an X-Robots-Tag header value, lower-case
    (``"noindex, nofollow"`` → ``{"noindex", "nofollow"}``; a header's ``agent:`` prefix is
    kept only when it names us or nobody)."""
    if not value:
        return set()
    found: set[str] = set()
    for part in value.split(","):
        word = part.strip().lower()
        if ":" in word:  # X-Robots-Tag: "googlebot: noindex" applies to that agent only
            agent, _, word = word.partition(":")
            if agent.strip() != AGENT_NAME.lower():
                continue
            word = word.strip()
        if word:
            found.add(word)
    return found


class PageContentExtractor:
    """Extracts text, title, links and robots directives from HTML and PDF pages."""

    def extract(self, body: bytes, *, kind: str, url: str, robots_header: str | None = None) -> Extracted:
        """What the page `body` (of `kind` ``html`` or ``pdf``, fetched from `url`) says.

        Args:
            body: the page's bytes (HTML in its declared or sniffed encoding; PDF as is).
            kind: ``html`` or ``pdf``.
            url: the URL the page was fetched from (relative links resolve against it).
            robots_header: the answer's X-Robots-Tag, whose directives join the page's own (the
                only way a PDF says ``noindex``).
        """
        try:
            if kind == "pdf":
                extracted = self._pdf(body)
            elif kind == "html":
                extracted = self._html(body, url)
            else:
                return Extracted(error=f"unknown kind {kind!r}")
        except Exception as error:  # parsers of hostile input: any failure is "unreadable"
            return Extracted(error=f"unreadable {kind}: {type(error).__name__}: {error}"[:300])
        header = robots_directives(robots_header)
        return replace(
            extracted,
            noindex=extracted.noindex or bool(header & {"noindex", "none"}),
            nofollow=extracted.nofollow or bool(header & {"nofollow", "none"}),
        )

    def _html(self, body: bytes, url: str) -> Extracted:
        html = decode_html(body)
        tree = LexborHTMLParser(html)
        base = url
        base_node = tree.css_first("base[href]")
        if base_node is not None and base_node.attributes.get("href"):
            base = urljoin(url, base_node.attributes["href"] or "")
        directives: set[str] = set()
        for meta in tree.css("meta[name]"):
            name = (meta.attributes.get("name") or "").strip().lower()
            if name in ("robots", AGENT_NAME.lower()):
                directives |= robots_directives(meta.attributes.get("content"))
        canonical = None
        for link in tree.css("link[rel][href]"):
            rels = (link.attributes.get("rel") or "").lower().split()
            if "canonical" in rels:
                canonical = urljoin(base, (link.attributes.get("href") or "").strip())
                break
        links: list[str] = []
        for anchor in tree.css("a[href]"):
            href = (anchor.attributes.get("href") or "").strip()
            if href and not href.startswith("#"):
                links.append(urljoin(base, href))
                if len(links) >= MAX_LINKS:
                    break
        document = trafilatura.bare_extraction(
            html,
            url=url,
            with_metadata=True,
            include_comments=False,
            include_tables=True,
        )
        title = (getattr(document, "title", None) or "").strip()
        if not title:
            node = tree.css_first("title")
            title = node.text(strip=True) if node is not None else ""
        text = (getattr(document, "text", None) or "").strip()
        return Extracted(
            title=title,
            text=text,
            links=links,
            noindex=bool(directives & {"noindex", "none"}),
            nofollow=bool(directives & {"nofollow", "none"}),
            canonical=canonical,
        )

    def _pdf(self, body: bytes) -> Extracted:
        reader = PdfReader(io.BytesIO(body))
        if reader.is_encrypted:
            reader.decrypt("")  # many PDFs are "encrypted" with an empty user password
        pages = []
        for number, page in enumerate(reader.pages):
            if number >= MAX_PDF_PAGES:
                break
            pages.append((page.extract_text() or "").strip())
        text = "\n\n".join(part for part in pages if part)
        info = reader.metadata
        title = str(info.title).strip() if info is not None and info.title else ""
        if not title and text:
            title = text.strip().splitlines()[0][:200]
        return Extracted(title=title, text=text, pages=pages)
