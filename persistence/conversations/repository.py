"""Reads and writes of `conversations` and `conversation_messages`. Every read of a
conversation takes its owner, or `ANY_OWNER` for an administrator, and leaves out those whose
chatbot's deletion was asked for (they are gone with it)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import delete, select, tuple_
from sqlalchemy.orm import Session

from persistence.chatbots.models import Chatbot
from persistence.conversations.models import Conversation, Message
from persistence.database import for_update

ANY_OWNER = object()
"""`get(owner_id=ANY_OWNER)`, `page(owner_id=ANY_OWNER)`: every owner's conversations (administrators)."""


class ConversationRepository:
    """Conversations and their messages within the caller's unit of work."""

    def __init__(self, db: Session) -> None:
        self.db = db

    def add(self, conversation: Conversation) -> None:
        """Stage a new conversation and write it now."""
        self.db.add(conversation)
        self.db.flush()

    def get(
        self, conversation_id: uuid.UUID, *, owner_id: uuid.UUID | object, lock: bool = False
    ) -> tuple[Conversation, Chatbot] | None:
        """The conversation and its chatbot, if `owner_id` owns the conversation (any owner's
        with `ANY_OWNER`) and the chatbot's deletion was not asked for; the conversation's row
        read locked until the unit of work ends with `lock`. None otherwise."""
        statement = (
            select(Conversation, Chatbot)
            .join(Chatbot, Chatbot.id == Conversation.chatbot_id)
            .where(Conversation.id == conversation_id, Chatbot.deleting_since.is_(None))
        )
        if owner_id is not ANY_OWNER:
            statement = statement.where(Conversation.owner_id == owner_id)
        if lock:  # the conversation's row only: questions to other conversations of the chatbot go on
            statement = for_update(self.db, statement).with_for_update(of=Conversation)
        row = self.db.execute(statement.execution_options(populate_existing=True)).one_or_none()
        return (row[0], row[1]) if row is not None else None

    def page(
        self,
        *,
        chatbot_id: uuid.UUID,
        owner_id: uuid.UUID | object,
        limit: int,
        before: tuple[datetime, uuid.UUID] | None = None,
    ) -> list[Conversation]:
        """Up to `limit` conversations with the chatbot of `owner_id` (every owner's with
        `ANY_OWNER`), newest first, after the position `before` (created_at, id)."""
        statement = select(Conversation).where(Conversation.chatbot_id == chatbot_id)
        if owner_id is not ANY_OWNER:
            statement = statement.where(Conversation.owner_id == owner_id)
        if before is not None:
            statement = statement.where(tuple_(Conversation.created_at, Conversation.id) < tuple_(*before))
        order = (Conversation.created_at.desc(), Conversation.id.desc())
        return list(self.db.scalars(statement.order_by(*order).limit(limit)))

    def delete(self, conversation: Conversation) -> None:
        """Delete the conversation and its messages."""
        self.db.execute(
            delete(Message)
            .where(Message.conversation_id == conversation.id)
            .execution_options(synchronize_session=False)
        )
        self.db.delete(conversation)
        self.db.flush()

    def delete_chatbot(self, chatbot_id: uuid.UUID) -> int:
        """Delete every conversation of the chatbot and their messages (its purge); returns how
        many conversations."""
        ids = select(Conversation.id).where(Conversation.chatbot_id == chatbot_id).scalar_subquery()
        self.db.execute(
            delete(Message).where(Message.conversation_id.in_(ids)).execution_options(synchronize_session=False)
        )
        result = self.db.execute(
            delete(Conversation)
            .where(Conversation.chatbot_id == chatbot_id)
            .execution_options(synchronize_session=False)
        )
        return int(getattr(result, "rowcount", 0) or 0)

    def add_message(self, message: Message) -> None:
        """Stage a new message and write it now."""
        self.db.add(message)
        self.db.flush()

    def message(self, conversation_id: uuid.UUID, message_id: uuid.UUID, *, lock: bool = False) -> Message | None:
        """One message of the conversation (read locked with `lock`), or None."""
        statement = select(Message).where(Message.conversation_id == conversation_id, Message.id == message_id)
        if lock:
            statement = for_update(self.db, statement)
        return self.db.scalars(statement.execution_options(populate_existing=True)).one_or_none()

    def messages(self, conversation_id: uuid.UUID, *, limit: int, after: int | None = None) -> list[Message]:
        """Up to `limit` messages of the conversation, oldest first, after `position`."""
        statement = select(Message).where(Message.conversation_id == conversation_id)
        if after is not None:
            statement = statement.where(Message.position > after)
        return list(self.db.scalars(statement.order_by(Message.position).limit(limit)))

    def last_messages(self, conversation_id: uuid.UUID, *, limit: int, before: int) -> list[Message]:
        """The conversation's last `limit` messages before `position`, oldest first (the turns
        an answer is given with)."""
        statement = (
            select(Message)
            .where(Message.conversation_id == conversation_id, Message.position < before)
            .order_by(Message.position.desc())
            .limit(limit)
        )
        return list(reversed(list(self.db.scalars(statement))))

    def all_of(self, owner_id: uuid.UUID) -> list[tuple[Conversation, list[Message]]]:
        """Every conversation of the owner whose chatbot is not being deleted, oldest first,
        each with its messages in order (the data export)."""
        conversations = list(
            self.db.scalars(
                select(Conversation)
                .join(Chatbot, Chatbot.id == Conversation.chatbot_id)
                .where(Conversation.owner_id == owner_id, Chatbot.deleting_since.is_(None))
                .order_by(Conversation.created_at, Conversation.id)
            )
        )
        if not conversations:
            return []
        by_conversation: dict[uuid.UUID, list[Message]] = {conversation.id: [] for conversation in conversations}
        rows = self.db.scalars(
            select(Message)
            .where(Message.conversation_id.in_(list(by_conversation)))
            .order_by(Message.conversation_id, Message.position)
        )
        for message in rows:
            by_conversation[message.conversation_id].append(message)
        return [(conversation, by_conversation[conversation.id]) for conversation in conversations]
