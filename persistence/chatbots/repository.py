"""Reads and writes of `chatbots`. Every read takes the owner, or `ANY_OWNER` for an
administrator; a chatbot whose deletion was asked for (`deleting_since`) is read by nothing but
the deletion job."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import func, select, tuple_
from sqlalchemy.orm import Session

from persistence.accounts.models import User
from persistence.chatbots.models import Chatbot
from persistence.database import for_update

ANY_OWNER = object()
"""`page(owner_id=ANY_OWNER)`, `get(owner_id=ANY_OWNER)`: every owner's chatbots (administrators)."""


class ChatbotRepository:
    """Chatbots within the caller's unit of work."""

    def __init__(self, db: Session) -> None:
        self.db = db

    def add(self, chatbot: Chatbot) -> None:
        """Stage a new chatbot and write it now."""
        self.db.add(chatbot)
        self.db.flush()

    def get(self, chatbot_id: uuid.UUID, *, owner_id: uuid.UUID | object, lock: bool = False) -> Chatbot | None:
        """The chatbot if `owner_id` owns it (any owner's with `ANY_OWNER`) and its deletion was
        not asked for; read locked until the unit of work ends with `lock`. None otherwise."""
        statement = select(Chatbot).where(Chatbot.id == chatbot_id, Chatbot.deleting_since.is_(None))
        if owner_id is not ANY_OWNER:
            statement = statement.where(Chatbot.owner_id == owner_id)
        if lock:
            statement = for_update(self.db, statement)
        return self.db.scalars(statement.execution_options(populate_existing=True)).one_or_none()

    def get_for_deletion(self, chatbot_id: uuid.UUID) -> Chatbot | None:
        """The chatbot, whatever its state, read locked (the deletion job), or None."""
        statement = for_update(self.db, select(Chatbot).where(Chatbot.id == chatbot_id))
        return self.db.scalars(statement.execution_options(populate_existing=True)).one_or_none()

    def page(
        self, *, owner_id: uuid.UUID | object, limit: int, before: tuple[datetime, uuid.UUID] | None = None
    ) -> list[Chatbot]:
        """Up to `limit` chatbots of `owner_id` (every owner's with `ANY_OWNER`), newest first,
        after the position `before` (created_at, id)."""
        statement = select(Chatbot).where(Chatbot.deleting_since.is_(None))
        if owner_id is not ANY_OWNER:
            statement = statement.where(Chatbot.owner_id == owner_id)
        if before is not None:
            statement = statement.where(tuple_(Chatbot.created_at, Chatbot.id) < tuple_(*before))
        order = (Chatbot.created_at.desc(), Chatbot.id.desc())
        return list(self.db.scalars(statement.order_by(*order).limit(limit)))

    def lock_owner(self, owner_id: uuid.UUID) -> None:
        """Hold the owner's account row locked until the unit of work ends (PostgreSQL: ``FOR
        UPDATE``; SQLite: the write lock), so two creations of one owner at once are counted
        one after the other against the cap."""
        self.db.execute(for_update(self.db, select(User.id).where(User.id == owner_id)))

    def count(self, owner_id: uuid.UUID) -> int:
        """How many chatbots the owner has (those being deleted left out, as every read does)."""
        statement = (
            select(func.count())
            .select_from(Chatbot)
            .where(Chatbot.owner_id == owner_id, Chatbot.deleting_since.is_(None))
        )
        return int(self.db.scalar(statement) or 0)

    def all_of(self, owner_id: uuid.UUID) -> list[Chatbot]:
        """Every chatbot of the owner not being deleted, oldest first (the data export)."""
        statement = select(Chatbot).where(Chatbot.owner_id == owner_id, Chatbot.deleting_since.is_(None))
        return list(self.db.scalars(statement.order_by(Chatbot.created_at, Chatbot.id)))

    def delete(self, chatbot: Chatbot) -> None:
        """Delete the chatbot's row."""
        self.db.delete(chatbot)
        self.db.flush()
