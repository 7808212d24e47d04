"""Quotas under real concurrency: requests of one account at the same moment, through a served
app, on SQLite and on PostgreSQL, at the edge of a quota, never overshoot it (the counter row is
locked for the check and the increment, in the work's own transaction): exact counts."""

from __future__ import annotations

import uuid
from collections import Counter

from sqlalchemy import func, select

from persistence.billing.models import UsageCounter, UsageEvent
from persistence.chatbots.models import Chatbot
from persistence.conversations.models import Message
from tests.helpers import register_and_login
from tests.served import Served, at_once
from tests.usage.conftest import use

QUOTA = "/problems/quota-exceeded"


def scalar(served: Served, statement):
    with served.state.session_factory() as db:
        return db.scalar(statement)


def test_eight_chatbot_creations_at_once_on_the_free_plan_make_exactly_two(served: Served):
    with served.client() as http:
        account = register_and_login(http)
    owner = uuid.UUID(account.id)

    responses = at_once(
        8,
        lambda http, i: http.post("/api/v1/chatbots", json={"name": f"Racer {i}"}, headers=account.headers),
        served=served,
    )

    statuses = Counter(response.status_code for response in responses)
    assert statuses == {201: 2, 402: 6}, [response.text for response in responses]
    refused = [response.json() for response in responses if response.status_code == 402]
    assert {(p["type"], p["meter"], p["limit"], p["used"], p["reset_at"]) for p in refused} == {
        (QUOTA, "chatbots", 2, 2, None)
    }
    assert scalar(served, select(func.count()).select_from(Chatbot).where(Chatbot.owner_id == owner)) == 2
    assert scalar(served, select(UsageCounter.used).where(UsageCounter.owner_id == owner)) == 2
    events = select(func.count()).select_from(UsageEvent).where(UsageEvent.owner_id == owner)
    assert scalar(served, events) == 2


def test_six_messages_at_once_with_two_left_answer_exactly_two(served: Served):
    with served.client() as http:
        account = register_and_login(http)
        created = http.post("/api/v1/chatbots", json={"name": "Shop"}, headers=account.headers).json()
        activated = http.patch(f"/api/v1/chatbots/{created['id']}", json={"status": "active"}, headers=account.headers)
        assert activated.status_code == 200, activated.text
        conversations = [
            http.post(f"/api/v1/chatbots/{created['id']}/conversations", json={}, headers=account.headers).json()["id"]
            for _ in range(6)
        ]
    use(served.app, account.id, "messages", 98)

    responses = at_once(
        6,
        lambda http, i: http.post(
            f"/api/v1/conversations/{conversations[i]}/messages",
            json={"content": f"Question {i}?"},
            headers=account.headers,
        ),
        served=served,
    )

    statuses = Counter(response.status_code for response in responses)
    assert statuses == {201: 2, 402: 4}, [response.text for response in responses]
    assert {response.json()["used"] for response in responses if response.status_code == 402} == {100}
    ids = [uuid.UUID(conversation) for conversation in conversations]
    questions = (
        select(func.count()).select_from(Message).where(Message.conversation_id.in_(ids), Message.role == "user")
    )
    assert scalar(served, questions) == 2
    counter = select(UsageCounter.used).where(
        UsageCounter.owner_id == uuid.UUID(account.id), UsageCounter.meter == "messages"
    )
    assert scalar(served, counter) == 100
