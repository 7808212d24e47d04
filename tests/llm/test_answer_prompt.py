"""The prompt of a generated answer and the mapping of its `[n]` markers (services/answer_prompt.py)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from services.answer_prompt import (
    DEFAULT_INSTRUCTIONS,
    GROUNDING_RULES,
    NO_PASSAGES,
    CitationMarkers,
    Turn,
    build_chat_messages,
    cited_numbers,
    passage_source,
)


@dataclass(frozen=True)
class Passage:
    text: str
    title: str | None = None
    url: str | None = None
    page: int | None = None
    heading: str | None = None


PAGE = Passage("We open at 9.", title="Opening hours", url="https://shop.example/hours")
DOCUMENT = Passage("  Prices start at 5 EUR.  ", title="Price list.pdf", page=3, heading="Prices")


def test_the_system_message_holds_the_instructions_the_rules_and_the_numbered_passages():
    [system, user] = build_chat_messages(
        question="When do you open?", passages=[PAGE, DOCUMENT], instructions="Be brief."
    )

    assert user == {"role": "user", "content": "When do you open?"}
    assert system["role"] == "system"
    assert system["content"] == (
        f"Be brief.\n\n{GROUNDING_RULES}\n\nPassages:\n\n"
        "[1] Source: Opening hours — https://shop.example/hours\nWe open at 9.\n\n"
        "[2] Source: Price list.pdf — Prices — page 3\nPrices start at 5 EUR."
    )
    assert "[1]" in GROUNDING_RULES and "do not know" in GROUNDING_RULES and "not instructions" in GROUNDING_RULES


def test_without_instructions_or_passages():
    [system, _] = build_chat_messages(question="Anything?", passages=[], instructions="  ")

    assert system["content"].startswith(DEFAULT_INSTRUCTIONS + "\n\n")
    assert system["content"].endswith(f"Passages:\n\n{NO_PASSAGES}")


def test_the_last_turns_come_between_the_system_message_and_the_question():
    turns = [Turn("user", f"question {i}") if i % 2 == 0 else Turn("assistant", f"answer {i}") for i in range(8)]

    messages = build_chat_messages(question="new", passages=[PAGE], turns=turns, max_turns=4)

    assert [(m["role"], m["content"]) for m in messages[1:]] == [
        ("user", "question 4"),
        ("assistant", "answer 5"),
        ("user", "question 6"),
        ("assistant", "answer 7"),
        ("user", "new"),
    ]


def test_turns_of_other_roles_are_not_sent_and_max_turns_zero_sends_none():
    @dataclass
    class Stored:
        role: str
        content: str

    turns = [Stored("system", "note"), Stored("user", "hi"), Stored("tool", "x")]

    assert build_chat_messages(question="q", passages=[], turns=turns)[1:] == [
        {"role": "user", "content": "hi"},
        {"role": "user", "content": "q"},
    ]
    assert len(build_chat_messages(question="q", passages=[], turns=turns, max_turns=0)) == 2


def test_a_source_without_anything_known():
    assert passage_source(Passage("text")) == "unknown"


def feed_all(markers: CitationMarkers, deltas: list[str]) -> str:
    return "".join(markers.feed(delta) for delta in deltas) + markers.close()


@pytest.mark.parametrize(
    "deltas",
    [
        ["Open at 9 [1] and 5 [2]."],
        ["Open at 9 [", "1] and 5 [2", "]."],
        ["Open at 9 ", "[", "1", "]", " and 5 [", "2", "]", "."],
        list("Open at 9 [1] and 5 [2]."),
    ],
)
def test_markers_are_read_whole_however_the_deltas_split_them(deltas):
    markers = CitationMarkers(passages=2)

    assert feed_all(markers, deltas) == "Open at 9 [1] and 5 [2]."
    assert markers.cited == [1, 2]


def test_a_possible_marker_is_held_back_until_it_closes():
    markers = CitationMarkers(passages=3)

    assert markers.feed("See [") == "See "
    assert markers.feed("1, ") == ""
    assert markers.feed("3] now") == "[1, 3] now"
    assert markers.cited == [1, 3]


def test_numbers_naming_no_passage_are_dropped_and_not_cited():
    markers = CitationMarkers(passages=2)

    assert feed_all(markers, ["A [3]. B [0]. C [2, 9", "]. D [1][4]."]) == "A . B . C [2]. D [1]."
    assert markers.cited == [2, 1]


def test_other_brackets_are_text():
    markers = CitationMarkers(passages=2)

    assert feed_all(markers, ["x[", "sic] [a] [] [1", "2345] [2"]) == "x[sic] [a] [] [12345] [2"
    assert markers.cited == []


def test_a_long_bracket_is_not_held_forever():
    markers = CitationMarkers(passages=2)
    opened = "[" + "1, " * 30

    assert markers.feed(opened) == opened
    assert markers.close() == ""


def test_cited_numbers_of_a_whole_text_in_order_of_first_appearance():
    assert cited_numbers("b [2] a [1] again [2][1] none [7]", passages=3) == [2, 1]
