"""Operations of the `conversations` tag (issue 16): a user's conversations with a chatbot at
``/api/v1/chatbots/{chatbot_id}/conversations`` and ``/api/v1/conversations…``, questions
answered from the chatbot's knowledge with citations, and feedback on answers. Owners see their
own (another user's is 404); administrators see every one."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import flask

from handlers.etags import etag, expected_versions, matches_current
from handlers.responses import json_answer, no_content, not_modified, timestamp
from server.integration.context import (
    clock,
    commit_request_unit,
    fresh_units,
    header,
    job_engine,
    principal,
    request_meta,
    unit_of_work,
)
from server.integration.event_stream import event_stream_response, wants_event_stream
from server.integration.idempotency import HEADER as IDEMPOTENCY_KEY
from server.integration.idempotency import idempotent
from server.integration.problems import INTERNAL, problem_body
from server.integration.request_context import current_request_id
from services import conversations
from services.errors import DomainError, InvalidInput

if TYPE_CHECKING:
    from persistence.conversations.models import Conversation, Message

log = logging.getLogger(__name__)


def conversation_representation(conversation: Conversation) -> dict[str, Any]:
    """The contract's `Conversation`."""
    return {
        "id": str(conversation.id),
        "chatbot_id": str(conversation.chatbot_id),
        "owner_id": str(conversation.owner_id),
        "visitor": bool(conversation.visitor),
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


def send_message(conversation_id: str, body: dict[str, Any]) -> Any:
    """POST /api/v1/conversations/{conversation_id}/messages — 201 with the stored answer, or,
    when the request's ``Accept`` prefers ``text/event-stream``, 201 with the answer's events
    (`_stream_answer`)."""
    if wants_event_stream():
        return _stream_answer(conversation_id, body)
    return _json_message(conversation_id=conversation_id, body=body)


@idempotent
def _json_message(conversation_id: str, body: dict[str, Any]) -> tuple:
    """The JSON form: the answer's event stream drained. As for the streamed form, the request's
    unit of work is committed first and each step (the question, the answer) commits in a unit
    of work of its own, so no transaction (on SQLite, the write lock; on PostgreSQL, a pooled
    connection and the conversation's row lock) is held while the provider composes the answer,
    which may take seconds with a model. The idempotency record is completed afterwards in the
    request's unit of work (committed at the request's end); a request that fails releases its
    key, and a question already stored stays in the history, as a streamed one does."""
    commit_request_unit()
    message = conversations.answer(
        units=fresh_units(),
        clock=clock(),
        config=conversations.config_of(job_engine()),
        caller=principal(),
        conversation_id=uuid.UUID(conversation_id),
        content=body["content"],
    )
    return json_answer(message_representation(message), 201)


def _stream_answer(conversation_id: str, body: dict[str, Any]) -> Any:
    """The streamed form (API_STYLE, Streams; issue 16): `message_start`, `citations`, `delta`…,
    `message_end` (the stored answer, as the JSON form answers it); an `error` event (a problem)
    before `message_end` when the provider failed, or instead of it when the answer could not
    be stored. What fails before the question is stored (404, 409 chatbot-not-active, 400) is a
    plain problem+json answer: the first event is produced here, before answering.

    The request's unit of work is committed first (it holds the caller's session check), and
    each step of the answer runs in a unit of work of its own (`fresh_units`): the events are
    produced after this handler returned, by the bridge, with no request context. An
    ``Idempotency-Key`` is refused (400): a stream cannot be replayed; ask for JSON to retry
    safely.
    """
    if header(IDEMPOTENCY_KEY) is not None:
        raise InvalidInput(
            "An Idempotency-Key is not accepted with Accept: text/event-stream, as a stream cannot be "
            "replayed; ask for application/json to make a retry safe."
        )
    commit_request_unit()
    events = conversations.answer_stream(
        units=fresh_units(),
        clock=clock(),
        config=conversations.config_of(job_engine()),
        caller=principal(),
        conversation_id=uuid.UUID(conversation_id),
        content=body["content"],
    )
    return answer_event_stream(events)


def answer_event_stream(events: Iterator[conversations.AnswerEvent]) -> Any:
    """The 201 `text/event-stream` answer of an answer's events (`answer_stream`'s, not started
    yet): the first event is produced here, so what fails before the question is stored (404,
    409, 400) raises now and is a plain problem+json answer; the rest are produced by the bridge
    after the handler returned. Shared by the owners' and the visitors' streamed answers."""
    first = next(events)  # stores the question, or raises before anything is stored
    return event_stream_response(
        _AnswerEvents(first, events, instance=flask.request.path, request_id=current_request_id()), status=201
    )


class _AnswerEvents:
    """The answer's events as ``(name, data)`` for `event_stream_response`. Closing it (the
    client left) closes the answer's stream, which stores the text so far as `cancelled`."""

    def __init__(
        self,
        first: conversations.AnswerEvent,
        events: Iterator[conversations.AnswerEvent],
        *,
        instance: str,
        request_id: str | None,
    ) -> None:
        self.first = first
        self.events = events
        self.instance = instance
        self.request_id = request_id

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        try:
            yield self._named(self.first)
            for event in self.events:
                if isinstance(event, conversations.MessageEnd) and event.message.finish_reason == "error":
                    failed = conversations.AnswerFailed(
                        "The answer's provider failed; the answer was stored with the text given so far."
                    )
                    yield "error", self._problem(failed)
                yield self._named(event)
        except DomainError as error:  # e.g. the conversation was deleted while it was answered
            yield "error", self._problem(error)
        except Exception:
            log.exception("answer stream failed")
            yield "error", self._problem(None)
        finally:
            self.close()

    def close(self) -> None:
        """Close the answer's stream (it stores the answer, if not stored yet)."""
        self.events.close()  # type: ignore[attr-defined]

    def _problem(self, error: DomainError | None) -> dict[str, Any]:
        if error is None:
            kind, detail = INTERNAL, "An unexpected error occurred. Quote the request id when reporting it."
        else:
            kind, detail = error.problem, error.detail
        return problem_body(kind, detail, instance=self.instance, request_id=self.request_id)

    @staticmethod
    def _named(event: conversations.AnswerEvent) -> tuple[str, Any]:
        if isinstance(event, conversations.MessageStart):
            return "message_start", {
                "conversation_id": str(event.conversation_id),
                "question_id": str(event.question_id),
                "answer_id": str(event.answer_id),
            }
        if isinstance(event, conversations.Citations):
            return "citations", {"citations": list(event.items)}
        if isinstance(event, conversations.Delta):
            return "delta", {"text": event.text}
        return "message_end", message_representation(event.message)


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
