"""A list's statement is built once per shape of query (`persistence.tasks.repository.ListShape`)
and its values are parameters: another owner, limit, cursor or filter value reuses it, a new
filter or sort makes one more; and the rows come back as `ListedTask`s, not ORM objects."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from persistence.tasks import repository
from persistence.tasks.models import Task
from persistence.tasks.repository import ListedTask, TaskFilters, TaskOrder, TaskRepository
from persistence.unit_of_work import UnitOfWork
from tests.helpers import bearer, session_factory


def test_one_statement_per_shape_and_rows_not_objects(app, client, account):
    for title in ("a", "b", "c"):
        client.post(account.tasks_path, json={"title": title, "tags": ["x"]}, headers=bearer(account.access_token))
    owner = uuid.UUID(account.id)
    repository._LIST_STATEMENTS.clear()
    with UnitOfWork(session_factory(app)) as uow:
        tasks: TaskRepository = uow.tasks
        first = tasks.list_page(owner_id=owner, limit=2, filters=TaskFilters(), order=TaskOrder())
        assert len(repository._LIST_STATEMENTS) == 1
        assert [type(task) for task, _ in first] == [ListedTask, ListedTask]
        assert [task.title for task, _ in first] == ["c", "b"] and first[0][0].tags == ["x"]
        after = tasks.list_page(owner_id=owner, limit=5, filters=TaskFilters(), order=TaskOrder(), after=first[-1][1])
        assert [task.title for task, _ in after] == ["a"]
        tasks.list_page(owner_id=owner, limit=9, filters=TaskFilters(), order=TaskOrder(), after=first[0][1])
        tasks.list_page(owner_id=uuid.uuid4(), limit=3, filters=TaskFilters(), order=TaskOrder())
        assert len(repository._LIST_STATEMENTS) == 2  # the first page, and a page after a position
        done = TaskFilters(completed=True, overdue=False, overdue_at=datetime.now(UTC))
        assert tasks.list_page(owner_id=owner, limit=5, filters=done, order=TaskOrder()) == []
        open_ = TaskFilters(completed=False, overdue=False, overdue_at=datetime.now(UTC))
        assert len(tasks.list_page(owner_id=owner, limit=5, filters=open_, order=TaskOrder())) == 3
        assert len(repository._LIST_STATEMENTS) == 3  # one more shape, whatever the values
        assert not any(isinstance(loaded, Task) for loaded in uow.session.identity_map.values())  # no ORM load
