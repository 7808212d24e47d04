"""Type sniffing (issue 15): the kind comes from the bytes (libmagic); the name and the declared
type must agree with them (415 naming both); Markdown is told from plain text by its name."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import magic
import pytest

from services.document_types import (
    DocumentKind,
    DocumentTypeMismatch,
    EmptyDocument,
    UnsupportedDocumentType,
    sniff_document_type,
)
from tests.documents.samples import build_docx, build_pdf, vba_project, with_member

PDF = build_pdf([["Hello"]])
DOCX = build_docx([("Heading", ["Paragraph."])])
ELF = Path("/bin/true").read_bytes()


@pytest.mark.parametrize(
    ("data", "filename", "declared", "kind"),
    [
        (PDF, "report.pdf", "application/pdf", DocumentKind.PDF),
        (PDF, None, None, DocumentKind.PDF),
        (PDF, "report.pdf", "application/octet-stream", DocumentKind.PDF),
        (DOCX, "report.docx", None, DocumentKind.DOCX),
        (b"Plain words.\n", "notes.txt", "text/plain; charset=utf-8", DocumentKind.TEXT),
        (b"# Title\n\nSome *Markdown*.\n", "readme.md", "text/plain", DocumentKind.MARKDOWN),
        (b"# Title\n\nSome *Markdown*.\n", None, "text/markdown", DocumentKind.MARKDOWN),
        (b"# Title\n\nSome *Markdown*.\n", None, None, DocumentKind.TEXT),
        (b"<!DOCTYPE html><html><body><p>Hi</p></body></html>", "page.html", None, DocumentKind.HTML),
        (b"<!DOCTYPE html><html><body><p>Hi</p></body></html>", None, None, DocumentKind.HTML),
        (b"<p>a fragment libmagic calls text</p>", "fragment.htm", None, DocumentKind.HTML),
        (b"int main() { return 0; }\n", "code.md", None, DocumentKind.MARKDOWN),  # libmagic: text/x-c
    ],
)
def test_the_kind_comes_from_the_bytes_and_the_name_picks_among_text_kinds(data, filename, declared, kind):
    sniffed = sniff_document_type(data, filename=filename, declared_type=declared)
    assert sniffed.kind is kind
    assert sniffed.media_type.startswith(("application/", "text/"))


def test_text_keeps_the_encoding_libmagic_read():
    assert sniff_document_type("café\n".encode(), filename="a.txt").encoding == "utf-8"
    assert sniff_document_type("café\n".encode("latin-1"), filename="a.txt").encoding == "iso8859-1"
    assert sniff_document_type(PDF).encoding is None


@pytest.mark.parametrize(
    ("data", "filename", "declared", "claimed"),
    [
        (ELF, "invoice.pdf", None, "extension .pdf"),  # a renamed executable
        (ELF, "invoice", "application/pdf", "declared type application/pdf"),
        (PDF, "report.docx", None, "extension .docx"),
        (PDF, "report.pdf", "text/plain", "declared type text/plain"),
        (DOCX, "report.txt", None, "extension .txt"),
        (b"just text\n", "report.pdf", None, "extension .pdf"),
        (PDF, "report.pdf", "image/png", "declared type image/png"),
    ],
)
def test_a_claim_the_bytes_contradict_is_refused_naming_both(data, filename, declared, claimed):
    with pytest.raises(DocumentTypeMismatch) as refused:
        sniff_document_type(data, filename=filename, declared_type=declared)
    assert refused.value.claimed == claimed
    assert refused.value.problem.status == 415
    assert claimed in refused.value.detail
    assert refused.value.detected in refused.value.detail


@pytest.mark.parametrize(
    ("data", "detected"),
    [(ELF, "application/x-"), (vba_project(), "application/x-ole-storage"), (b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "")],
)
def test_bytes_of_another_type_are_unsupported(data, detected):
    with pytest.raises(UnsupportedDocumentType) as refused:
        sniff_document_type(data, filename="upload.bin")
    assert type(refused.value) is UnsupportedDocumentType
    assert refused.value.detected.startswith(detected)
    assert refused.value.problem.status == 415


def test_an_empty_file_is_refused():
    with pytest.raises(EmptyDocument) as refused:
        sniff_document_type(b"", filename="empty.pdf", declared_type="application/pdf")
    assert refused.value.problem.status == 422


def reordered(archive: bytes, order) -> bytes:
    source = zipfile.ZipFile(io.BytesIO(archive))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for name in order(source.namelist()):
            target.writestr(name, source.read(name))
    return out.getvalue()


@pytest.mark.parametrize("order", [sorted, lambda names: list(reversed(names))], ids=["sorted", "reversed"])
def test_a_docx_whose_entries_libmagic_does_not_expect_is_read_from_its_content_types(order):
    data = reordered(DOCX, order)
    assert (
        magic.from_buffer(data[:65536], mime=True)
        != "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    )
    assert sniff_document_type(data, filename="a.docx", stream=io.BytesIO(data)).kind is DocumentKind.DOCX
    if order is sorted:  # [Content_Types].xml comes first: the head is enough
        assert sniff_document_type(data[:4096], filename="a.docx").kind is DocumentKind.DOCX


def test_a_macro_enabled_word_document_is_not_a_docx():
    docm = with_member(DOCX, "word/vbaProject.bin", vba_project())
    source = zipfile.ZipFile(io.BytesIO(docm))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for name in sorted(source.namelist()):
            content = source.read(name)
            if name == "[Content_Types].xml":
                content = content.replace(
                    b"application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml",
                    b"application/vnd.ms-word.document.macroEnabled.main+xml",
                )
            target.writestr(name, content)
    with pytest.raises(DocumentTypeMismatch) as refused:
        sniff_document_type(out.getvalue(), filename="a.docx", stream=io.BytesIO(out.getvalue()))
    assert refused.value.detected == "application/vnd.ms-word.document.macroEnabled.12"
