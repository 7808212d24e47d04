"""Operations of the `chat-completions` tag (issue 16, "OpenAI-compatible endpoint"):
``POST /api/v1/chatbots/{chatbot_id}/chat/completions`` answers in OpenAI's Chat Completions
wire format, whole (`chat.completion`) or streamed (data-only `chat.completion.chunk` events,
then ``data: [DONE]``), with the answer's citations in an extra field, `citations`. The request
is read by `services.chat_completions`, the answer is `services.conversations`'; this module only
shapes OpenAI's JSON."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

from handlers.responses import json_answer
from server.integration.context import clock, commit_request_unit, fresh_units, job_engine, principal
from server.integration.event_stream import event_stream_response
from services import chat_completions, conversations

DONE = b"[DONE]"
"""The data of the last event of a streamed answer (OpenAI's wire format)."""


def _usage(usage: dict[str, int]) -> dict[str, int]:
    """`usage` in OpenAI's names, counting words."""
    return {
        "prompt_tokens": usage["words_in"],
        "completion_tokens": usage["words_out"],
        "total_tokens": usage["words_in"] + usage["words_out"],
    }


def _chunk(head: dict[str, Any], delta: dict[str, Any], finish_reason: str | None = None, **extra: Any) -> dict:
    """One `chat.completion.chunk`."""
    return {
        **head,
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        **extra,
    }


def _chunks(head: dict[str, Any], citations: list[dict[str, Any]], events: Iterator[Any]) -> Iterator[tuple[None, Any]]:
    """The streamed answer: a first chunk with the role and the citations, one chunk per
    delta, a last one with the finish reason, usage and citations, then ``[DONE]``. Closing it
    closes `events`."""
    try:
        yield None, _chunk(head, {"role": "assistant", "content": ""}, citations=citations)
        for event in events:
            if isinstance(event, conversations.Delta):
                yield None, _chunk(head, {"content": event.text})
            elif isinstance(event, conversations.AnswerDone):
                yield (
                    None,
                    _chunk(head, {}, event.finish_reason, usage=_usage(event.usage), citations=event.citations),
                )
        yield None, DONE
    finally:
        events.close()


def create_chat_completion(chatbot_id: str, body: dict[str, Any]) -> Any:
    """POST /api/v1/chatbots/{chatbot_id}/chat/completions — 200 with a `chat.completion`, or
    its chunks as server-sent events when the body says ``"stream": true``."""
    request = chat_completions.read_request(body)
    commit_request_unit()  # the session check: no transaction stays open while the provider writes
    events = conversations.stateless_answer_stream(
        units=fresh_units(),
        clock=clock(),
        config=conversations.config_of(job_engine()),
        caller=principal(),
        chatbot_id=uuid.UUID(chatbot_id),
        content=request.question,
        history=request.history,
        extra_instructions=request.system,
        max_words=request.max_words,
    )
    first = next(events)  # the checks and every read (each in a unit of work of its own) happen here
    if not isinstance(first, conversations.Citations):  # pragma: no cover - a bug of the answer stream
        raise RuntimeError("an answer stream starts with its citations")
    head = {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "created": int(clock().now().timestamp()),
        "model": request.model,
    }
    if request.stream:
        return event_stream_response(_chunks(head, first.items, events))
    done = next(event for event in events if isinstance(event, conversations.AnswerDone))
    events.close()
    return json_answer(
        {
            **head,
            "object": "chat.completion",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": done.text},
                    "finish_reason": done.finish_reason,
                }
            ],
            "usage": _usage(done.usage),
            "citations": done.citations,
        }
    )
