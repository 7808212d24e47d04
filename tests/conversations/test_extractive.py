"""The `extractive` answer provider on its own: the sentences sharing the most question words,
one per passage, in the passages' order, each with its `[n]`; the best passage's first sentence
when no sentence shares a word; a cut at the word limit; sentence splitting that keeps
abbreviations and decimals inside their sentence."""

from __future__ import annotations

from adapters.answer_extractive import ExtractiveAnswerProvider, sentences, terms
from services.conversations import AnswerRequest, NumberedPassage

RETURNS = (
    "Our shop accepts returns within 30 days. Refunds are paid within 14 days of the return "
    "reaching our warehouse. Gift cards cannot be refunded."
)
SHIPPING = "Parcels leave every weekday. Shipping to Europe takes three to five days."


def _answer(question: str, *texts: str, max_words: int = 300) -> list[tuple[str, str]]:
    passages = [NumberedPassage(number, text, None) for number, text in enumerate(texts, start=1)]
    request = AnswerRequest(question=question, passages=passages, instructions="", history=[], max_words=max_words)
    return list(ExtractiveAnswerProvider().answer(request))


def test_each_passage_gives_its_best_sentence_with_its_number():
    events = _answer("How long do refunds and shipping take?", RETURNS, SHIPPING)
    assert events == [
        ("delta", "Refunds are paid within 14 days of the return reaching our warehouse. [1]"),
        ("delta", " Shipping to Europe takes three to five days. [2]"),
        ("finish", "stop"),
    ]


def test_a_passage_without_a_shared_word_is_not_quoted():
    events = _answer("refunds", RETURNS, SHIPPING)
    assert events == [
        ("delta", "Refunds are paid within 14 days of the return reaching our warehouse. [1]"),
        ("finish", "stop"),
    ]


def test_without_any_shared_word_the_best_passage_answers_with_its_first_sentence():
    assert _answer("pancakes", SHIPPING, RETURNS) == [
        ("delta", "Parcels leave every weekday. [1]"),
        ("finish", "stop"),
    ]


def test_the_word_limit_ends_the_answer_with_length():
    assert _answer("refunds shipping", RETURNS, SHIPPING, max_words=16) == [
        ("delta", "Refunds are paid within 14 days of the return reaching our warehouse. [1]"),
        ("finish", "length"),
    ]


def test_words_are_compared_without_stop_words_and_plural_or_tense_endings():
    assert terms("How do the refunds get refunded?") == {"refund", "get"}
    assert sentences("Dr. Smith paid 3.5 euros. It took 2 days!") == ["Dr. Smith paid 3.5 euros.", "It took 2 days!"]
