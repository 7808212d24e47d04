"""The whole documents foundation on the uploads issue 15 names, in the order the processing job
will run it: sniff the type, store (capped), scan, then extract and chunk only what the scan
passed. Each upload gets its documented outcome; none raises anything else."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.clamd import ClamdScanner
from adapters.file_storage import LocalFileStore
from services.document_files import store_upload
from services.document_passages import chunk_passages
from services.document_scan import is_blocked, scan_document
from services.document_text import extract_text
from services.document_types import sniff_document_type
from services.errors import DomainError
from tests.documents.conftest import CLAMD_MARKER, CLAMD_MARKER_SIGNATURE
from tests.documents.samples import EICAR, build_docx, build_pdf, vba_project, with_member, zip_bomb

MAX_BYTES = 2 * 1024 * 1024


def process(store: LocalFileStore, data: bytes, filename: str, declared: str | None = None, scanner=None) -> str:
    """The outcome of one upload, in words: rejected (the API's 4xx), quarantined (scan), failed
    (extraction) or ready."""
    try:
        sniffed = sniff_document_type(data[:65536], filename=filename, declared_type=declared)
        stored = store_upload(
            store=store, chunks=[data[i : i + 65536] for i in range(0, len(data), 65536)], max_bytes=MAX_BYTES
        )
    except DomainError as error:
        return f"rejected {error.problem.status} {error.problem.type}"
    with store.open(stored.key) as stream:
        verdict = scan_document(stream=stream, scanner=scanner)
    if is_blocked(verdict):
        return f"quarantined {verdict.verdict} {verdict.engine} {verdict.signature}"
    try:
        with store.open(stored.key) as stream:
            extracted = extract_text(stream, kind=sniffed.kind, encoding=sniffed.encoding)
    except DomainError as error:
        return f"failed {error.problem.type}"
    passages = chunk_passages(extracted.blocks, target_words=50, overlap_words=10)
    return f"ready {sniffed.kind} {len(passages)} passages"


PDF = build_pdf([["Refunds are paid within 14 days."], ["Contact support by mail."]], outline=[("Refunds", 0)])
DOCX = build_docx([("Refunds", ["Refunds are paid within 14 days."])])
UPLOADS = {
    "a PDF": (PDF, "policy.pdf", "application/pdf", "ready pdf 1 passages"),
    "a DOCX": (DOCX, "policy.docx", None, "ready docx 1 passages"),
    "Markdown": (b"# Refunds\n\nWithin 14 days.\n", "policy.md", "text/markdown", "ready markdown 1 passages"),
    "the EICAR file": (EICAR, "eicar.txt", "text/plain", "quarantined infected charter Eicar-Test-Signature"),
    "a zip bomb named .docx": (zip_bomb(), "bomb.docx", None, "rejected 415 /problems/document-type-mismatch"),
    "a zip bomb inside a DOCX": (
        with_member(DOCX, "word/media/zeros.bin", b"\0" * (64 * 1024 * 1024)),
        "bomb.docx",
        None,
        "quarantined infected charter Charter.Zip.Bomb",
    ),
    "a PDF with JavaScript": (
        build_pdf([["Hi"]], catalog_extra=b"/OpenAction << /S /JavaScript /JS (app.alert\\(1\\)) >>"),
        "invoice.pdf",
        None,
        "quarantined infected charter Charter.PDF.JavaScript",
    ),
    "a macro document named .docx": (
        with_member(DOCX, "word/vbaProject.bin", vba_project()),
        "macro.docx",
        None,
        "quarantined infected charter Charter.Office.Macro",
    ),
    "an OLE macro document": (vba_project(), "macro.doc", None, "rejected 415 /problems/unsupported-document-type"),
    "a renamed executable": (
        Path("/bin/true").read_bytes(),
        "invoice.pdf",
        "application/pdf",
        "rejected 415 /problems/document-type-mismatch",
    ),
    "an empty file": (b"", "empty.txt", None, "rejected 422 /problems/empty-document"),
    "a truncated PDF": (PDF[: len(PDF) // 2], "cut.pdf", None, "failed /problems/document-unreadable"),
    "a truncated DOCX": (DOCX[: len(DOCX) // 2], "cut.docx", None, "quarantined unscannable charter None"),
    "a PDF without text": (build_pdf([[]]), "scan.pdf", None, "failed /problems/document-unreadable"),
    "a file too large": (b"words " * (MAX_BYTES // 6 + 1), "big.txt", None, "rejected 413 /problems/payload-too-large"),
}


@pytest.mark.parametrize("name", UPLOADS)
def test_each_upload_gets_its_documented_outcome(name, tmp_path):
    data, filename, declared, outcome = UPLOADS[name]
    assert process(LocalFileStore(tmp_path), data, filename, declared) == outcome


@pytest.mark.parametrize("name", ["a PDF", "the EICAR file", "a PDF with JavaScript"])
def test_with_clamd_for_real(name, tmp_path, clamd):
    data, filename, declared, outcome = UPLOADS[name]
    scanner = ClamdScanner(clamd.tcp_url, timeout_seconds=10)
    assert process(LocalFileStore(tmp_path), data, filename, declared, scanner=scanner) == outcome


@pytest.mark.parametrize("url", ["tcp_url", "unix_url"])
def test_what_only_clamd_knows_is_quarantined_by_clamd(url, tmp_path, clamd):
    scanner = ClamdScanner(getattr(clamd, url), timeout_seconds=10)
    text = b"An ordinary note with " + CLAMD_MARKER + b" inside.\n"
    inside_a_docx = with_member(DOCX, "word/media/note.txt", text)
    expected = f"quarantined infected clamav {CLAMD_MARKER_SIGNATURE}.UNOFFICIAL"
    for data, filename in ((text, "note.txt"), (inside_a_docx, "note.docx")):
        assert process(LocalFileStore(tmp_path), data, filename, scanner=scanner) == expected
        assert process(LocalFileStore(tmp_path), data, filename).startswith("ready ")  # built-in alone: clean
