"""Operations of the `public-chatbots` tag (issue 16): a visitor, without an account, starts a
conversation with a public chatbot by its `public_id`, and with the visitor token it gets asks
questions and reads the conversation back. The visitor token is checked before the handler
runs (`x-access: visitor`, `server.integration.context.load_principal`)."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from handlers.conversations import answer_event_stream, message_representation
from handlers.etags import tag_matches as etag_matches
from handlers.responses import json_answer, not_modified, timestamp
from server.integration.context import (
    clock,
    commit_request_unit,
    fresh_units,
    header,
    job_engine,
    state,
    unit_of_work,
    visitor_conversation,
)
from server.integration.event_stream import wants_event_stream
from services import caching, conversations, public_chatbots


def visitor_conversation_representation(started: public_chatbots.VisitorConversation) -> dict[str, Any]:
    """The contract's `VisitorConversation`: nothing of the owner's but the chatbot's public face."""
    conversation, chatbot = started.conversation, started.chatbot
    return {
        "id": str(conversation.id),
        "chatbot": public_chatbots.settings_of(chatbot),
        "visitor_token": started.token,
        "visitor_token_expires_at": timestamp(conversation.visitor_expires_at),
        "message_count": conversation.message_count,
        "created_at": timestamp(conversation.created_at),
    }


def _cache_control(ttl_seconds: int) -> str:
    return f"public, max-age={ttl_seconds}" if ttl_seconds > 0 else "no-cache"


def settings_etag(settings: dict[str, Any]) -> str:
    """A strong entity tag of the public settings: 32 hex digits of the SHA-256 of their
    canonical JSON (the same settings, the same tag, in every process)."""
    return '"' + hashlib.sha256(orjson.dumps(settings, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32] + '"'


def get_public_chatbot(public_id: str) -> Any:
    """GET /api/v1/public/chatbots/{public_id} — the widget's settings, cached (services.public_chatbots),
    with a strong ETag and Cache-Control; 304 when If-None-Match names the current ETag."""
    ttl = state().settings.public_chatbot_cache_ttl_seconds
    settings = public_chatbots.public_settings(
        uow=unit_of_work(), cache=caching.cache_of(job_engine()), public_id=public_id, ttl_seconds=ttl
    )
    tag = settings_etag(settings)
    headers = {"ETag": tag, "Cache-Control": _cache_control(ttl)}
    if etag_matches(header("If-None-Match"), tag):
        return not_modified(headers)
    return json_answer(settings, 200, headers)


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
