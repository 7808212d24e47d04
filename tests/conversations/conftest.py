"""Fixtures and helpers of the conversation tests: an owner's active chatbot with passages in its
knowledge index (indexed directly, as a crawl or a document job would), and a conversation."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

import jobs as job_kinds
from persistence.accounts.models import User
from persistence.chatbots.models import Chatbot
from persistence.conversations.models import Message
from persistence.unit_of_work import UnitOfWork
from services import chatbots, conversations, knowledge
from services.audit import RequestMeta
from services.clock import FrozenClock
from services.jobs import JobEngine
from tests.helpers import T0, RecordingQueue

RETURNS_PAGE = (
    "Our shop accepts returns of unused items within 30 days. "
    "Refunds are paid within 14 days of the return reaching our warehouse. "
    "Gift cards cannot be refunded."
)
SHIPPING_MANUAL = (
    "Parcels leave the warehouse every weekday. Shipping to Europe takes three to five days. "
    "Express shipping costs 12 euros."
)


@dataclass(frozen=True)
class Chunk:
    """A passage to index (what `services.knowledge.PassageDraft` asks for)."""

    text: str
    words: int
    page: int | None = None
    heading: str | None = None


def index(
    new_uow: Callable[[], UnitOfWork], chatbot_id: uuid.UUID, source: knowledge.KnowledgeSource, text: str, **chunk: Any
) -> None:
    """Put one passage of `source` into the chatbot's index."""
    with new_uow() as uow:
        knowledge.index_source(
            uow=uow,
            clock=FrozenClock(T0),
            chatbot_id=chatbot_id,
            source=source,
            passages=[Chunk(text, len(text.split()), **chunk)],
        )


def stored_messages(new_uow: Callable[[], UnitOfWork], conversation_id: uuid.UUID) -> list[Message]:
    """Every message of the conversation, in order, read in a unit of work of its own."""
    with new_uow() as uow:
        messages = uow.conversations.messages(conversation_id, limit=1000)
        uow.session.expunge_all()
        return messages


@pytest.fixture
def engine(queue: RecordingQueue) -> JobEngine:
    """Every declared kind over a queue that records deliveries (no worker runs them)."""
    return JobEngine(kinds=job_kinds.discover(), queue=queue, random=lambda: 0.0)


@dataclass(frozen=True)
class Setup:
    owner: User
    chatbot: Chatbot
    conversation_id: uuid.UUID
    page: knowledge.KnowledgeSource
    manual: knowledge.KnowledgeSource


@pytest.fixture
def setup(owner: User, new_uow, clock) -> Setup:
    """An active chatbot of `owner` knowing a returns page and a shipping manual, and an empty
    conversation with it."""
    meta = RequestMeta()
    with new_uow() as uow:
        chatbot = chatbots.create_chatbot(uow=uow, clock=clock, caller=owner, data={"name": "Shop"}, meta=meta)
        chatbots.update_chatbot(
            uow=uow,
            clock=clock,
            caller=owner,
            chatbot_id=chatbot.id,
            changes={"status": "active"},
            expected_versions=None,
            meta=meta,
        )
        conversation = conversations.create_conversation(uow=uow, clock=clock, caller=owner, chatbot_id=chatbot.id)
        uow.session.expunge_all()
    page = knowledge.KnowledgeSource("web_page", uuid.uuid4(), title="Returns", url="https://shop.example/returns")
    manual = knowledge.KnowledgeSource("document", uuid.uuid4(), title="Shipping manual")
    index(new_uow, chatbot.id, page, RETURNS_PAGE)
    index(new_uow, chatbot.id, manual, SHIPPING_MANUAL, page=2, heading="Shipping")
    return Setup(owner, chatbot, conversation.id, page, manual)
