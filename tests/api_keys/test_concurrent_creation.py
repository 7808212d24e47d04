"""The cap of active API keys under real concurrency: creations of one owner at the same
moment, through a served app, on SQLite and on PostgreSQL, never make one key too many (the
owner's row is locked for the count)."""

from __future__ import annotations

import uuid
from collections import Counter

from sqlalchemy import func, select

from persistence.api_keys.models import ApiKey
from services.api_keys import MAX_ACTIVE_KEYS_PER_USER
from tests.helpers import on_plan, register_and_login
from tests.served import Served, at_once


def test_creations_at_once_stop_at_the_cap(served: Served):
    with served.client() as http:
        account = register_and_login(http)
        on_plan(served.app, account.id)  # the cap, not a quota: a plan that allows as many
        for number in range(MAX_ACTIVE_KEYS_PER_USER - 3):
            created = http.post(
                "/api/v1/api-keys", json={"name": f"key {number}", "scopes": ["chat"]}, headers=account.headers
            )
            assert created.status_code == 201, created.text

    responses = at_once(
        8,
        lambda http, i: http.post(
            "/api/v1/api-keys", json={"name": f"racer {i}", "scopes": ["chat"]}, headers=account.headers
        ),
        served=served,
    )

    statuses = Counter(response.status_code for response in responses)
    assert statuses == {201: 3, 409: 5}, [response.text for response in responses]
    assert {r.json()["type"] for r in responses if r.status_code == 409} == {"/problems/api-key-limit-reached"}
    with served.state.session_factory() as db:
        count = db.scalar(select(func.count()).select_from(ApiKey).where(ApiKey.owner_id == uuid.UUID(account.id)))
    assert count == MAX_ACTIVE_KEYS_PER_USER
    keys = {response.json()["key"] for response in responses if response.status_code == 201}
    assert len(keys) == 3
