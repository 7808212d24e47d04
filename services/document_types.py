"""Documents (issue 15): what kind of document an upload is, sniffed from its bytes.

The type is read from the bytes with libmagic (python-magic), never trusted from the file name or
the declared `Content-Type` (OWASP File Upload Cheat Sheet: "don't trust the Content-Type header";
validate the file type by its content). The name and the declared type are claims that must agree
with the bytes: a claim of another kind is refused naming both (415).

Accepted kinds: PDF, DOCX, plain text, Markdown and HTML. Binary kinds (PDF, DOCX) must agree
exactly. Text is one family: libmagic tells text from binary and recognises most HTML, but it
cannot tell Markdown from plain text (both are `text/plain`) nor a bare HTML fragment from text,
so for bytes that are text the claim decides between text, Markdown and HTML (extension first,
then the declared type), and libmagic's answer decides when nothing is claimed.
"""

from __future__ import annotations

import codecs
import functools
import posixpath
from dataclasses import dataclass
from enum import StrEnum

import magic

from services.errors import DomainError, ProblemType

SNIFF_BYTES = 64 * 1024
"""How many leading bytes libmagic reads (enough for the OOXML entries it looks for)."""


class DocumentKind(StrEnum):
    """An accepted kind of document."""

    PDF = "pdf"
    DOCX = "docx"
    TEXT = "text"
    MARKDOWN = "markdown"
    HTML = "html"


MEDIA_TYPES: dict[DocumentKind, str] = {
    DocumentKind.PDF: "application/pdf",
    DocumentKind.DOCX: "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    DocumentKind.TEXT: "text/plain",
    DocumentKind.MARKDOWN: "text/markdown",
    DocumentKind.HTML: "text/html",
}
"""The media type each kind is stored and served with."""

TEXT_KINDS = frozenset({DocumentKind.TEXT, DocumentKind.MARKDOWN, DocumentKind.HTML})

_EXTENSIONS: dict[str, DocumentKind] = {
    ".pdf": DocumentKind.PDF,
    ".docx": DocumentKind.DOCX,
    ".txt": DocumentKind.TEXT,
    ".text": DocumentKind.TEXT,
    ".md": DocumentKind.MARKDOWN,
    ".markdown": DocumentKind.MARKDOWN,
    ".html": DocumentKind.HTML,
    ".htm": DocumentKind.HTML,
    ".xhtml": DocumentKind.HTML,
}

_DECLARED: dict[str, DocumentKind] = {
    "application/pdf": DocumentKind.PDF,
    MEDIA_TYPES[DocumentKind.DOCX]: DocumentKind.DOCX,
    "text/plain": DocumentKind.TEXT,
    "text/markdown": DocumentKind.MARKDOWN,
    "text/x-markdown": DocumentKind.MARKDOWN,
    "text/html": DocumentKind.HTML,
    "application/xhtml+xml": DocumentKind.HTML,
}

_SAYS_NOTHING = frozenset({"", "application/octet-stream", "binary/octet-stream", "application/x-unknown"})
"""Declared types that claim nothing (what clients send when they do not know)."""

_TEXT_LIKE = frozenset({"application/json", "application/xml", "application/x-empty"})
"""libmagic answers for bytes that are text although not `text/*`."""


class EmptyDocument(DomainError):
    """An upload of zero bytes."""

    problem = ProblemType("/problems/empty-document", "Empty document", 422)


class UnsupportedDocumentType(DomainError):
    """Bytes of a type that is not accepted (PDF, DOCX, plain text, Markdown, HTML).

    Attributes:
        detected: libmagic's media type for the bytes.
    """

    problem = ProblemType("/problems/unsupported-document-type", "Unsupported document type", 415)

    def __init__(self, detail: str, *, detected: str) -> None:
        super().__init__(detail)
        self.detected = detected


class DocumentTypeMismatch(UnsupportedDocumentType):
    """The file name or the declared type claims another kind than the bytes are.

    Attributes:
        detected: libmagic's media type for the bytes.
        claimed: the claim that disagrees (the declared media type or the file's extension).
    """

    problem = ProblemType("/problems/document-type-mismatch", "Document type mismatch", 415)

    def __init__(self, detail: str, *, detected: str, claimed: str) -> None:
        super().__init__(detail, detected=detected)
        self.claimed = claimed


@dataclass(frozen=True)
class SniffedType:
    """What an upload is.

    Attributes:
        kind: the accepted kind.
        media_type: the media type it is stored and served with (`MEDIA_TYPES[kind]`).
        detected: libmagic's media type for the bytes (e.g. ``text/x-c`` for a Markdown file full
            of code), kept for the record.
        encoding: the text encoding libmagic read (``utf-8``, ``us-ascii``, ``iso-8859-1``,
            ``utf-16le``, …), a name Python's codecs know, or None for binary kinds or one it
            does not know.
    """

    kind: DocumentKind
    media_type: str
    detected: str
    encoding: str | None


@functools.cache
def _encoding_magic() -> magic.Magic:
    return magic.Magic(mime_encoding=True)  # python-magic serialises calls with its own lock


def _detected_kind(detected: str) -> DocumentKind | None:
    if detected == "application/pdf":
        return DocumentKind.PDF
    if detected == MEDIA_TYPES[DocumentKind.DOCX]:
        return DocumentKind.DOCX
    if detected in ("text/html", "application/xhtml+xml"):
        return DocumentKind.HTML
    if detected.startswith("text/") or detected in _TEXT_LIKE:
        return DocumentKind.TEXT
    return None


def _compatible(detected: DocumentKind, claimed: DocumentKind) -> bool:
    return detected == claimed or (detected in TEXT_KINDS and claimed in TEXT_KINDS)


def _python_encoding(name: str) -> str | None:
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None


def sniff_document_type(head: bytes, *, filename: str | None = None, declared_type: str | None = None) -> SniffedType:
    """The kind of a document from its first bytes, checked against its name and declared type.

    Args:
        head: the document's first bytes (at least `SNIFF_BYTES` of it when it is longer; more is
            not read), or the whole document.
        filename: the name the client gave (only its extension is read), or None.
        declared_type: the `Content-Type` the client declared for the file (parameters such as
            ``charset`` are ignored), or None; ``application/octet-stream`` claims nothing.

    Returns:
        The kind; for text, the claim picks text, Markdown or HTML (extension, then declared
        type), else libmagic's answer.

    Raises:
        EmptyDocument: `head` is empty.
        DocumentTypeMismatch: the extension or the declared type names an accepted kind the
            bytes are not, or the declared type is another type (the detail names both).
        UnsupportedDocumentType: the bytes are not of an accepted kind.
    """
    if not head:
        raise EmptyDocument("The file is empty.")
    sample = head[:SNIFF_BYTES]
    detected = str(magic.from_buffer(sample, mime=True))
    kind = _detected_kind(detected)

    claims: list[tuple[str, DocumentKind | None]] = []
    extension = posixpath.splitext((filename or "").replace("\\", "/"))[1].lower()
    if extension in _EXTENSIONS:
        claims.append((f"extension {extension}", _EXTENSIONS[extension]))
    declared = (declared_type or "").split(";", 1)[0].strip().lower()
    if declared not in _SAYS_NOTHING:
        claims.append((f"declared type {declared}", _DECLARED.get(declared)))

    for claim, claimed_kind in claims:
        if kind is None and claimed_kind is None:
            continue  # neither is accepted: the bytes' type is what the answer names
        if claimed_kind is None or kind is None or not _compatible(kind, claimed_kind):
            raise DocumentTypeMismatch(
                f"The file's bytes are {detected} but its {claim} says otherwise.",
                detected=detected,
                claimed=claim,
            )
    if kind is None:
        raise UnsupportedDocumentType(
            f"The file's bytes are {detected}; accepted are PDF, DOCX, plain text, Markdown and HTML.",
            detected=detected,
        )
    if kind in TEXT_KINDS and claims:
        kind = next(claimed for _, claimed in claims if claimed is not None)
    encoding = None
    if kind in TEXT_KINDS:
        encoding = _python_encoding(str(_encoding_magic().from_buffer(sample)))
    return SniffedType(kind=kind, media_type=MEDIA_TYPES[kind], detected=detected, encoding=encoding)
