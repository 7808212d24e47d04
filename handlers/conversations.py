"""Operations of the `conversations` tag (issue 16): a user's conversations with a chatbot at
``/api/v1/chatbots/{chatbot_id}/conversations`` and ``/api/v1/conversations…``, questions
answered from the chatbot's knowledge with citations, and feedback on answers. Owners see their
own (another user's is 404); administrators see every one."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from handlers.etags import etag, expected_versions, matches_current
from handlers.responses import json_answer, no_content, not_modified, timestamp
from server.integration.context import clock, header, job_engine, principal, request_meta, unit_of_work
from server.integration.idempotency import idempotent
from services import conversations

if TYPE_CHECKING:
    from persistence.conversations.models import Conversation, Message
    from persistence.unit_of_work import UnitOfWork


def conversation_representation(conversation: Conversation) -> dict[str, Any]:
    """The contract's `Conversation`."""
    return {
        "id": str(conversation.id),
        "chatbot_id": str(conversation.chatbot_id),
        "owner_id": str(conversation.owner_id),
        "title": conversation.title,
        "message_count": conversation.message_count,
        "version": conversation.version,
        "created_at": timestamp(conversation.created_at),
        "updated_at": timestamp(conversation.updated_at),
        "last_message_at": timestamp(conversation.last_message_at),
    }


def message_representation(message: Message) -> dict[str, Any]:
    """The contract's `Message` (a question's answer fields are null)."""
    feedback = None
    if message.feedback_rating is not None:
        feedback = {
            "rating": message.feedback_rating,
            "comment": message.feedback_comment,
            "created_at": timestamp(message.feedback_at),
        }
    return {
        "id": str(message.id),
        "conversation_id": str(message.conversation_id),
        "role": message.role,
        "content": message.content,
        "reply_to": str(message.reply_to) if message.reply_to else None,
        "citations": list(message.citations),
        "usage": conversations.representable_usage(message.usage),
        "provider": message.provider,
        "latency_ms": message.latency_ms,
        "finish_reason": message.finish_reason,
        "fallback": message.fallback,
        "feedback": feedback,
        "created_at": timestamp(message.created_at),
    }


def _export_conversations(user_id: uuid.UUID) -> list[dict[str, Any]]:
    return [
        {
            "conversation": conversation_representation(conversation),
            "messages": [message_representation(message) for message in messages],
        }
        for conversation, messages in conversations.exported_conversations(uow=unit_of_work(), owner_id=user_id)
    ]


EXPORT_SECTIONS = {"conversations": _export_conversations}
"""The caller's conversations and their messages in their data export (`handlers.data_export`)."""


def _conversation_answer(conversation: Conversation, status: int = 200, headers: dict[str, str] | None = None) -> tuple:
    return json_answer(
        conversation_representation(conversation), status, {"ETag": etag(conversation.version), **(headers or {})}
    )


@contextmanager
def _request_unit() -> Iterator[UnitOfWork]:
    """The request's own unit of work, for every step of a JSON answer: committed once, with
    the idempotency record, when the request succeeds (`server.app`)."""
    yield unit_of_work()


@idempotent
def create_conversation(chatbot_id: str, body: dict[str, Any]) -> tuple:
    """POST /api/v1/chatbots/{chatbot_id}/conversations — 201 with the conversation, its Location and ETag."""
    conversation = conversations.create_conversation(
        uow=unit_of_work(),
        clock=clock(),
        caller=principal(),
        chatbot_id=uuid.UUID(chatbot_id),
        title=body.get("title"),
    )
    return _conversation_answer(conversation, 201, {"Location": f"/api/v1/conversations/{conversation.id}"})


def list_conversations(chatbot_id: str, limit: int = 20, cursor: str | None = None) -> tuple:
    """GET /api/v1/chatbots/{chatbot_id}/conversations — newest first."""
    result = conversations.list_conversations(
        uow=unit_of_work(), caller=principal(), chatbot_id=uuid.UUID(chatbot_id), limit=limit, cursor=cursor
    )
    return json_answer(
        {"items": [conversation_representation(item) for item in result.items], "next_cursor": result.next_cursor}
    )


def get_conversation(conversation_id: str) -> tuple:
    """GET /api/v1/conversations/{conversation_id} — 304 when If-None-Match names its ETag."""
    conversation, _chatbot = conversations.get_conversation(
        uow=unit_of_work(), caller=principal(), conversation_id=uuid.UUID(conversation_id)
    )
    if matches_current(header("If-None-Match"), conversation.version):
        return not_modified({"ETag": etag(conversation.version)})
    return _conversation_answer(conversation)


def update_conversation(conversation_id: str, body: dict[str, Any]) -> tuple:
    """PATCH /api/v1/conversations/{conversation_id} — the title; If-Match honoured."""
    conversation = conversations.rename_conversation(
        uow=unit_of_work(),
        clock=clock(),
        caller=principal(),
        conversation_id=uuid.UUID(conversation_id),
        title=body.get("title"),
        expected_versions=expected_versions(header("If-Match")),
    )
    return _conversation_answer(conversation)


def delete_conversation(conversation_id: str) -> tuple:
    """DELETE /api/v1/conversations/{conversation_id} — 204; If-Match honoured."""
    conversations.delete_conversation(
        uow=unit_of_work(),
        clock=clock(),
        caller=principal(),
        conversation_id=uuid.UUID(conversation_id),
        expected_versions=expected_versions(header("If-Match")),
        meta=request_meta(),
    )
    return no_content()


def list_messages(conversation_id: str, limit: int = 20, cursor: str | None = None) -> tuple:
    """GET /api/v1/conversations/{conversation_id}/messages — oldest first."""
    result = conversations.list_messages(
        uow=unit_of_work(), caller=principal(), conversation_id=uuid.UUID(conversation_id), limit=limit, cursor=cursor
    )
    return json_answer(
        {"items": [message_representation(item) for item in result.items], "next_cursor": result.next_cursor}
    )


@idempotent
def send_message(conversation_id: str, body: dict[str, Any]) -> tuple:
    """POST /api/v1/conversations/{conversation_id}/messages — 201 with the stored answer (the
    answer's event stream drained; a streaming form of this operation forwards the events)."""
    message = conversations.answer(
        units=_request_unit,
        clock=clock(),
        config=conversations.config_of(job_engine()),
        caller=principal(),
        conversation_id=uuid.UUID(conversation_id),
        content=body["content"],
    )
    return json_answer(message_representation(message), 201)


def give_feedback(conversation_id: str, message_id: str, body: dict[str, Any]) -> tuple:
    """POST /api/v1/conversations/{conversation_id}/messages/{message_id}/feedback — the answer with the feedback."""
    message = conversations.give_feedback(
        uow=unit_of_work(),
        clock=clock(),
        caller=principal(),
        conversation_id=uuid.UUID(conversation_id),
        message_id=uuid.UUID(message_id),
        rating=body["rating"],
        comment=body.get("comment"),
    )
    return json_answer(message_representation(message))
