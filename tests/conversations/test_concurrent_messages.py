"""Questions asked at the same moment in one conversation, through a served app, on SQLite and
on PostgreSQL: every one is answered, each message takes its own position (the conversation's
row is locked while a message is numbered), and the count is exact."""

from __future__ import annotations

import uuid
from collections import Counter

from sqlalchemy import select

from persistence.conversations.models import Conversation, Message
from tests.helpers import register_and_login
from tests.served import Served, at_once

RACERS = 6


def test_questions_at_once_are_each_answered_in_positions_of_their_own(served: Served):
    with served.client() as http:
        account = register_and_login(http)
        chatbot_id = http.post("/api/v1/chatbots", json={"name": "Racer"}, headers=account.headers).json()["id"]
        published = http.patch(f"/api/v1/chatbots/{chatbot_id}", json={"status": "active"}, headers=account.headers)
        assert published.status_code == 200, published.text
        created = http.post(f"/api/v1/chatbots/{chatbot_id}/conversations", json={}, headers=account.headers)
        conversation_id = created.json()["id"]

    responses = at_once(
        RACERS,
        lambda http, i: http.post(
            f"/api/v1/conversations/{conversation_id}/messages",
            json={"content": f"Question {i}?"},
            headers=account.headers,
        ),
        served=served,
    )

    assert Counter(response.status_code for response in responses) == {201: RACERS}, [r.text for r in responses]
    with served.state.session_factory() as db:
        conversation = db.get(Conversation, uuid.UUID(conversation_id))
        stored = list(
            db.scalars(select(Message).where(Message.conversation_id == conversation.id).order_by(Message.position))
        )
    assert conversation.message_count == 2 * RACERS
    assert [message.position for message in stored] == list(range(1, 2 * RACERS + 1))
    questions = {message.id: message for message in stored if message.role == "user"}
    answers = [message for message in stored if message.role == "assistant"]
    assert len(questions) == len(answers) == RACERS
    assert {answer.reply_to for answer in answers} == set(questions)
    assert {str(answer.id) for answer in answers} == {response.json()["id"] for response in responses}
