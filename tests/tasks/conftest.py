"""Helpers shared by the task query, tag, bulk, statistics and safe-write tests.

Plain functions (not fixtures) so each test reads as a sequence of requests; every request
goes through the `client` fixture, which validates the answer against the contract.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from services.clock import SystemClock
from tests.conftest import Account, ContractClient

IS_POSTGRES = os.environ.get("DATABASE_URL", "").startswith("postgresql")
"""Whether the suite runs on PostgreSQL (else SQLite), like `tests.conftest.database_url`."""

PRIORITIES = ("low", "medium", "high", "urgent")
END_OF_TIME = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
"""Where a task without a due date sorts: as if due at the end of time."""

VALIDATION = "/problems/validation-error"
NOT_FOUND = "/problems/not-found"
PRECONDITION_FAILED = "/problems/precondition-failed"


def instant(text: str) -> datetime:
    """An RFC 3339 timestamp of an answer as an aware datetime."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def task_path(account: Account, task_id: str) -> str:
    return f"{account.tasks_path}/{task_id}"


def create(client: ContractClient, account: Account, **fields: Any) -> dict[str, Any]:
    """Create one task for `account` (title defaults to a unique one) and return its body."""
    body = {"title": f"task {uuid.uuid4().hex[:8]}", **fields}
    response = client.post(account.tasks_path, json=body, headers=account.headers)
    assert response.status_code == 201, response.text
    return response.json()


def bulk(client: ContractClient, account: Account, operations: list[dict[str, Any]], **headers: str):
    """POST …/tasks/bulk and return the raw response."""
    return client.post(
        f"{account.tasks_path}/bulk", json={"operations": operations}, headers={**account.headers, **headers}
    )


def bulk_create(client: ContractClient, account: Account, bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Create many tasks in one bulk request (in order) and return their bodies."""
    response = bulk(client, account, [{"op": "create", "task": body} for body in bodies])
    assert response.status_code == 207, response.text
    results = response.json()["results"]
    assert [result["status"] for result in results] == [201] * len(bodies), results
    return [result["task"] for result in results]


def read(client: ContractClient, account: Account, task_id: str) -> dict[str, Any]:
    response = client.get(task_path(account, task_id), headers=account.headers)
    assert response.status_code == 200, response.text
    return response.json()


def list_page(client: ContractClient, account: Account, **params: Any) -> dict[str, Any]:
    """One page of GET …/tasks; a list value repeats the parameter (``priority=[…]``)."""
    response = client.get(account.tasks_path, headers=account.headers, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def list_all(client: ContractClient, account: Account, **params: Any) -> list[dict[str, Any]]:
    """Every task the query matches, following the cursors; fails on a repeated item."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(200):
        query = {**params, "cursor": cursor} if cursor else params
        page = list_page(client, account, **query)
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            ids = [item["id"] for item in items]
            assert len(ids) == len(set(ids)), "an item came twice"
            return items
        assert page["items"], "a page with a next cursor must not be empty"
    raise AssertionError("pagination does not end")


def ids(items: list[dict[str, Any]]) -> list[str]:
    return [item["id"] for item in items]


def parameters(problem: dict[str, Any]) -> list[tuple[str | None, str | None]]:
    return [(error.get("parameter"), error.get("in")) for error in problem.get("errors", [])]


def pointers(problem: dict[str, Any]) -> list[str | None]:
    return [error.get("pointer") for error in problem.get("errors", [])]


def _sort_value(item: dict[str, Any], name: str) -> Any:
    if name == "due_at":
        return instant(item["due_at"]) if item["due_at"] else END_OF_TIME
    if name == "priority":
        return PRIORITIES.index(item["priority"])
    if name in ("created_at", "updated_at"):
        return instant(item[name])
    return item[name]


def expected_order(items: list[dict[str, Any]], sort: str | None) -> list[str]:
    """The ids of `items` in the order the contract defines for `sort` (default newest first):
    the keys in turn, ties broken by id in the direction of the last key. Titles in the tests
    are plain lower-case ASCII words, so every database collation orders them as Python does."""
    keys = [(part.removeprefix("-"), part.startswith("-")) for part in (sort or "-created_at").split(",")]
    ordered = sorted(items, key=lambda item: item["id"], reverse=keys[-1][1])
    for name, descending in reversed(keys):  # stable sorts, least significant key first
        ordered.sort(key=lambda item, name=name: _sort_value(item, name), reverse=descending)
    return ids(ordered)


def session_factory(app: Any) -> sessionmaker[Session]:
    """The app's own session factory, to arrange rows the API cannot (e.g. old timestamps)."""
    return app.app.extensions["charter"].session_factory


@contextlib.contextmanager
def frozen_clock(monkeypatch: pytest.MonkeyPatch, at: datetime) -> Iterator[None]:
    """Make the services read `at` as the current time (created_at, updated_at, …): the app's
    clock (`services.clock.SystemClock`) stands still within the block."""
    with monkeypatch.context() as patch:
        patch.setattr(SystemClock, "now", lambda _self: at)
        yield
