"""Answer providers without a model (issue 16): the `extractive` provider, and the fakes the
tests script.

`ExtractiveAnswerProvider` is deterministic and reaches nothing: it answers with the sentences
of the given passages that share the most words with the question, each followed by the ``[n]``
of its passage. Sentences are split by `sentencex` (Wikimedia's rule-based segmenter:
abbreviations, decimals, quotes; no model, no download). Words are compared lower-cased, with
English stop words left out and a light suffix rule (``refunds``, ``refunded`` and ``refund``
are one word), so the question's words find their sentences in the passages the full-text
search found for them.

It implements `services.conversations.AnswerProvider` without importing it (adapters stand
alone): a request is anything with `question`, `passages` (each with `number` and `text`) and
`max_words`; events are ``("delta", text)`` and a last ``("finish", reason)``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from sentencex import segment

MAX_SENTENCES = 3
"""The most sentences an extractive answer has (one per passage at most)."""
MAX_SENTENCE_WORDS = 80
"""A longer sentence is cut there, with an ellipsis."""

STOP_WORDS = frozenset(
    [
        "a",
        "about",
        "above",
        "after",
        "again",
        "against",
        "all",
        "am",
        "an",
        "and",
        "any",
        "are",
        "as",
        "at",
        "be",
        "because",
        "been",
        "before",
        "being",
        "below",
        "between",
        "both",
        "but",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "doing",
        "down",
        "during",
        "each",
        "few",
        "for",
        "from",
        "further",
        "had",
        "has",
        "have",
        "having",
        "he",
        "her",
        "here",
        "hers",
        "him",
        "his",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "just",
        "me",
        "more",
        "most",
        "my",
        "no",
        "nor",
        "not",
        "of",
        "off",
        "on",
        "once",
        "only",
        "or",
        "other",
        "our",
        "out",
        "over",
        "own",
        "same",
        "she",
        "should",
        "so",
        "some",
        "such",
        "than",
        "that",
        "the",
        "their",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "through",
        "to",
        "too",
        "under",
        "until",
        "up",
        "very",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "while",
        "who",
        "whom",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
    ]
)
"""Words that say nothing about what a question is about."""

_WORD = re.compile(r"\w+")
_SUFFIXES = ("ing", "ed", "es", "s")


class _Passage(Protocol):
    @property
    def number(self) -> int: ...

    @property
    def text(self) -> str: ...


class _Request(Protocol):
    @property
    def question(self) -> str: ...

    @property
    def passages(self) -> Sequence[_Passage]: ...

    @property
    def max_words(self) -> int: ...


def terms(text: str) -> set[str]:
    """The words of `text` that carry meaning: lower-cased, stop words out, ``-ing``, ``-ed``,
    ``-es``, ``-s`` cut when at least three letters stay."""
    found = set()
    for word in _WORD.findall(text.lower()):
        if word in STOP_WORDS:
            continue
        for suffix in _SUFFIXES:
            if word.endswith(suffix) and len(word) - len(suffix) >= 3:
                word = word[: -len(suffix)]
                break
        found.add(word)
    return found


def sentences(text: str) -> list[str]:
    """The sentences of `text` (sentencex, English rules), stripped, empty ones left out."""
    return [part.strip() for part in segment("en", text) if part.strip()]


def _cut(sentence: str) -> str:
    words = sentence.split()
    if len(words) <= MAX_SENTENCE_WORDS:
        return sentence
    return " ".join(words[:MAX_SENTENCE_WORDS]) + "…"


@dataclass(frozen=True)
class _Candidate:
    score: int
    rank: int
    number: int
    sentence: str


class ExtractiveAnswerProvider:
    """The `extractive` provider: for each passage (best first) its sentence sharing the most
    question words; the `MAX_SENTENCES` best of those (most shared words, then the better
    passage), in the passages' order, each followed by ``[n]``. When no sentence shares a word
    (the search matched on something else), the best passage's first sentence answers alone.
    Stops before `max_words` (``length``); otherwise ``stop``."""

    name = "extractive"

    def answer(self, request: _Request) -> Iterator[tuple[str, str]]:
        """The answer's events: one delta per sentence, then the finish."""
        wanted = terms(request.question)
        best: list[_Candidate] = []
        for rank, passage in enumerate(request.passages):
            candidates = [
                _Candidate(len(wanted & terms(sentence)), rank, passage.number, sentence)
                for sentence in sentences(passage.text)
            ]
            if candidates:
                best.append(max(candidates, key=lambda candidate: candidate.score))  # first of equals
        chosen = sorted((candidate for candidate in best if candidate.score > 0), key=lambda c: (-c.score, c.rank))[
            :MAX_SENTENCES
        ]
        if not chosen and request.passages:
            first = sentences(request.passages[0].text)
            if first:
                chosen = [_Candidate(0, 0, request.passages[0].number, first[0])]
        words = 0
        for index, candidate in enumerate(sorted(chosen, key=lambda c: c.rank)):
            text = f"{_cut(candidate.sentence)} [{candidate.number}]"
            words += len(_WORD.findall(text))
            if words > request.max_words:
                yield ("finish", "length")
                return
            yield ("delta", text if index == 0 else " " + text)
        yield ("finish", "stop")


class ScriptedAnswerProvider:
    """A fake provider for tests: yields `deltas` then ``("finish", finish)``; raises `fail`
    (an exception) before the first delta, or after `fail_after` deltas when that is set.
    Records each request it was given in `requests`."""

    def __init__(
        self,
        deltas: Sequence[str] = ("An answer [1]",),
        *,
        name: str = "scripted",
        finish: str = "stop",
        fail: Exception | None = None,
        fail_after: int | None = None,
    ) -> None:
        self.name = name
        self.deltas = list(deltas)
        self.finish = finish
        self.fail = fail
        self.fail_after = fail_after
        self.requests: list[object] = []

    def answer(self, request: _Request) -> Iterator[tuple[str, str]]:
        """See the class."""
        self.requests.append(request)
        for index, delta in enumerate(self.deltas):
            if self.fail is not None and index == (self.fail_after or 0):
                raise self.fail
            yield ("delta", delta)
        if self.fail is not None and (self.fail_after or 0) >= len(self.deltas):
            raise self.fail
        yield ("finish", self.finish)
