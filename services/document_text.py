"""Documents (issue 15): the text of a document, in blocks that keep where they came from.

- PDF (pypdf): the text of each page, in paragraphs, with its page number (1-based); the heading
  is the PDF's outline (bookmark) entry in force on that page, when it has one.
- DOCX (python-docx): paragraphs and table rows in document order; paragraphs styled ``Title``
  or ``Heading N`` are headings and head the blocks that follow.
- Markdown: ATX (``# …``) and setext (underlined) headings, paragraphs, fenced code blocks.
- HTML: the main content (trafilatura, boilerplate such as navigation removed) with its ``h1``
  … ``h6`` headings; for a short page (under 200 words), or when trafilatura finds no main
  content or keeps less than a quarter of the visible words, every visible text (script, style
  and the like skipped), headings kept.
- Plain text: paragraphs separated by blank lines.

Extraction reads only a document the scan passed (`services.document_scan`); a document it cannot
read raises `DocumentUnreadable`, whatever the library raised (issue 15: "a failed extraction is
a failed document with a problem, not a 500").
"""

from __future__ import annotations

import codecs
import logging
import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any, BinaryIO

from services.document_types import DocumentKind
from services.errors import DomainError, ProblemType

log = logging.getLogger(__name__)

_HEADING_STYLE = re.compile(r"(?:heading|überschrift|titre)\s*(\d)", re.IGNORECASE)
_ATX = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)[ \t#]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(```+|~~~+)")
_BLANK_LINES = re.compile(r"\n[ \t]*\n+")
_SPACES = re.compile(r"[ \t\f\v\u00a0]+")


MAIN_CONTENT_MIN_WORDS = 200
MAIN_CONTENT_MIN_SHARE = 0.25
"""HTML: trafilatura's main content is used for pages of at least `MAIN_CONTENT_MIN_WORDS` visible
words when it keeps at least `MAIN_CONTENT_MIN_SHARE` of them; otherwise (a short page, whose
headings trafilatura may take for its title, or one it misjudged) every visible text is."""


class DocumentUnreadable(DomainError):
    """A document whose text cannot be extracted (malformed, truncated, encrypted, or without any
    text, such as a scanned PDF of images). Never an answer to a request: the processing job marks
    the document ``failed`` with this problem."""

    problem = ProblemType("/problems/document-unreadable", "Document unreadable", 422)


@dataclass(frozen=True)
class TextBlock:
    """A paragraph (or heading, table row, list item, code block) of a document.

    Attributes:
        text: the block's text, whitespace within lines collapsed.
        page: the 1-based page it is on (PDF only), else None.
        heading: the innermost heading it falls under (its own text for a heading), or None.
        is_heading: whether the block is a heading itself.
    """

    text: str
    page: int | None = None
    heading: str | None = None
    is_heading: bool = False


@dataclass(frozen=True)
class ExtractedText:
    """A document's text.

    Attributes:
        blocks: the blocks in reading order.
        pages: the number of pages (PDF), else None.
        words: the number of words (whitespace-separated) in all blocks.
        title: the document's own title (PDF metadata, DOCX core properties, HTML title, the first
            Markdown heading), or None.
    """

    blocks: list[TextBlock]
    pages: int | None = None
    words: int = 0
    title: str | None = None


@dataclass
class _Builder:
    """Accumulates blocks, tracking the heading in force (by level)."""

    blocks: list[TextBlock] = field(default_factory=list)
    headings: dict[int, str] = field(default_factory=dict)

    @property
    def heading(self) -> str | None:
        return self.headings[max(self.headings)] if self.headings else None

    def add_heading(self, text: str, level: int, *, page: int | None = None) -> None:
        text = _clean(text)
        if not text:
            return
        self.headings = {lvl: title for lvl, title in self.headings.items() if lvl < level}
        self.headings[level] = text
        self.blocks.append(TextBlock(text=text, page=page, heading=text, is_heading=True))

    def add_text(self, text: str, *, page: int | None = None, heading: str | None = None) -> None:
        for paragraph in _paragraphs(text):
            self.blocks.append(TextBlock(text=paragraph, page=page, heading=heading or self.heading))


def _clean(text: str) -> str:
    return "\n".join(line for line in (_SPACES.sub(" ", line).strip() for line in text.splitlines()) if line)


def _paragraphs(text: str) -> Iterator[str]:
    for part in _BLANK_LINES.split(text.replace("\r\n", "\n").replace("\r", "\n")):
        cleaned = _clean(part)
        if cleaned:
            yield cleaned


def _result(builder: _Builder, *, pages: int | None = None, title: str | None = None) -> ExtractedText:
    words = sum(len(block.text.split()) for block in builder.blocks)
    if words == 0:
        raise DocumentUnreadable("No text could be extracted from the document (a scanned document needs OCR).")
    return ExtractedText(blocks=builder.blocks, pages=pages, words=words, title=(title or "").strip() or None)


# --- decoding text ------------------------------------------------------------------------------


def decode_text(data: bytes, encoding: str | None = None) -> str:
    """Bytes of a text document as text: a byte-order mark decides, then `encoding` (libmagic's),
    then UTF-8, then Windows-1252 (which decodes any byte; ISO-8859-1 as libmagic reports it is
    read as its superset Windows-1252). Never raises for the bytes."""
    for bom, codec in (
        (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if data.startswith(bom):
            return data.decode(codec, "replace")
    candidates = [encoding] if encoding and encoding not in ("ascii", "latin-1", "iso8859-1") else []
    for codec in [*candidates, "utf-8"]:
        try:
            return data.decode(codec)
        except (UnicodeDecodeError, LookupError):
            continue
    return data.decode("cp1252", "replace")


# --- per kind -----------------------------------------------------------------------------------


def _pdf(stream: BinaryIO, *, max_pages: int) -> ExtractedText:
    from pypdf import PdfReader
    from pypdf.errors import FileNotDecryptedError

    reader = PdfReader(stream, strict=False)
    if reader.is_encrypted and not reader.decrypt(""):
        raise DocumentUnreadable("The PDF is encrypted with a password.")
    count = len(reader.pages)
    if count > max_pages:
        raise DocumentUnreadable(f"The PDF has {count} pages, more than {max_pages}.")
    outline_by_page = _pdf_outline(reader)
    builder = _Builder()
    heading: str | None = None
    for number, page in enumerate(reader.pages, start=1):
        heading = outline_by_page.get(number, heading)
        try:
            text = page.extract_text() or ""
        except FileNotDecryptedError as error:
            raise DocumentUnreadable("The PDF is encrypted with a password.") from error
        builder.add_text(text, page=number, heading=heading)
    title = None
    try:
        title = reader.metadata.title if reader.metadata else None
    except Exception:  # a malformed info dictionary is not worth failing the document for
        title = None
    return _result(builder, pages=count, title=title)


def _pdf_outline(reader: Any) -> dict[int, str]:
    """First-level and deeper outline entries by the 1-based page they point at (the last entry
    pointing at a page wins); empty when the PDF has none or it cannot be read."""
    found: dict[int, str] = {}

    def walk(entries: Iterable[Any]) -> None:
        for entry in entries:
            if isinstance(entry, list):
                walk(entry)
                continue
            page = reader.get_destination_page_number(entry)
            if page is not None and page >= 0 and entry.title:
                found[page + 1] = _clean(str(entry.title))

    try:
        walk(reader.outline)
    except Exception:  # an outline is a nicety: a broken one leaves blocks without headings
        return {}
    return found


def _docx(stream: BinaryIO) -> ExtractedText:
    import docx
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    document = docx.Document(stream)
    builder = _Builder()
    for item in document.iter_inner_content():
        if isinstance(item, Paragraph):
            style = (item.style.name if item.style is not None else "") or ""
            level = 0 if style == "Title" else None
            if match := _HEADING_STYLE.match(style):
                level = int(match.group(1))
            if level is not None:
                builder.add_heading(item.text, level)
            else:
                builder.add_text(item.text)
        elif isinstance(item, Table):
            for row in item.rows:
                cells = list(dict.fromkeys(_clean(cell.text) for cell in row.cells))  # merged cells repeat
                builder.add_text(" | ".join(cell for cell in cells if cell))
    return _result(builder, title=document.core_properties.title)


def _markdown(text: str) -> ExtractedText:
    builder = _Builder()
    paragraph: list[str] = []
    fence: str | None = None
    code: list[str] = []

    def flush() -> None:
        if paragraph:
            builder.add_text("\n".join(paragraph))
            paragraph.clear()

    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if fence is not None:
            if line.strip().startswith(fence):
                builder.add_text("\n".join(code).replace("\n\n", "\n"))
                code.clear()
                fence = None
            else:
                code.append(line)
            continue
        if match := _FENCE.match(line):
            flush()
            fence = match.group(1)[:3]
            continue
        if match := _ATX.match(line):
            flush()
            builder.add_heading(match.group(2), len(match.group(1)))
            continue
        if paragraph and len(paragraph) == 1 and (match := _SETEXT.match(line)):
            heading = paragraph.pop()
            builder.add_heading(heading, 1 if match.group(1).startswith("=") else 2)
            continue
        if not line.strip():
            flush()
            continue
        paragraph.append(line)
    flush()
    if code:
        builder.add_text("\n".join(code))
    title = next((block.text for block in builder.blocks if block.is_heading), None)
    return _result(builder, title=title)


def _text(text: str) -> ExtractedText:
    builder = _Builder()
    builder.add_text(text)
    return _result(builder)


class _VisibleText(HTMLParser):
    """Every visible text of an HTML page, by block, headings marked (the fallback)."""

    SKIP = frozenset({"script", "style", "noscript", "template", "head", "svg", "iframe", "object"})
    BLOCKS = frozenset(
        {"p", "div", "li", "tr", "td", "th", "pre", "blockquote", "section", "article", "br", "dd", "dt", "table"}
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.builder = _Builder()
        self.title: str | None = None
        self._skip = 0
        self._in_title = False
        self._heading: int | None = None
        self._buffer: list[str] = []

    def _flush(self) -> None:
        text = "".join(self._buffer)
        self._buffer.clear()
        if self._heading is not None:
            self.builder.add_heading(text, self._heading)
        else:
            self.builder.add_text(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIP:
            self._skip += 1
        elif tag == "title":
            self._in_title = True
        elif re.fullmatch(r"h[1-6]", tag):
            self._flush()
            self._heading = int(tag[1])
        elif tag in self.BLOCKS:
            self._flush()

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP:
            self._skip = max(0, self._skip - 1)
        elif tag == "title":
            self._in_title = False
        elif re.fullmatch(r"h[1-6]", tag):
            self._flush()
            self._heading = None
        elif tag in self.BLOCKS:
            self._flush()

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title = (self.title or "") + data
        elif not self._skip:
            self._buffer.append(data)


def _html(data: bytes, encoding: str | None) -> ExtractedText:
    import trafilatura

    fallback = _VisibleText()
    fallback.feed(decode_text(data, encoding))
    fallback.close()
    fallback._flush()
    visible_words = sum(len(block.text.split()) for block in fallback.builder.blocks)
    if visible_words < MAIN_CONTENT_MIN_WORDS:
        return _result(fallback.builder, title=fallback.title)
    xml = trafilatura.extract(data, output_format="xml", include_tables=True, favor_recall=True, with_metadata=True)
    if not xml:
        return _result(fallback.builder, title=fallback.title)
    root = ElementTree.fromstring(xml)  # noqa: S314 - trafilatura's own output: no DTD, no entities
    builder = _Builder()

    def walk(parent: ElementTree.Element) -> None:
        for element in parent:
            if element.tag == "head":
                level = re.fullmatch(r"h([1-6])", element.get("rend") or "")
                builder.add_heading("".join(element.itertext()), int(level.group(1)) if level else 2)
            elif element.tag == "row":
                builder.add_text(" | ".join(_clean("".join(cell.itertext())) for cell in element))
            elif element.tag in ("p", "item", "quote", "code", "lb"):
                builder.add_text("".join(element.itertext()))
            elif element.tag not in ("comments", "graphic"):
                walk(element)

    main = root.find("main")
    walk(main if main is not None else root)
    main_words = sum(len(block.text.split()) for block in builder.blocks)
    if main_words < visible_words * MAIN_CONTENT_MIN_SHARE:
        return _result(fallback.builder, title=fallback.title)
    return _result(builder, title=fallback.title or root.get("title"))


def extract_text(
    stream: BinaryIO, *, kind: DocumentKind, encoding: str | None = None, max_pages: int = 2000
) -> ExtractedText:
    """Extract a document's text in blocks that keep their page and heading.

    Args:
        stream: the document, seekable, from its start (read whole; uploads are bounded by
            DOCUMENT_MAX_BYTES), of a kind sniffed by `services.document_types` and passed by the
            scan (zip sizes were checked there).
        kind: the sniffed kind.
        encoding: the text encoding sniffed for text kinds (a hint; a byte-order mark wins).
        max_pages: the most PDF pages read; a longer PDF is unreadable.

    Returns:
        The blocks, the page count (PDF), the word count and the document's own title.

    Raises:
        DocumentUnreadable: the file cannot be read as its kind (malformed, truncated, encrypted,
            too many pages) or holds no text. Any error of the parsing libraries becomes this one.
    """
    try:
        if kind is DocumentKind.PDF:
            return _pdf(stream, max_pages=max_pages)
        if kind is DocumentKind.DOCX:
            return _docx(stream)
        data = stream.read()
        if kind is DocumentKind.HTML:
            return _html(data, encoding)
        text = decode_text(data, encoding)
        return _markdown(text) if kind is DocumentKind.MARKDOWN else _text(text)
    except DocumentUnreadable:
        raise
    except RecursionError as error:
        raise DocumentUnreadable("The document is nested too deeply to be read.") from error
    except Exception as error:  # pypdf, python-docx (zipfile, lxml), trafilatura: any failure is the file's
        log.info("document extraction failed: %s: %s", type(error).__name__, str(error)[:200])
        raise DocumentUnreadable(f"The {kind.value.upper()} file cannot be read ({type(error).__name__}).") from error
