"""On PostgreSQL, the list, filter, search and stats queries use indexes, not a sequential scan
over tasks (issue: "Indexes and plans"). A table of 20 users with 3,000 tasks each is seeded with COPY
and analysed, then each query the repository builds is EXPLAINed."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, Select, select, text
from sqlalchemy.orm import Session

from persistence.database import make_engine
from persistence.seed import seed
from persistence.tasks.models import Task
from persistence.tasks.repository import TaskFilters, TaskOrder, TaskRepository
from server.cli import migrate
from tests.helpers import postgres_url_in_environment, temporary_postgres_database

USERS, TASKS_PER_USER = 20, 3000

pytestmark = pytest.mark.skipif(postgres_url_in_environment() is None, reason="DATABASE_URL does not name PostgreSQL")


@pytest.fixture(scope="module")
def seeded() -> Iterator[tuple[Engine, uuid.UUID]]:
    with temporary_postgres_database(os.environ["DATABASE_URL"], prefix="charter_plans") as url:
        migrate(url)
        engine = make_engine(url)
        users = seed(engine, users=USERS, tasks_per_user=TASKS_PER_USER, password_hash="-", seed_value=7)
        try:
            yield engine, users[USERS // 2][0]
        finally:
            engine.dispose()


def _plan_nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _plan_nodes(child)


def _explain(engine: Engine, statement: Select) -> list[dict[str, Any]]:
    sql = str(statement.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))
    with engine.connect() as connection:
        raw = connection.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {sql}").scalar_one()
    plan = (raw if isinstance(raw, list) else json.loads(raw))[0]["Plan"]
    return list(_plan_nodes(plan))


def _assert_no_sequential_scan_over_tasks(engine: Engine, statement: Select) -> None:
    nodes = _explain(engine, statement)
    sequential = [node for node in nodes if node["Node Type"] == "Seq Scan" and node.get("Relation Name") == "tasks"]
    used = sorted({node.get("Index Name") for node in nodes if node.get("Index Name")})
    assert not sequential, f"sequential scan over tasks; indexes used: {used}"
    assert used, "no index used at all"


def _repository(engine: Engine) -> TaskRepository:
    return TaskRepository(Session(engine))


def _position(engine: Engine, owner: uuid.UUID, offset: int) -> list[Any]:
    with engine.connect() as connection:
        created_at, task_id = connection.execute(
            select(Task.created_at, Task.id)
            .where(Task.owner_id == owner)
            .order_by(Task.created_at.desc(), Task.id.desc())
            .offset(offset)
            .limit(1)
        ).one()
    return [created_at, task_id]


def test_first_page(seeded):
    engine, owner = seeded
    _assert_no_sequential_scan_over_tasks(
        engine, _repository(engine).list_statement(owner_id=owner, limit=51, filters=TaskFilters(), order=TaskOrder())
    )


def test_page_deep_in_the_cursor_chain(seeded):
    engine, owner = seeded
    after = _position(engine, owner, TASKS_PER_USER // 2)
    _assert_no_sequential_scan_over_tasks(
        engine,
        _repository(engine).list_statement(
            owner_id=owner, limit=51, filters=TaskFilters(), order=TaskOrder(), after=after
        ),
    )


@pytest.mark.parametrize(
    "keys",
    [
        [("due_at", False)],
        [("priority", True)],
        [("title", False)],
        [("updated_at", True)],
        [("priority", True), ("due_at", False)],
    ],
)
def test_sorted_pages(seeded, keys):
    engine, owner = seeded
    _assert_no_sequential_scan_over_tasks(
        engine,
        _repository(engine).list_statement(owner_id=owner, limit=51, filters=TaskFilters(), order=TaskOrder(keys=keys)),
    )


def test_filtered_list(seeded):
    engine, owner = seeded
    now = datetime.now(UTC)
    filters = TaskFilters(
        completed=False,
        priorities=[2, 3],
        tags=["work"],
        due_before=now + timedelta(days=30),
        overdue=False,
        overdue_at=now,
    )
    _assert_no_sequential_scan_over_tasks(
        engine, _repository(engine).list_statement(owner_id=owner, limit=51, filters=filters, order=TaskOrder())
    )


def test_search_ranked(seeded):
    engine, owner = seeded
    filters = TaskFilters(search="quarterly report")
    _assert_no_sequential_scan_over_tasks(
        engine,
        _repository(engine).list_statement(
            owner_id=owner, limit=51, filters=filters, order=TaskOrder(by_relevance=True)
        ),
    )


def test_stats(seeded):
    engine, owner = seeded
    now = datetime.now(UTC)
    _assert_no_sequential_scan_over_tasks(
        engine,
        TaskRepository.stats_statement(
            owner_id=owner,
            now=now,
            week_ago=now - timedelta(days=7),
            month_ago=now - timedelta(days=30),
            week_ahead=now + timedelta(days=7),
        ),
    )


def test_tag_counts(seeded):
    engine, owner = seeded
    with Session(engine) as db, db.connection() as connection:
        rows = connection.execute(
            text(
                "EXPLAIN (FORMAT JSON) SELECT tag, count(*) FROM task_tags "
                "WHERE owner_id = :owner GROUP BY tag ORDER BY tag LIMIT 21"
            ),
            {"owner": owner},
        ).scalar_one()
    nodes = list(_plan_nodes(rows[0]["Plan"]))
    assert not [n for n in nodes if n["Node Type"] == "Seq Scan" and n.get("Relation Name") == "task_tags"]
