"""Helpers of the task tests only (queries, tags, bulk, statistics, safe writes); the ones other
areas need too (create_task, instant, session_factory, collect_pages, the problem types) are in
tests/helpers.py.

Plain functions (not fixtures) so each test reads as a sequence of requests; every request
goes through the `client` fixture, which validates the answer against the contract.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from services.clock import SystemClock
from tests.helpers import Account, ContractClient, instant, pages, postgres_url_in_environment

IS_POSTGRES = postgres_url_in_environment() is not None
"""Whether the suite runs on PostgreSQL (else SQLite), like the `database_url` fixture."""

PRIORITIES = ("low", "medium", "high", "urgent")
END_OF_TIME = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
"""Where a task without a due date sorts: as if due at the end of time."""


def rfc3339(value: datetime) -> str:
    """`value` as an RFC 3339 timestamp in UTC with a ``Z``, as a query parameter."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def task_path(account: Account, task_id: str) -> str:
    """The path of one of `account`'s tasks."""
    return f"{account.tasks_path}/{task_id}"


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
    """GET one of `account`'s tasks; asserts 200 and returns the task."""
    response = client.get(task_path(account, task_id), headers=account.headers)
    assert response.status_code == 200, response.text
    return response.json()


def list_page(client: ContractClient, account: Account, **params: Any) -> dict[str, Any]:
    """One page of GET …/tasks; a list value repeats the parameter (``priority=[…]``)."""
    response = client.get(account.tasks_path, headers=account.headers, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def list_all(client: ContractClient, account: Account, **params: Any) -> list[dict[str, Any]]:
    """Every task the query matches, following the cursors (`pages`); fails on a repeated item
    and on an empty page that has a next cursor."""
    items: list[dict[str, Any]] = []
    for page in pages(client, account.tasks_path, headers=account.headers, params=params):
        assert page["items"] or page["next_cursor"] is None, "a page with a next cursor must not be empty"
        items += page["items"]
    assert len(ids(items)) == len(set(ids(items))), "an item came twice"
    return items


def ids(items: list[dict[str, Any]]) -> list[str]:
    """The ids of `items`, in order."""
    return [item["id"] for item in items]


def parameters(problem: dict[str, Any]) -> list[tuple[str | None, str | None]]:
    """The (parameter, in) of each error of a validation problem."""
    return [(error.get("parameter"), error.get("in")) for error in problem.get("errors", [])]


def pointers(problem: dict[str, Any]) -> list[str | None]:
    """The JSON pointer of each error of a validation problem."""
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


@contextlib.contextmanager
def frozen_clock(monkeypatch: pytest.MonkeyPatch, at: datetime) -> Iterator[None]:
    """Make the services read `at` as the current time (created_at, updated_at, …): the app's
    clock (`services.clock.SystemClock`) stands still within the block."""
    with monkeypatch.context() as patch:
        patch.setattr(SystemClock, "now", lambda _self: at)
        yield
