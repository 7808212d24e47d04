"""Operations of the `chatbots` tag (issue 15, first slice): a user's chatbots at
``/api/v1/chatbots…``. Owners see and change their own (another user's is 404); administrators
see and change every chatbot."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from handlers.etags import etag, expected_versions, matches_current
from handlers.jobs import job_representation
from handlers.responses import json_answer, not_modified, timestamp
from server.integration.context import clock, header, job_engine, principal, request_meta, unit_of_work
from server.integration.idempotency import idempotent
from services import caching, chatbots

if TYPE_CHECKING:
    from persistence.chatbots.models import Chatbot


def chatbot_representation(chatbot: Chatbot, summary: chatbots.KnowledgeSummary) -> dict[str, Any]:
    """The `Chatbot` schema of the contract, with its knowledge summary (`chatbots.knowledge_of`)."""
    return {
        "id": str(chatbot.id),
        "owner_id": str(chatbot.owner_id),
        "public_id": chatbot.public_id,
        "name": chatbot.name,
        "instructions": chatbot.instructions,
        "welcome_message": chatbot.welcome_message,
        "suggested_questions": list(chatbot.suggested_questions),
        "status": chatbot.status,
        "visibility": chatbot.visibility,
        "allowed_origins": list(chatbot.allowed_origins),
        "passages_per_answer": chatbot.passages_per_answer,
        "min_score": chatbot.min_score,
        "knowledge": {
            "sources": summary.sources,
            "pages": summary.pages,
            "documents": summary.documents,
            "passages": summary.passages,
            "status": summary.status,
        },
        "version": chatbot.version,
        "created_at": timestamp(chatbot.created_at),
        "updated_at": timestamp(chatbot.updated_at),
    }


def _represented(items: Sequence[Chatbot]) -> list[dict[str, Any]]:
    summaries = chatbots.knowledge_of(uow=unit_of_work(), chatbots=items)
    return [chatbot_representation(chatbot, summaries[chatbot.id]) for chatbot in items]


def _export_chatbots(user_id: uuid.UUID) -> list[dict[str, Any]]:
    return _represented(chatbots.exported_chatbots(uow=unit_of_work(), owner_id=user_id))


EXPORT_SECTIONS = {"chatbots": _export_chatbots}
"""The caller's chatbots in their data export (`handlers.data_export`)."""


def _path(chatbot: Chatbot) -> str:
    return f"/api/v1/chatbots/{chatbot.id}"


def _chatbot_answer(chatbot: Chatbot, status: int = 200, headers: dict[str, str] | None = None) -> tuple:
    [representation] = _represented([chatbot])
    return json_answer(representation, status, {"ETag": etag(chatbot.version), **(headers or {})})


def _if_match() -> frozenset[int] | None:
    return expected_versions(header("If-Match"))


def list_chatbots(limit: int = 20, cursor: str | None = None, owner_id: str | None = None) -> tuple:
    """GET /api/v1/chatbots — the caller's chatbots (an administrator's: everyone's, or `owner_id`'s)."""
    result = chatbots.list_chatbots(
        uow=unit_of_work(),
        caller=principal(),
        limit=limit,
        cursor=cursor,
        owner_id=uuid.UUID(owner_id) if owner_id else None,
    )
    return json_answer({"items": _represented(result.items), "next_cursor": result.next_cursor})


@idempotent
def create_chatbot(body: dict[str, Any]) -> tuple:
    """POST /api/v1/chatbots — 201 with the chatbot (a draft), its Location and ETag."""
    chatbot = chatbots.create_chatbot(
        uow=unit_of_work(), clock=clock(), caller=principal(), data=body, meta=request_meta()
    )
    return _chatbot_answer(chatbot, 201, {"Location": _path(chatbot)})


def get_chatbot(chatbot_id: str) -> tuple:
    """GET /api/v1/chatbots/{chatbot_id} — 304 when If-None-Match names its ETag."""
    chatbot = chatbots.get_chatbot(uow=unit_of_work(), caller=principal(), chatbot_id=uuid.UUID(chatbot_id))
    if matches_current(header("If-None-Match"), chatbot.version):
        return not_modified({"ETag": etag(chatbot.version)})
    return _chatbot_answer(chatbot)


def update_chatbot(chatbot_id: str, body: dict[str, Any]) -> tuple:
    """PATCH /api/v1/chatbots/{chatbot_id} — the members sent, If-Match honoured, status transitions checked."""
    chatbot = chatbots.update_chatbot(
        uow=unit_of_work(),
        clock=clock(),
        caller=principal(),
        chatbot_id=uuid.UUID(chatbot_id),
        changes=body,
        expected_versions=_if_match(),
        meta=request_meta(),
        cache=caching.cache_of(job_engine()),
    )
    return _chatbot_answer(chatbot)


def delete_chatbot(chatbot_id: str) -> tuple:
    """DELETE /api/v1/chatbots/{chatbot_id} — 202 with the deleting job and its Location; If-Match honoured."""
    job = chatbots.delete_chatbot(
        uow=unit_of_work(),
        clock=clock(),
        engine=job_engine(),
        caller=principal(),
        chatbot_id=uuid.UUID(chatbot_id),
        expected_versions=_if_match(),
        meta=request_meta(),
    )
    return json_answer(job_representation(job), 202, {"Location": f"/api/v1/jobs/{job.id}"})
