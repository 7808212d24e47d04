"""Reads and writes of `documents`. Reads of a user's documents go through their chatbot, which
the service has already checked the caller may see (`services.chatbots.get_chatbot`); the
processing job reads a document by its id alone."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select, tuple_
from sqlalchemy.orm import Session

from persistence.chatbots.models import Chatbot
from persistence.database import for_update
from persistence.documents.models import Document


class DocumentRepository:
    """Documents within the caller's unit of work."""

    def __init__(self, db: Session) -> None:
        self.db = db

    def add(self, document: Document) -> None:
        """Stage a new document and write it now."""
        self.db.add(document)
        self.db.flush()

    def get(self, document_id: uuid.UUID, *, chatbot_id: uuid.UUID, lock: bool = False) -> Document | None:
        """The chatbot's document with this id (read locked with `lock`), or None."""
        statement = select(Document).where(Document.id == document_id, Document.chatbot_id == chatbot_id)
        if lock:
            statement = for_update(self.db, statement)
        return self.db.scalars(statement.execution_options(populate_existing=True)).one_or_none()

    def get_for_processing(self, document_id: uuid.UUID) -> Document | None:
        """The document, read locked, if it exists and its chatbot's deletion was not asked for
        (the processing job), else None."""
        statement = for_update(
            self.db,
            select(Document)
            .join(Chatbot, Chatbot.id == Document.chatbot_id)
            .where(Document.id == document_id, Chatbot.deleting_since.is_(None)),
        )
        return self.db.scalars(statement.execution_options(populate_existing=True)).one_or_none()

    def page(
        self,
        *,
        chatbot_id: uuid.UUID,
        limit: int,
        before: tuple[datetime, uuid.UUID] | None = None,
        status: str | None = None,
    ) -> list[Document]:
        """Up to `limit` of the chatbot's documents (only those in `status`, when given), newest
        first, after the position `before` (created_at, id)."""
        statement = select(Document).where(Document.chatbot_id == chatbot_id)
        if status is not None:
            statement = statement.where(Document.status == status)
        if before is not None:
            statement = statement.where(tuple_(Document.created_at, Document.id) < tuple_(*before))
        order = (Document.created_at.desc(), Document.id.desc())
        return list(self.db.scalars(statement.order_by(*order).limit(limit)))

    def of_chatbot(self, chatbot_id: uuid.UUID) -> list[Document]:
        """Every document of the chatbot, oldest first."""
        statement = select(Document).where(Document.chatbot_id == chatbot_id)
        return list(self.db.scalars(statement.order_by(Document.created_at, Document.id)))

    def of_owner(self, owner_id: uuid.UUID) -> list[Document]:
        """Every document of the owner's chatbots not being deleted, oldest first (the data export)."""
        statement = (
            select(Document)
            .join(Chatbot, Chatbot.id == Document.chatbot_id)
            .where(Document.owner_id == owner_id, Chatbot.deleting_since.is_(None))
        )
        return list(self.db.scalars(statement.order_by(Document.created_at, Document.id)))

    def key_in_use(self, sha256: str) -> bool:
        """Whether any document names the stored file `sha256`."""
        return self.db.scalar(select(func.count()).select_from(Document).where(Document.sha256 == sha256)) != 0

    def keys_in_use(self, keys: Sequence[str]) -> set[str]:
        """Which of the stored files `keys` (SHA-256s) some document names (one query per 500)."""
        found: set[str] = set()
        unique = sorted(set(keys))
        for start in range(0, len(unique), 500):
            batch = unique[start : start + 500]
            found.update(self.db.scalars(select(Document.sha256).where(Document.sha256.in_(batch)).distinct()))
        return found

    def status_counts(self, chatbot_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, dict[str, int]]:
        """How many documents each chatbot has in each status (one query): chatbot id → status →
        count; chatbots without documents are left out."""
        if not chatbot_ids:
            return {}
        statement = (
            select(Document.chatbot_id, Document.status, func.count())
            .where(Document.chatbot_id.in_(list(chatbot_ids)))
            .group_by(Document.chatbot_id, Document.status)
        )
        counts: dict[uuid.UUID, dict[str, int]] = {}
        for chatbot_id, status, count in self.db.execute(statement):
            counts.setdefault(chatbot_id, {})[status] = int(count)
        return counts

    def delete(self, document: Document) -> None:
        """Delete the document's row."""
        self.db.delete(document)
        self.db.flush()
