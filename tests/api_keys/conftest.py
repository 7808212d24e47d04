"""Fixtures of the API key tests: making a key through the API, and moving the served app's
clock (the one the services read) for expiry, put back afterwards."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from services.clock import FrozenClock
from tests.helpers import Account, ContractClient


def make_key(client: ContractClient, account: Account, *scopes: str, **fields: Any) -> dict[str, Any]:
    """Create a key for `account` holding `scopes` (`fields`: more of the body); asserts 201 and
    returns the answer (with the key itself, `key`)."""
    body = {"name": "test key", "scopes": list(scopes), **fields}
    response = client.post("/api/v1/api-keys", json=body, headers=account.headers)
    assert response.status_code == 201, response.text
    return response.json()


def key_headers(key: str) -> dict[str, str]:
    """The Authorization header presenting an API key."""
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def app_clock(app) -> Iterator[Callable[[datetime], None]]:
    """Set the served app's clock to a frozen instant (`app_clock(instant)`); the system clock
    is put back after the test."""
    state = app.app.extensions["charter"]
    original = state.clock

    def freeze(at: datetime) -> None:
        state.clock = FrozenClock(at.astimezone(UTC))

    yield freeze
    state.clock = original
