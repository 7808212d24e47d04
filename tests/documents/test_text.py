"""Extraction (issue 15): PDF pages and DOCX headings kept, Markdown, HTML and text read into
blocks; a file that cannot be read is `DocumentUnreadable`, never another exception."""

from __future__ import annotations

import io

import pytest

from services.document_text import DocumentUnreadable, TextBlock, decode_text, extract_text
from services.document_types import DocumentKind
from tests.documents.samples import build_docx, build_pdf


def extract(data: bytes, kind: DocumentKind, **options):
    return extract_text(io.BytesIO(data), kind=kind, **options)


def test_a_pdf_keeps_its_page_numbers_and_its_outline_as_headings():
    pdf = build_pdf(
        [["Alpha is on page one.", "A second line."], ["Beta is on page two."], ["Gamma is on page three."]],
        outline=[("Introduction", 0), ("Details", 1)],
        title="The Report",
    )
    extracted = extract(pdf, DocumentKind.PDF)
    assert extracted.pages == 3
    assert extracted.title == "The Report"
    assert extracted.words == 18
    assert extracted.blocks == [
        TextBlock("Alpha is on page one.\nA second line.", page=1, heading="Introduction"),
        TextBlock("Beta is on page two.", page=2, heading="Details"),
        TextBlock("Gamma is on page three.", page=3, heading="Details"),
    ]


def test_a_docx_keeps_its_headings_paragraphs_and_tables_in_order():
    data = build_docx(
        [("Getting started", ["Install the package.", "Run it."]), ("Billing", ["Invoices are monthly."])],
        title="Handbook",
        table=[["Plan", "Price"], ["Pro", "10"]],
    )
    extracted = extract(data, DocumentKind.DOCX)
    assert extracted.title == "Handbook"
    assert extracted.pages is None
    assert [(block.text, block.heading, block.is_heading) for block in extracted.blocks] == [
        ("Getting started", "Getting started", True),
        ("Install the package.", "Getting started", False),
        ("Run it.", "Getting started", False),
        ("Billing", "Billing", True),
        ("Invoices are monthly.", "Billing", False),
        ("Plan | Price", "Billing", False),
        ("Pro | 10", "Billing", False),
    ]


def test_markdown_headings_paragraphs_and_code():
    text = (
        "Guide\n=====\n\nFirst paragraph\ncontinues here.\n\n## Setup\n\n```sh\npip install x\n\nx --help\n```\n\n"
        "### Details ###\nLast words.\n"
    )
    extracted = extract(text.encode(), DocumentKind.MARKDOWN)
    assert extracted.title == "Guide"
    assert [(block.text, block.heading) for block in extracted.blocks] == [
        ("Guide", "Guide"),
        ("First paragraph\ncontinues here.", "Guide"),
        ("Setup", "Setup"),
        ("pip install x\nx --help", "Setup"),
        ("Details", "Details"),
        ("Last words.", "Details"),
    ]


def test_html_main_content_with_headings_without_scripts_or_navigation():
    page = (
        b"<html><head><title>Product page</title><style>p{}</style></head><body>"
        b"<nav><a href='/'>Home</a> <a href='/about'>About</a></nav><main><h1>Widgets</h1>"
        + b"<p>"
        + b"Widgets are useful things to have around. " * 20
        + b"</p><h2>Pricing</h2>"
        + b"<p>"
        + b"They cost little and last long enough. " * 20
        + b"</p></main>"
        b"<script>document.write('tracking')</script></body></html>"
    )
    extracted = extract(page, DocumentKind.HTML)
    assert extracted.title == "Product page"
    headings = [(block.text, block.heading) for block in extracted.blocks if block.is_heading]
    assert headings == [("Widgets", "Widgets"), ("Pricing", "Pricing")]
    text = " ".join(block.text for block in extracted.blocks)
    assert "tracking" not in text and "p{}" not in text and "About" not in text
    assert extracted.blocks[-1].heading == "Pricing"


def test_a_short_html_page_keeps_all_its_visible_text():
    extracted = extract(
        "<p>Short note.</p><h2>Après</h2><p>More<script>hidden()</script></p>".encode(),
        DocumentKind.HTML,
    )
    assert [(block.text, block.heading) for block in extracted.blocks] == [
        ("Short note.", None),
        ("Après", "Après"),
        ("More", "Après"),
    ]


def test_plain_text_is_split_into_paragraphs():
    extracted = extract(b"One line.\r\nStill one.\r\n\r\n\r\nTwo.  \t Spaces  collapsed.", DocumentKind.TEXT)
    assert [block.text for block in extracted.blocks] == ["One line.\nStill one.", "Two. Spaces collapsed."]
    assert extracted.words == 7


@pytest.mark.parametrize(
    ("data", "encoding", "text"),
    [
        ("café".encode(), "utf-8", "café"),
        ("café".encode("latin-1"), "iso8859-1", "café"),
        ("café".encode("cp1252"), None, "café"),
        ("café".encode("utf-16"), None, "café"),
        (b"\xef\xbb\xbfcaf\xc3\xa9", None, "café"),
        ("€".encode("cp1252"), "iso8859-1", "€"),  # what libmagic calls ISO-8859-1 is read as Windows-1252
    ],
)
def test_text_is_decoded_by_its_byte_order_mark_its_sniffed_encoding_or_utf8(data, encoding, text):
    assert decode_text(data, encoding) == text


def test_a_truncated_pdf_is_unreadable():
    pdf = build_pdf([["Some text on a page."]] * 3)
    for cut in (len(pdf) // 3, len(pdf) // 2, len(pdf) - 10):
        with pytest.raises(DocumentUnreadable, match="The PDF file cannot be read"):
            extract(pdf[:cut], DocumentKind.PDF)


@pytest.mark.parametrize(
    ("data", "kind", "message"),
    [
        (b"%PDF-1.7\n garbage", DocumentKind.PDF, "cannot be read"),
        (build_pdf([[]]), DocumentKind.PDF, "No text could be extracted"),  # a page without text (a scan)
        (b"PK\x03\x04 not really a zip", DocumentKind.DOCX, "cannot be read"),
        (build_docx([])[:500], DocumentKind.DOCX, "cannot be read"),
        (b"   \n\n  \t", DocumentKind.TEXT, "No text"),
        (b"<html><script>only()</script></html>", DocumentKind.HTML, "No text"),
        (b"\n\n", DocumentKind.MARKDOWN, "No text"),
    ],
)
def test_malformed_or_empty_documents_are_unreadable(data, kind, message):
    with pytest.raises(DocumentUnreadable, match=message) as failed:
        extract(data, kind)
    assert failed.value.problem.type == "/problems/document-unreadable"


def test_a_pdf_with_more_pages_than_allowed_is_unreadable():
    with pytest.raises(DocumentUnreadable, match="more than 2"):
        extract(build_pdf([["a"], ["b"], ["c"]]), DocumentKind.PDF, max_pages=2)


def test_a_password_protected_pdf_is_unreadable():
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(build_pdf([["Secret words."]]))))
    writer.encrypt(user_password="secret", owner_password="owner", algorithm="AES-128")
    out = io.BytesIO()
    writer.write(out)
    with pytest.raises(DocumentUnreadable, match="encrypted with a password"):
        extract(out.getvalue(), DocumentKind.PDF)
