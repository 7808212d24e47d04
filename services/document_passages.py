"""Documents (issue 15): a document's text cut into passages, the units the index searches and
answers cite ("chunks of a few hundred words following headings and paragraphs, with overlap").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from services.document_text import TextBlock


@dataclass(frozen=True)
class Passage:
    """A passage and where it comes from.

    Attributes:
        index: its position among the document's passages, from 0.
        text: its text: paragraphs separated by a blank line, words by single spaces.
        words: its number of words (whitespace-separated tokens), overlap included.
        page: the 1-based page of its first word (PDF), else None.
        page_end: the page of its last word (PDF), else None; differs from `page` when the
            passage runs across a page break.
        heading: the innermost heading its section falls under, or None.
    """

    index: int
    text: str
    words: int
    page: int | None
    page_end: int | None
    heading: str | None


_Unit = tuple[list[str], int | None, bool]
"""A paragraph or a piece of one: its words, its page, and whether it continues the paragraph of
the unit before it (a long paragraph cut in pieces)."""


def _sections(blocks: Sequence[TextBlock]) -> list[tuple[str | None, list[_Unit]]]:
    """Consecutive blocks under the same heading; a heading block opens a new section and is its
    first paragraph."""
    sections: list[tuple[str | None, list[_Unit]]] = []
    for block in blocks:
        words = block.text.split()
        if not words:
            continue
        if block.is_heading or not sections or sections[-1][0] != block.heading:
            sections.append((block.heading, []))
        sections[-1][1].append((words, block.page, False))
    return sections


def _tail(units: list[_Unit], count: int) -> list[_Unit]:
    """The last `count` words of `units`, paragraph breaks kept."""
    tail: list[_Unit] = []
    for words, page, continues in reversed(units):
        if count <= 0:
            break
        taken = words[-count:]
        tail.insert(0, (taken, page, continues and len(taken) == len(words)))
        count -= len(taken)
    return tail


def chunk_passages(blocks: Sequence[TextBlock], *, target_words: int = 300, overlap_words: int = 50) -> list[Passage]:
    """Cut a document's blocks into passages of about `target_words` words.

    The rule (issue 15; the usual practice of retrieval pipelines such as LangChain's recursive
    splitter: split on structure first, then on size):

    - A passage never spans two sections: a heading, or a change of the heading in force (a PDF
      outline entry), starts a new passage; the heading's own text opens its first passage.
    - Within a section, whole paragraphs are gathered while they fit in `target_words`; a
      paragraph longer than that is cut at word boundaries.
    - Each passage after the first of a section starts with the last `overlap_words` words of the
      one before (so a sentence cut at a boundary is found whole in one of them); a passage holds
      at most `target_words` words, overlap included. There is no overlap across sections.

    Args:
        blocks: the document's blocks in reading order (`services.document_text.extract_text`).
        target_words: the most words in a passage, at least 1 (words are whitespace-separated
            tokens; 300 words are about 400 tokens of English for an embedding model).
        overlap_words: words repeated from the previous passage, at least 0 and less than
            `target_words`.

    Returns:
        The passages in order, numbered from 0, each with its page span and heading; empty for
        blocks without words.

    Raises:
        ValueError: `target_words` below 1, or `overlap_words` outside 0 … `target_words` - 1.
    """
    if target_words < 1:
        raise ValueError("target_words must be at least 1")
    if not 0 <= overlap_words < target_words:
        raise ValueError("overlap_words must be at least 0 and less than target_words")
    passages: list[Passage] = []

    def emit(units: list[_Unit], heading: str | None) -> None:
        pages = [page for _, page, _ in units]
        text = ""
        for position, (words, _, continues) in enumerate(units):
            text += ("" if position == 0 else " " if continues else "\n\n") + " ".join(words)
        passages.append(
            Passage(
                index=len(passages),
                text=text,
                words=sum(len(words) for words, _, _ in units),
                page=pages[0],
                page_end=pages[-1],
                heading=heading,
            )
        )

    for heading, units in _sections(blocks):
        current: list[_Unit] = []
        count = 0  # words in current
        fresh = 0  # of which are not the previous passage's overlap
        for words, page, _ in units:
            continues = False
            while words:
                room = target_words - count
                if len(words) <= room:
                    current.append((words, page, continues))
                    count += len(words)
                    fresh += len(words)
                    words = []
                    continue
                if fresh == 0:  # only overlap so far, and the paragraph does not fit: cut it
                    current.append((words[:room], page, continues))
                    count += room
                    fresh += room
                    words = words[room:]
                    continues = True
                emit(current, heading)
                current = _tail(current, overlap_words)
                count = sum(len(part) for part, _, _ in current)
                fresh = 0
        if fresh:
            emit(current, heading)
    return passages
