"""Operations of the `knowledge` tag (issue 15): search a chatbot's knowledge index."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from handlers.responses import json_answer
from server.integration.context import principal, unit_of_work
from services import knowledge

if TYPE_CHECKING:
    from persistence.knowledge.repository import PassageHit


def hit_representation(hit: PassageHit) -> dict[str, Any]:
    """The contract's `SearchHit`."""
    return {
        "id": str(hit.id),
        "score": round(hit.score, 6),
        "text": hit.text,
        "snippet": hit.snippet,
        "source": {
            "type": hit.source_type,
            "id": str(hit.source_id),
            "url": hit.url,
            "title": hit.title,
            "page": hit.page,
            "heading": hit.heading,
        },
    }


def search_knowledge(chatbot_id: str, q: str, limit: int = 10) -> tuple:
    """GET /api/v1/chatbots/{chatbot_id}/search — the matching passages, best first."""
    hits = knowledge.search(
        uow=unit_of_work(), caller=principal(), chatbot_id=uuid.UUID(chatbot_id), query=q, limit=limit
    )
    return json_answer({"items": [hit_representation(hit) for hit in hits]})
