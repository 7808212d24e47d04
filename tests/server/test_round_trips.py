"""Database round trips on the hot path (issue 7): an authenticated read costs the session check
and nothing more, a page of tasks one query more whatever its tasks' tags — no N+1."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from sqlalchemy import event

from server.integration import context
from tests.helpers import Account, ContractClient


@contextlib.contextmanager
def statements(app) -> Iterator[list[str]]:
    """The SQL statements the app's engine sends while the block runs."""
    engine = app.app.extensions[context.EXTENSION].engine
    sent: list[str] = []

    def record(conn, cursor, statement, parameters, execution_context, executemany) -> None:
        sent.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", record)


def test_reading_the_current_user_is_one_query(app, client: ContractClient, account: Account) -> None:
    client.get("/api/v1/auth/me", headers=account.headers)  # the once-a-minute last_used_at write
    with statements(app) as sent:
        response = client.get("/api/v1/auth/me", headers=account.headers)
    assert response.status_code == 200
    assert len(sent) == 1, sent  # the session check joins the user: it is the answer


def test_a_page_of_tasks_is_one_query_after_the_session_check(app, client: ContractClient, account: Account) -> None:
    for number in range(12):
        tags = [f"tag-{number % 3}", "shared"] if number % 2 else []  # half of them without tags
        created = client.post(
            account.tasks_path, json={"title": f"task {number}", "tags": tags}, headers=account.headers
        )
        assert created.status_code == 201, created.text
    client.get("/api/v1/auth/me", headers=account.headers)
    with statements(app) as sent:
        page = client.get(account.tasks_path, params={"limit": 10}, headers=account.headers)
    assert page.status_code == 200
    items = page.json()["items"]
    assert len(items) == 10
    assert len(sent) == 2, sent  # session check, then the page with its tags
    by_title = {item["title"]: item["tags"] for item in items}
    for number in range(2, 12):
        expected = sorted([f"tag-{number % 3}", "shared"]) if number % 2 else []
        assert by_title[f"task {number}"] == expected
