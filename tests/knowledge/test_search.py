"""A chatbot's knowledge index on the session's database (SQLite FTS5 or PostgreSQL tsvector):
passages keep their source, re-indexing replaces a source's passages, search follows web-search
syntax, ranks, highlights safely and stays within one chatbot; the retriever takes any word."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from persistence.knowledge.repository import fts5_query
from services import chatbots, knowledge
from services.audit import RequestMeta
from services.clock import FrozenClock
from services.document_passages import chunk_passages
from services.document_text import TextBlock
from services.errors import InvalidInput, NotFound

T0 = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
META = RequestMeta(client_address="203.0.113.7", user_agent="pytest", request_id="req-knowledge")


@dataclass(frozen=True)
class Chunk:
    text: str
    words: int = 0
    page: int | None = None
    heading: str | None = None


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(T0)


def new_chatbot(new_uow, clock, caller, **settings) -> uuid.UUID:
    with new_uow() as uow:
        return chatbots.create_chatbot(
            uow=uow, clock=clock, caller=caller, data={"name": "Support", **settings}, meta=META
        ).id


def index(new_uow, clock, chatbot_id, source, *texts, **where) -> None:
    with new_uow() as uow:
        knowledge.index_source(
            uow=uow,
            clock=clock,
            chatbot_id=chatbot_id,
            source=source,
            passages=[Chunk(text, len(text.split()), **where) for text in texts],
        )


def search(new_uow, caller, chatbot_id, query, limit=10):
    with new_uow() as uow:
        return knowledge.search(uow=uow, caller=caller, chatbot_id=chatbot_id, query=query, limit=limit)


PAGE = knowledge.KnowledgeSource("web_page", uuid.uuid4(), title="Returns", url="https://shop.example/returns")
MANUAL = knowledge.KnowledgeSource("document", uuid.uuid4(), title="Owner's manual")


def test_search_finds_passages_with_their_source_ranked_and_highlighted(new_uow, clock, owner):
    chatbot_id = new_chatbot(new_uow, clock, owner)
    index(
        new_uow,
        clock,
        chatbot_id,
        PAGE,
        "Refunds are paid within 14 days of the return reaching our warehouse.",
        "Shipping is free for orders over 50 euros.",
    )
    index(new_uow, clock, chatbot_id, MANUAL, "To return the kettle, descale it first.", page=4, heading="Care")

    hits = search(new_uow, owner, chatbot_id, "refunds")
    assert [hit.text for hit in hits] == ["Refunds are paid within 14 days of the return reaching our warehouse."]
    [hit] = hits
    assert (hit.source_type, hit.source_id, hit.url, hit.title) == ("web_page", PAGE.id, PAGE.url, "Returns")
    assert 0 < hit.score < 1
    assert "<mark>Refunds</mark>" in hit.snippet

    # Stemming: "returned" finds "return"; both sources match and keep where they come from.
    found = {hit.source_type: hit for hit in search(new_uow, owner, chatbot_id, "returned")}
    assert set(found) == {"web_page", "document"}
    assert (found["document"].page, found["document"].heading, found["document"].url) == (4, "Care", None)


def test_web_search_syntax_every_word_phrases_exclusions_and_or(new_uow, clock, owner):
    chatbot_id = new_chatbot(new_uow, clock, owner)
    index(
        new_uow,
        clock,
        chatbot_id,
        PAGE,
        "Express delivery takes one day.",
        "Standard delivery takes three days.",
        "Pickup in store is free.",
    )

    def texts(query):
        return sorted(hit.text for hit in search(new_uow, owner, chatbot_id, query))

    assert texts("delivery three") == ["Standard delivery takes three days."]
    assert len(texts("delivery days")) == 2  # stemmed: "days" finds "day" too
    assert texts('"express delivery"') == ["Express delivery takes one day."]
    assert texts("delivery -express") == ["Standard delivery takes three days."]
    assert texts("express or pickup") == ["Express delivery takes one day.", "Pickup in store is free."]
    assert texts("the") == []  # a stop word alone matches nothing
    assert texts('"unclosed quote') == []  # odd syntax is no error


def test_a_better_match_ranks_first_and_the_limit_holds(new_uow, clock, owner):
    chatbot_id = new_chatbot(new_uow, clock, owner)
    index(
        new_uow,
        clock,
        chatbot_id,
        PAGE,
        "Warranty: the warranty covers parts. The warranty lasts two years; warranty claims go online.",
        "A warranty card is in the box.",
        "Batteries are not covered.",
    )
    hits = search(new_uow, owner, chatbot_id, "warranty", limit=1)
    assert len(hits) == 1 and hits[0].text.startswith("Warranty: the warranty")
    both = search(new_uow, owner, chatbot_id, "warranty")
    assert len(both) == 2 and both[0].score > both[1].score


def test_reindexing_a_source_replaces_its_passages_and_removing_it_drops_them(new_uow, clock, owner):
    chatbot_id = new_chatbot(new_uow, clock, owner)
    index(new_uow, clock, chatbot_id, PAGE, "Old opening hours: nine to five.")
    index(new_uow, clock, chatbot_id, PAGE, "New opening hours: eight to six.", "Closed on Sundays.")
    assert [hit.text for hit in search(new_uow, owner, chatbot_id, "opening hours")] == [
        "New opening hours: eight to six."
    ]
    with new_uow() as uow:
        assert uow.knowledge.count(chatbot_id) == 2
        assert knowledge.remove_source(uow=uow, chatbot_id=chatbot_id, source_type="web_page", source_id=PAGE.id) == 2
    assert search(new_uow, owner, chatbot_id, "opening") == []


def test_search_stays_within_the_chatbot_and_the_owner(new_uow, clock, owner, other_account):
    mine = new_chatbot(new_uow, clock, owner)
    with new_uow() as uow:
        other = uow.users.get(uuid.UUID(other_account.id))
    theirs = new_chatbot(new_uow, clock, other)
    index(new_uow, clock, theirs, PAGE, "A secret recipe for pancakes.")
    assert search(new_uow, owner, mine, "pancakes") == []
    with pytest.raises(NotFound):
        search(new_uow, owner, theirs, "pancakes")
    assert [hit.text for hit in search(new_uow, other, theirs, "pancakes")] == ["A secret recipe for pancakes."]


def test_a_passages_markup_comes_back_escaped_in_the_snippet(new_uow, clock, owner):
    chatbot_id = new_chatbot(new_uow, clock, owner)
    index(new_uow, clock, chatbot_id, PAGE, "Descale the <img src=x onerror=alert(1)> kettle & enjoy.")
    [hit] = search(new_uow, owner, chatbot_id, "kettle")
    assert "<mark>kettle</mark>" in hit.snippet
    assert "<" not in re.sub(r"</?mark>", "", hit.snippet)  # only our tags are markup
    assert "&amp;" in hit.snippet


def test_the_chatbots_min_score_filters_and_bad_queries_are_refused(new_uow, clock, owner):
    strict = new_chatbot(new_uow, clock, owner, min_score=0.99)
    index(new_uow, clock, strict, PAGE, "Gift cards never expire.")
    assert search(new_uow, owner, strict, "gift cards") == []
    for query in ("   ", "x" * 501):
        with pytest.raises(InvalidInput):
            search(new_uow, owner, strict, query)


def test_the_retriever_takes_a_question_word_by_word(new_uow, clock, owner):
    chatbot_id = new_chatbot(new_uow, clock, owner)
    blocks = [
        TextBlock(text="Returns", page=1, heading=None, is_heading=True),
        TextBlock(text="You can return any item within 30 days for a full refund.", page=1, heading="Returns"),
    ]
    with new_uow() as uow:
        knowledge.index_source(
            uow=uow, clock=clock, chatbot_id=chatbot_id, source=MANUAL, passages=chunk_passages(blocks)
        )
    retriever = knowledge.FullTextRetriever(new_uow)
    [hit] = retriever.retrieve(
        chatbot_id=chatbot_id, question="How many days do I have to get a refund?", limit=5, min_score=0.0
    )
    assert hit.heading == "Returns" and hit.page == 1 and "refund" in hit.text
    assert retriever.retrieve(chatbot_id=chatbot_id, question="  ", limit=5, min_score=0.0) == []


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("refund policy", '("refund" AND "policy")'),
        ('"gift card" -expired', '(("gift card")) NOT "expired"'),
        ("tea or coffee", '("tea") OR ("coffee")'),
        ("the of", None),
        ("-only", None),
        ('"', None),
    ],
)
def test_web_search_syntax_in_fts5(query, expected):
    assert fts5_query(query) == expected


def test_deleting_a_chatbot_removes_its_passages_and_keeps_the_index_consistent(new_uow, clock, owner):
    doomed, kept = new_chatbot(new_uow, clock, owner), new_chatbot(new_uow, clock, owner)
    index(new_uow, clock, doomed, PAGE, "Lighthouse keepers log the weather.", "Lighthouse lamps turn nightly.")
    index(new_uow, clock, kept, MANUAL, "A lighthouse guide for visitors.")
    with new_uow() as uow:
        chatbot = uow.chatbots.get(doomed, owner_id=owner.id)
        chatbot.deleting_since = clock.now()  # as `delete_chatbot` marks it for its job
    with new_uow() as uow:
        assert chatbots.purge_chatbot(uow=uow, chatbot_id=doomed) is True
    with new_uow() as uow:
        assert uow.knowledge.count(doomed) == 0
        assert uow.knowledge.index_is_consistent()
    assert [hit.text for hit in search(new_uow, owner, kept, "lighthouse")] == ["A lighthouse guide for visitors."]
