"""Operations of the `public-chatbots` tag (issue 16): a visitor, without an account, starts a
conversation with a public chatbot by its `public_id`, and with the visitor token it gets asks
questions and reads the conversation back. The visitor token is checked before the handler
runs (`x-access: visitor`, `server.integration.context.load_principal`)."""

from __future__ import annotations

from typing import Any

from handlers.conversations import answer_event_stream, message_representation
from handlers.responses import json_answer, timestamp
from server.integration.context import (
    clock,
    commit_request_unit,
    fresh_units,
    job_engine,
    unit_of_work,
    visitor_conversation,
)
from server.integration.event_stream import wants_event_stream
from services import conversations, public_chatbots


def visitor_conversation_representation(started: public_chatbots.VisitorConversation) -> dict[str, Any]:
    """The contract's `VisitorConversation`: nothing of the owner's but the chatbot's public face."""
    conversation, chatbot = started.conversation, started.chatbot
    return {
        "id": str(conversation.id),
        "chatbot": {
            "public_id": chatbot.public_id,
            "name": chatbot.name,
            "welcome_message": chatbot.welcome_message,
            "suggested_questions": list(chatbot.suggested_questions),
        },
        "visitor_token": started.token,
        "visitor_token_expires_at": timestamp(conversation.visitor_expires_at),
        "message_count": conversation.message_count,
        "created_at": timestamp(conversation.created_at),
    }


def start_visitor_conversation(public_id: str) -> tuple:
    """POST /api/v1/public/chatbots/{public_id}/conversations — 201 with the visitor token."""
    started = public_chatbots.start_conversation(uow=unit_of_work(), clock=clock(), public_id=public_id)
    return json_answer(visitor_conversation_representation(started), 201)


def list_visitor_messages(conversation_id: str, limit: int = 20, cursor: str | None = None) -> tuple:
    """GET /api/v1/public/conversations/{conversation_id}/messages — oldest first."""
    result = public_chatbots.list_messages(
        uow=unit_of_work(), conversation=visitor_conversation(), limit=limit, cursor=cursor
    )
    return json_answer(
        {"items": [message_representation(item) for item in result.items], "next_cursor": result.next_cursor}
    )


def send_visitor_message(conversation_id: str, body: dict[str, Any]) -> Any:
    """POST /api/v1/public/conversations/{conversation_id}/messages — 201 with the stored answer,
    or, when ``Accept`` prefers ``text/event-stream``, 201 with the answer's events (the owners'
    `message_start`, `citations`, `delta`…, `message_end`, `error`).

    As the owners' answers: the request's unit of work is committed first and each step of
    the answer commits in a unit of work of its own, so no transaction is held while the
    provider composes."""
    conversation = visitor_conversation()  # the path's: load_principal checked the token opens it
    commit_request_unit()
    events = public_chatbots.answer_stream(
        units=fresh_units(),
        clock=clock(),
        config=conversations.config_of(job_engine()),
        conversation_id=conversation.id,
        owner_id=conversation.owner_id,
        content=body["content"],
    )
    if wants_event_stream():
        return answer_event_stream(events)
    return json_answer(message_representation(conversations.stored_answer(events)), 201)
