"""Reads and writes of a chatbot's passages, and the full-text search over them (issue 15).

PostgreSQL: the generated `search_vector` (English stemming; the passage's text weighs more
than its title and heading) with its GIN index, queried with `websearch_to_tsquery` (web-search
syntax: words all required, "quoted phrases", ``-excluded`` words, ``or``), ranked by
`ts_rank` and highlighted by `ts_headline`. SQLite: the FTS5 table `knowledge_passages_fts`
(Porter stemming), the same syntax translated into an FTS5 query (`fts5_query`; English stop
words dropped as PostgreSQL's english configuration drops them), ranked by `bm25()` and
highlighted by `snippet()`. Both scores are mapped into [0, 1) as ``rank / (rank + 1)``
(PostgreSQL's normalisation 32), so a chatbot's `min_score` means the same on both.
"""

from __future__ import annotations

import html
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Float, Integer, String, Text, Uuid, bindparam, delete, func, select, text, update
from sqlalchemy.exc import DatabaseError
from sqlalchemy.orm import Session
from sqlalchemy.types import TypeEngine

from persistence.chatbots.models import Chatbot
from persistence.knowledge.models import Passage

MARK_START, MARK_END = "\x02", "\x03"
"""What the database marks matches with; `PassageHit.snippet` turns them into ``<mark>`` tags
after escaping the text, so a passage's own markup can never pass as HTML."""

ENGLISH_STOP_WORDS = frozenset(
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
        "did",
        "do",
        "does",
        "doing",
        "don",
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
        "herself",
        "him",
        "himself",
        "his",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "itself",
        "just",
        "me",
        "more",
        "most",
        "my",
        "myself",
        "no",
        "nor",
        "not",
        "now",
        "of",
        "off",
        "on",
        "once",
        "only",
        "or",
        "other",
        "our",
        "ours",
        "ourselves",
        "out",
        "over",
        "own",
        "s",
        "same",
        "she",
        "should",
        "so",
        "some",
        "such",
        "t",
        "than",
        "that",
        "the",
        "their",
        "theirs",
        "them",
        "themselves",
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
        "you",
        "your",
        "yours",
        "yourself",
        "yourselves",
    ]
)
"""PostgreSQL's english stop words (Snowball's list), dropped from SQLite queries for parity."""

_TOKEN = re.compile(r'-?"[^"]*"?|\S+')
_WORD = re.compile(r"\w+", re.UNICODE)


def _phrase(words: Sequence[str]) -> str:
    return '"' + " ".join(words) + '"'  # words are \w+ only: no quote to escape


def fts5_query(query: str, *, any_terms: bool = False) -> str | None:
    """Translate web-search syntax (what `websearch_to_tsquery` reads) into an FTS5 MATCH
    expression, or None when nothing in it can match (no word left, or only exclusions).

    Every unquoted word is required; ``"a phrase"`` is a phrase; ``-word`` excludes; ``or``
    between words makes alternatives. With `any_terms`, every word is an alternative (for a
    question put to the retriever rather than a search typed by a person). Stop words are
    dropped outside phrases."""
    if any_terms:
        words = [w for w in _WORD.findall(query.lower()) if w not in ENGLISH_STOP_WORDS]
        return " OR ".join(_phrase([w]) for w in dict.fromkeys(words)) or None
    groups: list[list[str]] = [[]]
    excluded: list[str] = []
    for token in _TOKEN.findall(query.lower()):
        negative = token.startswith("-")
        body = token[1:] if negative else token
        quoted = body.startswith('"')
        if not quoted and not negative and body == "or":
            groups.append([])
            continue
        words = _WORD.findall(body)
        if not quoted:
            words = [w for w in words if w not in ENGLISH_STOP_WORDS]
        if not words:
            continue
        terms = [_phrase(words)] if quoted else [_phrase([w]) for w in words]
        (excluded if negative else groups[-1]).extend(terms)
    alternatives = ["(" + " AND ".join(group) + ")" for group in groups if group]
    if not alternatives:
        return None
    expression = " OR ".join(alternatives)
    if excluded:
        expression = f"({expression})" + "".join(f" NOT {term}" for term in excluded)
    return expression


@dataclass(frozen=True)
class PassageHit:
    """One search result: a passage, its score in [0, 1) and a highlighted snippet (HTML-escaped
    text with ``<mark>`` around the matches)."""

    id: uuid.UUID
    source_type: str
    source_id: uuid.UUID
    position: int
    text: str
    words: int
    title: str | None
    url: str | None
    page: int | None
    heading: str | None
    score: float
    snippet: str


_HIT_COLUMNS: dict[str, TypeEngine[Any]] = {
    "id": Uuid(),
    "source_type": String(),
    "source_id": Uuid(),
    "position": Integer(),
    "text": Text(),
    "words": Integer(),
    "title": String(),
    "url": String(),
    "page": Integer(),
    "heading": String(),
    "score": Float(),
    "snippet": Text(),
}

_POSTGRES_SEARCH = """
SELECT p.id, p.source_type, p.source_id, p.position, p.text, p.words, p.title, p.url, p.page,
       p.heading, hit.score,
       ts_headline('english', p.text, hit.query, 'StartSel=' || chr(2) || ', StopSel=' || chr(3)
                   || ', MaxWords=35, MinWords=15, MaxFragments=2, FragmentDelimiter=" … "') AS snippet
FROM (
    SELECT p.seq, q.query, ts_rank(p.search_vector, q.query, 32) AS score
    FROM knowledge_passages p, ({query}) AS q(query)
    WHERE p.chatbot_id = :chatbot_id AND p.search_vector @@ q.query
      AND ts_rank(p.search_vector, q.query, 32) >= :min_score
    ORDER BY score DESC, p.seq
    LIMIT :limit
) AS hit
JOIN knowledge_passages p ON p.seq = hit.seq
ORDER BY hit.score DESC, p.seq
"""
_POSTGRES_WEBSEARCH = "SELECT websearch_to_tsquery('english', :query)"
_POSTGRES_ANY_TERMS = "SELECT replace(plainto_tsquery('english', :query)::text, '&', '|')::tsquery"

_SQLITE_SEARCH = """
SELECT p.id, p.source_type, p.source_id, p.position, p.text, p.words, p.title, p.url, p.page,
       p.heading, -f.rank / (1.0 - f.rank) AS score,
       snippet(knowledge_passages_fts, 0, char(2), char(3), ' … ', 24) AS snippet
FROM knowledge_passages_fts AS f
JOIN knowledge_passages p ON p.seq = f.rowid
WHERE knowledge_passages_fts MATCH :match AND p.chatbot_id = :chatbot_id AND f.rank <= :max_rank
ORDER BY f.rank
LIMIT :limit
"""
"""FTS5 sorts by its `rank` column (bm25) itself and SQLite stops at the limit, so `snippet()`
runs for the rows answered only, not for every match of a common word."""


INTEGRITY_CHECK = text("INSERT INTO knowledge_passages_fts(knowledge_passages_fts) VALUES ('integrity-check')")
"""FTS5's own check that its index matches the content table (raises when it does not)."""


def _snippet(raw: str | None) -> str:
    escaped = html.escape(raw or "", quote=False)
    return escaped.replace(MARK_START, "<mark>").replace(MARK_END, "</mark>")


class KnowledgeRepository:
    """`knowledge_passages` within the caller's unit of work. Every read takes the chatbot."""

    def __init__(self, db: Session) -> None:
        self.db = db

    @property
    def _postgres(self) -> bool:
        return self.db.get_bind().dialect.name == "postgresql"

    def replace_source(
        self, *, chatbot_id: uuid.UUID, source_type: str, source_id: uuid.UUID, passages: Sequence[Passage]
    ) -> None:
        """Make `passages` the source's only passages (a re-indexed page or document drops the
        old ones in the same transaction, so a search never sees both or neither), and bump the
        chatbot's `knowledge_version` in that transaction (`bump_version`)."""
        self.bump_version(chatbot_id)
        self._delete_source(chatbot_id=chatbot_id, source_type=source_type, source_id=source_id)
        self.db.add_all(passages)
        self.db.flush()

    def delete_source(self, *, chatbot_id: uuid.UUID, source_type: str, source_id: uuid.UUID) -> int:
        """Delete one source's passages and bump the chatbot's `knowledge_version` in the same
        transaction (`bump_version`); returns how many passages went."""
        self.bump_version(chatbot_id)
        return self._delete_source(chatbot_id=chatbot_id, source_type=source_type, source_id=source_id)

    def bump_version(self, chatbot_id: uuid.UUID) -> None:
        """Count one more change of the chatbot's knowledge (`Chatbot.knowledge_version`, what
        cached answers are keyed by: issue 18). Every writer of passages calls it, in the
        transaction of its change and *before* touching passages, so every writer takes the
        chatbot's row lock first and then the passages' (one order, no deadlock between them)."""
        self.db.execute(
            update(Chatbot)
            .where(Chatbot.id == chatbot_id)
            .values(knowledge_version=Chatbot.knowledge_version + 1)
            .execution_options(synchronize_session=False)
        )

    def knowledge_version(self, chatbot_id: uuid.UUID) -> int | None:
        """The chatbot's `knowledge_version` as committed (read afresh), or None without it."""
        value = self.db.scalar(select(Chatbot.knowledge_version).where(Chatbot.id == chatbot_id))
        return None if value is None else int(value)

    def _delete_source(self, *, chatbot_id: uuid.UUID, source_type: str, source_id: uuid.UUID) -> int:
        result = self.db.execute(
            delete(Passage)
            .where(
                Passage.chatbot_id == chatbot_id,
                Passage.source_type == source_type,
                Passage.source_id == source_id,
            )
            .execution_options(synchronize_session=False)
        )
        return int(getattr(result, "rowcount", 0) or 0)

    def delete_chatbot(self, chatbot_id: uuid.UUID) -> int:
        """Delete every passage of the chatbot (its deletion); returns how many. Explicit rather
        than left to the foreign key's cascade, so SQLite's FTS5 triggers surely see each row."""
        result = self.db.execute(
            delete(Passage).where(Passage.chatbot_id == chatbot_id).execution_options(synchronize_session=False)
        )
        return int(getattr(result, "rowcount", 0) or 0)

    def index_is_consistent(self) -> bool:
        """Whether the full-text index agrees with the passages (SQLite: FTS5's integrity check;
        PostgreSQL's generated column cannot disagree)."""
        if self._postgres:
            return True
        try:
            self.db.execute(INTEGRITY_CHECK)
        except DatabaseError:
            return False
        return True

    def of_source(self, *, chatbot_id: uuid.UUID, source_type: str, source_id: uuid.UUID) -> list[Passage]:
        """One source's passages in their order."""
        return list(
            self.db.scalars(
                select(Passage)
                .where(
                    Passage.chatbot_id == chatbot_id,
                    Passage.source_type == source_type,
                    Passage.source_id == source_id,
                )
                .order_by(Passage.position)
            )
        )

    def count_by_chatbot(self, chatbot_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, int]:
        """How many passages each of the chatbots' indexes holds (one grouped query; a chatbot
        with none is left out)."""
        if not chatbot_ids:
            return {}
        rows = self.db.execute(
            select(Passage.chatbot_id, func.count())
            .where(Passage.chatbot_id.in_(list(chatbot_ids)))
            .group_by(Passage.chatbot_id)
        )
        return {chatbot_id: int(count) for chatbot_id, count in rows}

    def count(self, chatbot_id: uuid.UUID) -> int:
        """How many passages the chatbot's index holds."""
        return int(self.db.scalar(select(func.count()).where(Passage.chatbot_id == chatbot_id)) or 0)

    def search(
        self, *, chatbot_id: uuid.UUID, query: str, limit: int, min_score: float = 0.0, any_terms: bool = False
    ) -> list[PassageHit]:
        """The chatbot's passages that match `query` (web-search syntax, see the module), best
        first, at most `limit`, none scoring under `min_score`. With `any_terms`, a passage
        matching any word counts (ranked by how well it matches): for questions."""
        parameters: dict[str, Any] = {"chatbot_id": chatbot_id, "limit": limit, "min_score": min_score}
        if self._postgres:
            sql = _POSTGRES_SEARCH.format(query=_POSTGRES_ANY_TERMS if any_terms else _POSTGRES_WEBSEARCH)
            parameters["query"] = query
        else:
            match = fts5_query(query, any_terms=any_terms)
            if match is None:
                return []
            sql, parameters["match"] = _SQLITE_SEARCH, match
            # score = s / (1 + s) with s = -rank, so score >= m exactly when rank <= -m / (1 - m)
            parameters["max_rank"] = -min_score / (1.0 - min_score) if min_score < 1 else float("-inf")
        statement = text(sql).bindparams(bindparam("chatbot_id", type_=Uuid())).columns(**_HIT_COLUMNS)
        rows = self.db.execute(statement, parameters).mappings()
        return [
            PassageHit(**{**row, "score": float(row["score"]), "snippet": _snippet(row["snippet"])}) for row in rows
        ]


def new_passage(
    *,
    chatbot_id: uuid.UUID,
    source_type: str,
    source_id: uuid.UUID,
    position: int,
    text: str,
    words: int,
    created_at: datetime,
    title: str | None = None,
    url: str | None = None,
    page: int | None = None,
    heading: str | None = None,
) -> Passage:
    """A new `Passage` row (its `seq` is given by the database)."""
    return Passage(
        id=uuid.uuid4(),
        chatbot_id=chatbot_id,
        source_type=source_type,
        source_id=source_id,
        position=position,
        text=text,
        words=words,
        title=title,
        url=url,
        page=page,
        heading=heading,
        created_at=created_at,
    )
