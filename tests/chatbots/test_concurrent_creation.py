"""The cap of 50 chatbots under real concurrency: creations of one owner at the same moment,
through a served app, on SQLite and on PostgreSQL, never make a 51st (the owner's row is locked
for the count)."""

from __future__ import annotations

import uuid
from collections import Counter

from sqlalchemy import func, select

from persistence.chatbots.models import Chatbot
from services.chatbots import MAX_CHATBOTS_PER_USER
from tests.helpers import on_plan, register_and_login
from tests.served import Served, at_once


def test_creations_at_once_stop_at_the_cap(served: Served):
    with served.client() as http:
        account = register_and_login(http)
        on_plan(served.app, account.id)  # the cap, not a quota: a plan that allows as many
        for number in range(MAX_CHATBOTS_PER_USER - 2):
            created = http.post("/api/v1/chatbots", json={"name": f"Bot {number}"}, headers=account.headers)
            assert created.status_code == 201, created.text

    responses = at_once(
        6,
        lambda http, i: http.post("/api/v1/chatbots", json={"name": f"Racer {i}"}, headers=account.headers),
        served=served,
    )

    statuses = Counter(response.status_code for response in responses)
    assert statuses == {201: 2, 409: 4}, [response.text for response in responses]
    assert {r.json()["type"] for r in responses if r.status_code == 409} == {"/problems/chatbot-limit-reached"}
    with served.state.session_factory() as db:
        count = db.scalar(select(func.count()).select_from(Chatbot).where(Chatbot.owner_id == uuid.UUID(account.id)))
    assert count == MAX_CHATBOTS_PER_USER
