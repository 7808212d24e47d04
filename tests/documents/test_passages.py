"""Passages (issue 15): a few hundred words, following headings and paragraphs, with overlap, each
keeping its page and heading."""

from __future__ import annotations

import io

import pytest

from services.document_passages import Passage, chunk_passages
from services.document_text import TextBlock, extract_text
from services.document_types import DocumentKind
from tests.documents.samples import build_docx, build_pdf


def words(prefix: str, count: int) -> str:
    return " ".join(f"{prefix}{number}" for number in range(count))


def test_paragraphs_are_gathered_up_to_the_target_and_a_heading_starts_a_passage():
    blocks = [
        TextBlock("Intro", heading="Intro", is_heading=True),
        TextBlock(words("a", 4), heading="Intro"),
        TextBlock(words("b", 4), heading="Intro"),
        TextBlock("Next", heading="Next", is_heading=True),
        TextBlock(words("c", 3), heading="Next"),
    ]
    assert chunk_passages(blocks, target_words=10, overlap_words=2) == [
        Passage(0, f"Intro\n\n{words('a', 4)}\n\n{words('b', 4)}", 9, None, None, "Intro"),
        Passage(1, f"Next\n\n{words('c', 3)}", 4, None, None, "Next"),
    ]


def test_a_full_passage_hands_its_last_words_to_the_next_one():
    blocks = [TextBlock(words("a", 6)), TextBlock(words("b", 6)), TextBlock(words("c", 6))]
    passages = chunk_passages(blocks, target_words=10, overlap_words=3)
    assert [passage.text for passage in passages] == [
        words("a", 6),
        "a3 a4 a5\n\n" + words("b", 6),
        "b3 b4 b5\n\n" + words("c", 6),
    ]
    assert all(passage.words <= 10 for passage in passages)


def test_a_long_paragraph_is_cut_at_word_boundaries_with_overlap():
    passages = chunk_passages([TextBlock(words("w", 25), page=4)], target_words=10, overlap_words=2)
    assert [passage.text for passage in passages] == [
        words("w", 10),
        "w8 w9 " + " ".join(f"w{n}" for n in range(10, 18)),
        "w16 w17 " + " ".join(f"w{n}" for n in range(18, 25)),
    ]
    assert {(passage.page, passage.page_end) for passage in passages} == {(4, 4)}
    everything = " ".join(passage.text for passage in passages).split()
    assert set(everything) == set(words("w", 25).split())


def test_a_passage_across_a_page_break_names_both_pages():
    blocks = [TextBlock(words("p", 5), page=1), TextBlock(words("q", 5), page=2)]
    (passage,) = chunk_passages(blocks, target_words=20, overlap_words=5)
    assert (passage.page, passage.page_end, passage.heading) == (1, 2, None)


def test_no_overlap_crosses_a_section_and_no_passage_is_only_overlap():
    blocks = [TextBlock(words("a", 10), heading="A"), TextBlock(words("b", 3), heading="B")]
    passages = chunk_passages(blocks, target_words=10, overlap_words=4)
    assert [(passage.text, passage.heading) for passage in passages] == [(words("a", 10), "A"), (words("b", 3), "B")]


def test_no_overlap_and_empty_input():
    blocks = [TextBlock(words("a", 7))]
    assert [p.words for p in chunk_passages(blocks, target_words=3, overlap_words=0)] == [3, 3, 1]
    assert chunk_passages([], target_words=3, overlap_words=0) == []
    assert chunk_passages([TextBlock("   ")]) == []


@pytest.mark.parametrize(("target", "overlap"), [(0, 0), (10, 10), (10, -1)])
def test_parameters_are_checked(target, overlap):
    with pytest.raises(ValueError):
        chunk_passages([TextBlock("a")], target_words=target, overlap_words=overlap)


def test_a_pdf_made_here_is_extracted_and_chunked_with_its_pages():
    pdf = build_pdf(
        [[words("alpha", 12), words("beta", 12)], [words("gamma", 12)], [words("delta", 12)]],
        outline=[("Overview", 0), ("Appendix", 2)],
    )
    extracted = extract_text(io.BytesIO(pdf), kind=DocumentKind.PDF)
    passages = chunk_passages(extracted.blocks, target_words=30, overlap_words=5)
    assert [(p.page, p.page_end, p.heading, p.words) for p in passages] == [
        (1, 1, "Overview", 24),  # the second page's paragraph does not fit: it opens the next passage
        (1, 2, "Overview", 17),
        (3, 3, "Appendix", 12),
    ]
    assert passages[1].text == "beta7 beta8 beta9 beta10 beta11\n\n" + words("gamma", 12)


def test_a_docx_made_here_is_extracted_and_chunked_with_its_headings():
    data = build_docx(
        [("Installation", [words("install", 40), words("configure", 40)]), ("Support", [words("help", 10)])]
    )
    passages = chunk_passages(
        extract_text(io.BytesIO(data), kind=DocumentKind.DOCX).blocks, target_words=50, overlap_words=10
    )
    assert [(p.heading, p.words, p.page) for p in passages] == [
        ("Installation", 41, None),
        ("Installation", 50, None),
        ("Support", 11, None),
    ]
    assert passages[0].text.startswith("Installation\n\ninstall0")
    assert passages[2].text == "Support\n\n" + words("help", 10)
