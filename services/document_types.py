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
import struct
import zipfile
import zlib
from dataclasses import dataclass
from enum import StrEnum
from typing import BinaryIO

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


_WORD_MAIN = b"application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"
_WORD_MACRO_MAIN = b"application/vnd.ms-word.document.macroEnabled.main+xml"
_DOCM = "application/vnd.ms-word.document.macroEnabled.12"
_CONTENT_TYPES = "[Content_Types].xml"
_CONTENT_TYPES_MAX_BYTES = 1024 * 1024
_ZIP_DETECTIONS = frozenset({"application/zip", "application/octet-stream", MEDIA_TYPES[DocumentKind.DOCX]})
"""What libmagic says of an OOXML file whose entries are not in the order it expects."""


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


def _content_types_from_head(sample: bytes) -> bytes | None:
    """`[Content_Types].xml` read from its local file header in the first bytes of a zip, when
    it is there (stored or deflated)."""
    marker = b"PK\x03\x04"
    position = sample.find(marker)
    while position >= 0 and position + 30 <= len(sample):
        method, _, _, _, compressed, _, name_length, extra_length = struct.unpack_from(
            "<HHHIIIHH", sample, position + 8
        )
        name = sample[position + 30 : position + 30 + name_length]
        start = position + 30 + name_length + extra_length
        if name == _CONTENT_TYPES.encode():
            body = sample[start : start + compressed] if compressed else sample[start:]
            if method == 0:
                return body
            if method == 8:
                try:
                    return zlib.decompressobj(-15).decompress(body, _CONTENT_TYPES_MAX_BYTES)
                except zlib.error:
                    return None
            return None
        position = sample.find(marker, position + 4)
    return None


def _content_types_from_stream(stream: BinaryIO) -> bytes | None:
    """`[Content_Types].xml` read through the zip's central directory (the stream is left where
    it was)."""
    position = stream.tell()
    try:
        with zipfile.ZipFile(stream) as archive:
            entry = archive.getinfo(_CONTENT_TYPES)
            if entry.file_size > _CONTENT_TYPES_MAX_BYTES:
                return None
            return archive.read(entry)
    except (zipfile.BadZipFile, KeyError, OSError, EOFError, ValueError, NotImplementedError, zlib.error):
        return None
    finally:
        stream.seek(position)


def _ooxml_type(sample: bytes, stream: BinaryIO | None) -> str | None:
    """A Word document's media type from its `[Content_Types].xml` (the OOXML package's own
    statement of its main part, ECMA-376 Part 2), or None."""
    content_types = _content_types_from_stream(stream) if stream is not None else None
    if content_types is None:
        content_types = _content_types_from_head(sample)
    if content_types is None:
        return None
    if _WORD_MACRO_MAIN in content_types:
        return _DOCM
    if _WORD_MAIN in content_types:
        return MEDIA_TYPES[DocumentKind.DOCX]
    return None


def _python_encoding(name: str) -> str | None:
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None


def sniff_document_type(
    head: bytes, *, filename: str | None = None, declared_type: str | None = None, stream: BinaryIO | None = None
) -> SniffedType:
    """The kind of a document from its first bytes, checked against its name and declared type.

    Args:
        head: the document's first bytes (at least `SNIFF_BYTES` of it when it is longer; more is
            not read), or the whole document.
        filename: the name the client gave (only its extension is read), or None.
        declared_type: the `Content-Type` the client declared for the file (parameters such as
            ``charset`` are ignored), or None; ``application/octet-stream`` claims nothing.
        stream: the whole file, seekable (e.g. the stored upload), or None. libmagic recognises
            a DOCX only when its zip entries come in the order Word writes them; for a zip whose
            type it does not name, the package's ``[Content_Types].xml`` decides, read through
            the zip's central directory from `stream`, else from `head` when it is there.

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
    if detected in _ZIP_DETECTIONS and sample.startswith(b"PK\x03\x04"):
        detected = _ooxml_type(sample, stream) or detected
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
