"""`GET /api/v1/chatbots/{chatbot_id}/search` through the ASGI app (every answer checked against
the contract by the `client` fixture): hits with score, escaped snippet and source; the
chatbot's knowledge summary counts its passages; another user's chatbot is 404; bad queries are
400 problems."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from services import knowledge
from services.clock import FrozenClock
from tests.helpers import NOT_FOUND, VALIDATION, assert_problem

BASE = "/api/v1/chatbots"


@dataclass(frozen=True)
class Chunk:
    text: str
    words: int
    page: int | None = None
    heading: str | None = None


def test_search_answers_passages_with_their_sources(client, account, other_account, new_uow):
    chatbot_id = client.post(BASE, json={"name": "Support"}, headers=account.headers).json()["id"]
    page = knowledge.KnowledgeSource("web_page", uuid.uuid4(), title="Returns", url="https://shop.example/returns")
    manual = knowledge.KnowledgeSource("document", uuid.uuid4(), title="Manual")
    with new_uow() as uow:
        clock = FrozenClock(datetime.now(UTC))
        for source, chunk in (
            (page, Chunk("Refunds take 14 days <b>at most</b>.", 6)),
            (manual, Chunk("Refunds need the receipt.", 4, page=3, heading="Refunds")),
        ):
            knowledge.index_source(
                uow=uow, clock=clock, chatbot_id=uuid.UUID(chatbot_id), source=source, passages=[chunk]
            )

    response = client.get(f"{BASE}/{chatbot_id}/search", params={"q": "refunds"}, headers=account.headers)
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert {item["source"]["type"] for item in items} == {"web_page", "document"}
    by_type = {item["source"]["type"]: item for item in items}
    assert by_type["web_page"]["source"] == {
        "type": "web_page",
        "id": str(page.id),
        "url": "https://shop.example/returns",
        "title": "Returns",
        "page": None,
        "heading": None,
    }
    assert by_type["document"]["source"]["page"] == 3 and by_type["document"]["source"]["heading"] == "Refunds"
    assert "<mark>Refunds</mark>" in by_type["web_page"]["snippet"] and "<b>" not in by_type["web_page"]["snippet"]
    assert all(0 < item["score"] < 1 for item in items)

    limited = client.get(f"{BASE}/{chatbot_id}/search", params={"q": "refunds", "limit": 1}, headers=account.headers)
    assert len(limited.json()["items"]) == 1
    assert client.get(f"{BASE}/{chatbot_id}/search", params={"q": "pancakes"}, headers=account.headers).json() == {
        "items": []
    }
    summary = client.get(f"{BASE}/{chatbot_id}", headers=account.headers).json()["knowledge"]
    assert (summary["passages"], summary["status"]) == (2, "ready")

    hidden = client.get(f"{BASE}/{chatbot_id}/search", params={"q": "refunds"}, headers=other_account.headers)
    assert_problem(hidden, 404, NOT_FOUND)


def test_bad_searches_are_problems(client, account):
    chatbot_id = client.post(BASE, json={"name": "Support"}, headers=account.headers).json()["id"]
    for params in ({}, {"q": ""}, {"q": "x" * 501}, {"q": "refund", "limit": 51}, {"q": "refund", "limit": 0}):
        response = client.get(f"{BASE}/{chatbot_id}/search", params=params, headers=account.headers)
        assert_problem(response, 400, VALIDATION)
    assert_problem(client.get(f"{BASE}/{chatbot_id}/search", params={"q": "   "}, headers=account.headers), 400)
    unknown = client.get(f"{BASE}/{uuid.uuid4()}/search", params={"q": "refund"}, headers=account.headers)
    assert_problem(unknown, 404, NOT_FOUND)
    assert client.get(f"{BASE}/{chatbot_id}/search", params={"q": "refund"}).status_code == 401
