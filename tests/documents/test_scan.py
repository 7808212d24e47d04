"""The security scan (issue 15): the built-in structural checks, the verdicts they give, the
clamd port's outcomes through a fake, and the unscannable policy."""

from __future__ import annotations

import io
import zipfile

import pytest

from adapters.clamd import ClamdOutcome, FakeVirusScanner
from services.document_scan import (
    ScanLimits,
    ScannerUnavailable,
    ScanResult,
    Verdict,
    is_blocked,
    scan_document,
    structural_scan,
)
from tests.documents.samples import (
    EICAR,
    build_docx,
    build_ole,
    build_pdf,
    object_stream,
    vba_project,
    with_member,
    zip_bomb,
)

CLEAN_PDF = build_pdf([["Quarterly report"], ["Second page"]], outline=[("Summary", 0)])
DOCX = build_docx([("Heading", ["Paragraph."])])


def scan(data: bytes, **limits) -> ScanResult:
    return structural_scan(io.BytesIO(data), limits=ScanLimits(**limits))


def pdf_with_action(action: bytes) -> bytes:
    return build_pdf([["Open me"]], catalog_extra=b"/OpenAction 30 0 R", extra_objects={30: action})


@pytest.mark.parametrize(
    "data",
    [CLEAN_PDF, DOCX, b"plain text", b"# Markdown\n", b"<html><body>hi</body></html>", EICAR[:-1], b"x" + EICAR],
)
def test_ordinary_documents_are_clean(data):
    assert scan(data) == ScanResult(Verdict.CLEAN, "charter")


@pytest.mark.parametrize("data", [EICAR, EICAR + b"\r\n  ", EICAR + b"\x1a"])
def test_the_eicar_test_file_is_infected(data):
    found = scan(data)
    assert (found.verdict, found.engine, found.signature) == (Verdict.INFECTED, "charter", "Eicar-Test-Signature")


def test_the_eicar_test_file_inside_a_zip_is_infected():
    found = scan(with_member(DOCX, "word/media/eicar.com", EICAR))
    assert (found.verdict, found.signature) == (Verdict.INFECTED, "Eicar-Test-Signature")
    assert "word/media/eicar.com" in found.detail


@pytest.mark.parametrize(
    ("action", "signature"),
    [
        (b"<< /S /JavaScript /JS (app.alert\\(1\\)) >>", "Charter.PDF.JavaScript"),
        (b"<< /S /J#61vaScript /J#53 (app.alert\\(1\\)) >>", "Charter.PDF.JavaScript"),  # hex escapes
        (b"<< /S /Launch /F (cmd.exe) >>", "Charter.PDF.Launch"),
        (
            b"<< /Type /Filespec /F (a.exe) /EF << /F 31 0 R >> >>\n31 0 obj << /Type /EmbeddedFile >>",
            "Charter.PDF.EmbeddedFile",
        ),
    ],
)
def test_pdf_actions_and_attachments_are_infected(action, signature):
    found = scan(pdf_with_action(action))
    assert (found.verdict, found.engine, found.signature) == (Verdict.INFECTED, "charter", signature)


def test_a_javascript_action_hidden_in_a_compressed_object_stream_is_found():
    hidden = object_stream({30: b"<< /S /JavaScript /JS (app.alert\\(1\\)) >>"})
    data = build_pdf([["Open me"]], catalog_extra=b"/OpenAction 30 0 R", extra_objects={40: hidden})
    assert b"JavaScript" not in data
    assert scan(data).signature == "Charter.PDF.JavaScript"
    assert scan(build_pdf([["Fine"]], extra_objects={40: object_stream({30: b"<< /Kind /Nothing >>"})})).verdict == (
        Verdict.CLEAN
    )


def test_an_encrypted_pdf_with_object_streams_is_unscannable():
    data = build_pdf([["Secret"]], extra_objects={40: object_stream({30: b"<< >>"}), 41: b"<< /Filter /Standard >>"})
    data = data.replace(b"/Root 1 0 R", b"/Root 1 0 R /Encrypt 41 0 R")
    found = scan(data)
    assert (found.verdict, found.engine) == (Verdict.UNSCANNABLE, "charter")


def test_object_streams_past_the_inflation_limit_are_unscannable():
    data = build_pdf([["Big"]], extra_objects={40: object_stream({30: b"<< /Padding (" + b"a" * 100_000 + b") >>"})})
    assert scan(data, max_pdf_inflated_bytes=10_000).verdict is Verdict.UNSCANNABLE
    assert scan(data).verdict is Verdict.CLEAN


def test_a_truncated_pdf_is_still_checked():
    assert scan(CLEAN_PDF[: len(CLEAN_PDF) // 2]).verdict is Verdict.CLEAN
    action = pdf_with_action(b"<< /S /JavaScript /JS (x) >>")
    assert scan(action[: action.index(b"xref")]).signature == "Charter.PDF.JavaScript"


def test_a_zip_bomb_is_infected_by_its_expansion_ratio_without_being_extracted():
    bomb = zip_bomb(64 * 1024 * 1024)
    assert len(bomb) < 200_000
    found = scan(bomb)
    assert (found.verdict, found.signature) == (Verdict.INFECTED, "Charter.Zip.Bomb")
    assert "times its compressed size" in found.detail


def test_a_zip_past_the_total_size_or_member_count_is_infected():
    found = scan(zip_bomb(8 * 1024 * 1024), max_zip_total_bytes=4 * 1024 * 1024, max_zip_ratio=10_000)
    assert (found.signature, found.detail) == (
        "Charter.Zip.Bomb",
        f"The archive expands to {8 * 1024 * 1024} bytes, more than {4 * 1024 * 1024}.",
    )
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for number in range(20):
            archive.writestr(f"{number}.txt", b"x")
    assert scan(out.getvalue(), max_zip_members=10).signature == "Charter.Zip.Bomb"


def test_zip_entries_that_share_compressed_data_are_infected():
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("a.txt", b"a" * 1000)
    data = bytearray(out.getvalue())
    # a second central directory entry pointing at the same local file (Fifield's overlap)
    central = data.index(b"PK\x01\x02")
    end = data.index(b"PK\x05\x06")
    entry = bytes(data[central:end]).replace(b"a.txt", b"b.txt")
    trailer = bytearray(data[end:])
    trailer[8:10] = (2).to_bytes(2, "little")
    trailer[10:12] = (2).to_bytes(2, "little")
    trailer[12:16] = (2 * (end - central)).to_bytes(4, "little")
    overlapping = bytes(data[:end]) + entry + bytes(trailer)
    assert scan(overlapping).detail == "The archive's entries overlap (they share compressed data)."


def test_a_zip_without_a_readable_central_directory_is_unscannable():
    found = scan(DOCX[: len(DOCX) // 2])
    assert (found.verdict, found.engine, found.signature) == (Verdict.UNSCANNABLE, "charter", None)


def test_office_macros_are_infected_in_a_docm_and_in_an_ole_file():
    docm = with_member(DOCX, "word/vbaProject.bin", vba_project())
    for data in (docm, vba_project()):
        found = scan(data)
        assert (found.verdict, found.signature) == (Verdict.INFECTED, "Charter.Office.Macro")
    assert scan(build_ole({"WordDocument": b"text"})).verdict is Verdict.CLEAN


def test_an_unreadable_ole_file_is_unscannable():
    broken = vba_project()[:700]
    assert scan(broken).verdict is Verdict.UNSCANNABLE


# --- with a virus scanner (the clamd port, faked; tests/documents/test_clamd.py has the real one)


def test_a_clean_file_goes_to_the_scanner_and_both_engines_are_named():
    scanner = FakeVirusScanner()
    found = scan_document(stream=io.BytesIO(CLEAN_PDF), scanner=scanner)
    assert found == ScanResult(Verdict.CLEAN, "charter+clamav")
    assert scanner.scanned == [CLEAN_PDF]


def test_the_scanners_infected_and_unscannable_verdicts_are_its_own():
    infected = FakeVirusScanner(ClamdOutcome("infected", signature="Win.Test.Thing"))
    assert scan_document(stream=io.BytesIO(b"text"), scanner=infected) == ScanResult(
        Verdict.INFECTED, "clamav", "Win.Test.Thing"
    )
    refused = FakeVirusScanner(ClamdOutcome("unscannable", detail="clamd: INSTREAM size limit exceeded. ERROR"))
    found = scan_document(stream=io.BytesIO(b"text"), scanner=refused)
    assert (found.verdict, found.engine, found.detail) == (
        Verdict.UNSCANNABLE,
        "clamav",
        "clamd: INSTREAM size limit exceeded. ERROR",
    )


def test_a_structural_finding_does_not_ask_the_scanner():
    scanner = FakeVirusScanner()
    assert scan_document(stream=io.BytesIO(EICAR), scanner=scanner).engine == "charter"
    assert scanner.scanned == []


def test_an_unreachable_scanner_is_no_verdict_but_an_error_the_job_retries():
    scanner = FakeVirusScanner(error=ConnectionRefusedError(111, "Connection refused"))
    with pytest.raises(ScannerUnavailable, match="clamav could not be reached"):
        scan_document(stream=io.BytesIO(b"text"), scanner=scanner)


def test_the_unscannable_policy_blocks_by_default():
    infected = ScanResult(Verdict.INFECTED, "charter", "Eicar-Test-Signature")
    unscannable = ScanResult(Verdict.UNSCANNABLE, "charter", detail="x")
    clean = ScanResult(Verdict.CLEAN, "charter")
    assert [is_blocked(result) for result in (infected, unscannable, clean)] == [True, True, False]
    assert [is_blocked(result, block_unscannable=False) for result in (infected, unscannable, clean)] == [
        True,
        False,
        False,
    ]


def test_a_short_name_that_compressed_data_holds_by_chance_is_not_an_action():
    image = b"<< /Type /XObject /Subtype /Image /Length 12 >>\nstream\n\x8f/JS \x01\x02\x03\x04\x05\x06\x07\nendstream"
    assert scan(build_pdf([["Picture"]], extra_objects={30: image})).verdict is Verdict.CLEAN


def test_an_action_hidden_where_a_stream_body_seems_to_run_is_still_found():
    # /Length says 4 bytes, but the next "endstream" comes after a JavaScript action object
    trick = b"<< /Length 4 >>\nstream\nAAAA\n31 0 obj << /S /JavaScript /JS (x) >> endobj\nendstream"
    assert scan(build_pdf([["Hi"]], extra_objects={30: trick})).signature == "Charter.PDF.JavaScript"


def test_a_large_pdf_is_checked_quickly():
    import random
    import time

    noise = random.Random(15).randbytes(20 * 1024 * 1024)  # like compressed images: /JS about 0.07 times
    data = build_pdf([["Big"]], extra_objects={30: b"<< /Length %d >>\nstream\n%s\nendstream" % (len(noise), noise)})
    started = time.monotonic()
    assert scan(data).verdict is Verdict.CLEAN
    assert time.monotonic() - started < 10


def test_a_check_that_trips_over_the_bytes_makes_them_unscannable_not_an_error(monkeypatch):
    import services.document_scan as document_scan

    def trips(data, *, limits):
        raise IndexError("unexpected")

    monkeypatch.setattr(document_scan, "check_pdf", trips)
    found = scan(CLEAN_PDF)
    assert (found.verdict, found.detail) == (
        Verdict.UNSCANNABLE,
        "The file's structure cannot be checked (IndexError).",
    )


def test_a_small_zip_member_with_corrupt_data_is_unscannable():
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("note.txt", b"a short note " * 5)
    data = bytearray(out.getvalue())
    start = 30 + len(b"note.txt")
    data[start : start + 8] = b"\xff" * 8  # the deflate stream, broken
    assert scan(bytes(data)).verdict is Verdict.UNSCANNABLE
