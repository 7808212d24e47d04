"""Reads for visitors of public chatbots (issue 16): a chatbot by its `public_id`, a visitor's
conversation by its token's hash, and the origins a public chatbot allows (for CORS). The
columns are the chatbots' and conversations' own (migration 0014); every read leaves out
chatbots whose deletion was asked for."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from persistence.chatbots.models import Chatbot
from persistence.conversations.models import Conversation
from persistence.database import for_update


class PublicChatbotRepository:
    """What visitors reach, within the caller's unit of work."""

    def __init__(self, db: Session) -> None:
        self.db = db

    def chatbot(self, public_id: str) -> Chatbot | None:
        """The chatbot whose `public_id` is `public_id`, whatever its status and visibility
        (the service decides), unless its deletion was asked for; None otherwise."""
        statement = select(Chatbot).where(Chatbot.public_id == public_id, Chatbot.deleting_since.is_(None))
        return self.db.scalars(statement).one_or_none()

    def visitor_conversation(self, token_hash: str, *, lock: bool = False) -> tuple[Conversation, Chatbot] | None:
        """The visitor's conversation whose token hashes to `token_hash`, and its chatbot (not
        being deleted); the conversation's row read locked with `lock`. None otherwise."""
        statement = (
            select(Conversation, Chatbot)
            .join(Chatbot, Chatbot.id == Conversation.chatbot_id)
            .where(
                Conversation.visitor_token_hash == token_hash,
                Conversation.visitor.is_(True),
                Chatbot.deleting_since.is_(None),
            )
        )
        if lock:
            statement = for_update(self.db, statement).with_for_update(of=Conversation)
        row = self.db.execute(statement.execution_options(populate_existing=True)).one_or_none()
        return (row[0], row[1]) if row is not None else None

    def chatbot_of_visitor_conversation(self, conversation_id: uuid.UUID) -> Chatbot | None:
        """The chatbot of the visitor's conversation `conversation_id` (not being deleted), or None."""
        statement = (
            select(Chatbot)
            .join(Conversation, Conversation.chatbot_id == Chatbot.id)
            .where(
                Conversation.id == conversation_id,
                Conversation.visitor.is_(True),
                Chatbot.deleting_since.is_(None),
            )
        )
        return self.db.scalars(statement).one_or_none()
