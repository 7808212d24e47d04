"""A chatbot's knowledge index (issue 15): the passages of its sources, and search over them.

* **Passages** are chunks of a few hundred words (`services.document_passages.chunk_passages`)
  that keep their source: a crawled page's URL and title, or a document's title, page number
  and heading. Indexing a source replaces its passages in one transaction, so a search sees the
  old ones or the new ones, never a mix.
* **Search** is full text (`persistence.knowledge.repository`: PostgreSQL tsvector + GIN with
  `websearch_to_tsquery`, SQLite FTS5 with `bm25()`), scores in [0, 1), a highlighted snippet
  per hit. `GET /api/v1/chatbots/{chatbot_id}/search` answers it: the retrieval-only endpoint
  users of other platforms ask for (anything-llm#881).
* **The retriever is a port** (`Retriever`): conversations ask it for the passages that answer a
  question; `FullTextRetriever` is today's, a vector index can take its place later.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

from persistence.accounts.models import User
from persistence.knowledge.models import PASSAGE_SOURCE_TYPES
from persistence.knowledge.repository import PassageHit, new_passage
from persistence.unit_of_work import UnitOfWork
from services import chatbots
from services.clock import Clock
from services.errors import InvalidInput

MAX_QUERY_LENGTH = 500
"""The longest search query, in characters (the contract says the same)."""


class PassageDraft(Protocol):
    """A chunk to index: what `services.document_passages.Passage` has."""

    @property
    def text(self) -> str: ...

    @property
    def words(self) -> int: ...

    @property
    def page(self) -> int | None: ...

    @property
    def heading(self) -> str | None: ...


@dataclass(frozen=True)
class KnowledgeSource:
    """Where passages come from.

    Attributes:
        type: ``web_page`` (a crawled page) or ``document`` (an uploaded file).
        id: the page's or the document's id.
        title: the page's or document's title, if any.
        url: the page's URL (None for a document).
    """

    type: str
    id: uuid.UUID
    title: str | None = None
    url: str | None = None


def index_source(
    *, uow: UnitOfWork, clock: Clock, chatbot_id: uuid.UUID, source: KnowledgeSource, passages: Sequence[PassageDraft]
) -> int:
    """Make `passages` (in order) the source's passages in the chatbot's index, replacing what
    it had; returns how many. Called by the crawl and document jobs in their unit of work.

    Raises:
        ValueError: an unknown source type (a bug of the calling area).
    """
    if source.type not in PASSAGE_SOURCE_TYPES:
        raise ValueError(f"unknown knowledge source type {source.type!r}")
    now = clock.now()
    rows = [
        new_passage(
            chatbot_id=chatbot_id,
            source_type=source.type,
            source_id=source.id,
            position=position,
            text=draft.text,
            words=draft.words,
            title=source.title[:500] if source.title else None,
            url=source.url,
            page=draft.page,
            heading=draft.heading[:500] if draft.heading else None,
            created_at=now,
        )
        for position, draft in enumerate(passages)
        if draft.text.strip()
    ]
    uow.knowledge.replace_source(chatbot_id=chatbot_id, source_type=source.type, source_id=source.id, passages=rows)
    return len(rows)


def remove_source(*, uow: UnitOfWork, chatbot_id: uuid.UUID, source_type: str, source_id: uuid.UUID) -> int:
    """Drop a source's passages from the index (a deleted page, document or website); returns
    how many."""
    return uow.knowledge.delete_source(chatbot_id=chatbot_id, source_type=source_type, source_id=source_id)


def _checked_query(query: str) -> str:
    stripped = query.strip()
    if not stripped:
        raise InvalidInput("Give words to search for.", pointer="/q")
    if len(stripped) > MAX_QUERY_LENGTH:
        raise InvalidInput(f"A search is at most {MAX_QUERY_LENGTH} characters.", pointer="/q")
    return stripped


def search(*, uow: UnitOfWork, caller: User, chatbot_id: uuid.UUID, query: str, limit: int) -> list[PassageHit]:
    """The caller's chatbot's passages matching `query` (web-search syntax: words all required,
    "quoted phrases", ``-excluded``, ``or``), best first, at most `limit` (1 to 50), none under
    the chatbot's `min_score`.

    Raises:
        NotFound: no such chatbot of the caller (administrators: of anyone).
        InvalidInput: an empty or over-long query (pointer ``/q``).
    """
    chatbot = chatbots.get_chatbot(uow=uow, caller=caller, chatbot_id=chatbot_id)
    return uow.knowledge.search(
        chatbot_id=chatbot.id, query=_checked_query(query), limit=limit, min_score=chatbot.min_score
    )


class Retriever(Protocol):
    """Finds the passages that may answer a question (conversations use it)."""

    def retrieve(self, *, chatbot_id: uuid.UUID, question: str, limit: int, min_score: float) -> list[PassageHit]:
        """At most `limit` passages of the chatbot, best first, none scoring under `min_score`."""
        ...


class FullTextRetriever:
    """The full-text index as a `Retriever`: a passage matching any of the question's words
    counts, ranked by how well it matches (a question is not a search with every word required).

    Args:
        unit_of_work: makes the unit of work each retrieval reads in (a `UnitOfWork`, or a
            context around one that goes on after the retrieval: a request's own).
    """

    def __init__(self, unit_of_work: Callable[[], AbstractContextManager[UnitOfWork]]) -> None:
        self.unit_of_work = unit_of_work

    def retrieve(self, *, chatbot_id: uuid.UUID, question: str, limit: int, min_score: float) -> list[PassageHit]:
        """See `Retriever.retrieve`; an empty question finds nothing."""
        if not question.strip():
            return []
        with self.unit_of_work() as uow:
            return uow.knowledge.search(
                chatbot_id=chatbot_id,
                query=question[:MAX_QUERY_LENGTH],
                limit=limit,
                min_score=min_score,
                any_terms=True,
            )
