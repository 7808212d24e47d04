"""Queries on todo tasks. Every read takes the owner and filters by it, so no caller can reach
another user's task by forgetting a check.

Lists are keyset-paginated under any sort: the page after a position is read with a comparison
on the sort keys (a row-value comparison when every key sorts the same way, which an index on
``(owner_id, key, id)`` serves as a range scan), never with an offset.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import (
    REAL,
    BindParameter,
    Boolean,
    ColumnElement,
    Integer,
    Select,
    SQLColumnExpression,
    String,
    and_,
    bindparam,
    case,
    cast,
    delete,
    exists,
    func,
    insert,
    literal_column,
    or_,
    select,
    true,
    tuple_,
)
from sqlalchemy.orm import Session

from persistence.database import for_update, read_rows
from persistence.tasks.models import TAG_SEPARATOR, Task, TaskTag

SORT_COLUMNS = {
    "created_at": Task.created_at,
    "updated_at": Task.updated_at,
    "due_at": Task.due_at_key,
    "priority": Task.priority_rank,
    "title": Task.title,
}
"""Sortable fields (the contract's allow-list) and the not-null column each sorts by."""


@dataclass(frozen=True)
class TaskFilters:
    """Which of the owner's tasks to list; every field is optional and they combine with AND."""

    completed: bool | None = None
    priorities: Sequence[int] = ()
    tags: Sequence[str] = ()
    due_before: datetime | None = None
    due_after: datetime | None = None
    overdue_at: datetime | None = None
    """With `overdue`: the instant a task must be due before (and still open) to be overdue."""
    overdue: bool | None = None
    created_after: datetime | None = None
    search: str | None = None


@dataclass(frozen=True)
class TaskOrder:
    """The sort: ``[(field, descending), …]`` from SORT_COLUMNS; `by_relevance` puts the best
    search matches first (then newest first) and needs `TaskFilters.search`."""

    keys: Sequence[tuple[str, bool]] = field(default_factory=lambda: [("created_at", True)])
    by_relevance: bool = False


@dataclass(frozen=True, slots=True)
class ListedTask:
    """A task as a list reads it: its columns and its tags, read with SQLAlchemy Core (no ORM
    identity map, no change tracking: a page is only read; issue 13 measured the ORM's loading
    at two thirds of the query's CPU). The attributes a representation reads are `Task`'s."""

    id: uuid.UUID
    title: str
    description: str | None
    completed: bool
    completed_at: datetime | None
    priority: str
    due_at: datetime | None
    recurrence: str | None
    tags: list[str]
    version: int
    created_at: datetime
    updated_at: datetime


_TASK_COLUMNS = tuple(attribute.key for attribute in Task.__mapper__.column_attrs)
"""The attributes of `Task` that are columns (what `TaskRepository.add` writes)."""

LISTED_COLUMNS = (
    Task.id,
    Task.title,
    Task.description,
    Task.completed,
    Task.completed_at,
    Task.priority,
    Task.due_at,
    Task.recurrence,
    Task.version,
    Task.created_at,
    Task.updated_at,
)
"""The columns a list reads (`list_page` unpacks them in this order; then the tags and the sort keys)."""


@dataclass(frozen=True)
class Stats:
    """Aggregates over one owner's tasks (`now`-relative windows)."""

    total: int
    completed: int
    by_priority: dict[str, int]
    overdue: int
    due_next_7_days: int
    completed_last_7_days: int
    completed_last_30_days: int


class TaskRepository:
    """Reads and writes `tasks` and `task_tags` within the caller's unit of work."""

    def __init__(self, db: Session) -> None:
        self.db = db

    @property
    def _postgres(self) -> bool:
        return self.db.get_bind().dialect.name == "postgresql"

    def all_of_owner(self, owner_id: uuid.UUID) -> list[Task]:
        """All the owner's tasks, oldest first (for the data export)."""
        return list(self.db.scalars(select(Task).where(Task.owner_id == owner_id).order_by(Task.created_at, Task.id)))

    def add(self, task: Task) -> None:
        """Write a new task and its tag rows now, in the unit of work's transaction.

        Core INSERTs of the attributes set on `task` (columns left unset get their defaults):
        the ORM's flush cost half as much CPU again for one new row (issue 13). `task` stays
        as built and is not tracked by the session; a change to it in the same unit of work
        goes through `get_for_change`, which reads the row.
        """
        connection = self.db.connection()
        connection.execute(insert(Task), [{key: task.__dict__[key] for key in _TASK_COLUMNS if key in task.__dict__}])
        tags = task.__dict__.get("tag_rows") or []
        if tags:
            connection.execute(
                insert(TaskTag), [{"task_id": task.id, "owner_id": task.owner_id, "tag": row.tag} for row in tags]
            )

    def get(self, *, owner_id: uuid.UUID, task_id: uuid.UUID) -> Task | None:
        """The owner's task with this id, or None (also when it belongs to someone else)."""
        return self.db.scalars(select(Task).where(Task.id == task_id, Task.owner_id == owner_id)).one_or_none()

    def get_for_change(self, *, owner_id: uuid.UUID, task_id: uuid.UUID) -> Task | None:
        """The owner's task, locked until the unit of work ends (`persistence.database.for_update`):
        a concurrent change waits for this one and then reads its result, so a version checked
        here is still the version when the change is written. None when there is no such task
        (also after a concurrent delete)."""
        statement = select(Task).where(Task.id == task_id, Task.owner_id == owner_id)
        return self.db.scalars(for_update(self.db, statement)).one_or_none()

    def delete(self, task: Task) -> None:
        """Delete a task that was read through `get` (its tags go with it)."""
        self.db.execute(delete(Task).where(Task.id == task.id, Task.owner_id == task.owner_id))
        self.db.expunge(task)

    def list_page(
        self,
        *,
        owner_id: uuid.UUID,
        limit: int,
        filters: TaskFilters,
        order: TaskOrder,
        after: Sequence[Any] | None = None,
    ) -> list[tuple[ListedTask, list[Any]]]:
        """Up to `limit` of the owner's tasks in `order`, each with its position (the values of
        its sort keys and id, to make the next page's cursor).

        Read through the session's connection as Core rows (in its transaction, without loading
        ORM objects), with a statement built once per shape of query (`ListShape`): a page
        costs about a third of the CPU of an ORM load of a freshly built statement (issue 13).

        Args:
            after: the position of the previous page's last task; only tasks after it come.
        """
        statement, parameters = self._prepared_list(owner_id, limit, filters, order, after)
        page = []
        for row in read_rows(self.db, statement, parameters):
            (task_id, title, description, completed, completed_at, priority, due_at, recurrence, version, created) = (
                row[:10]
            )
            updated, listed_tags, sort_keys = row[10], row[11], row[12:]
            task = ListedTask(
                id=task_id,
                title=title,
                description=description,
                completed=completed,
                completed_at=completed_at,
                priority=priority,
                due_at=due_at,
                recurrence=recurrence,
                tags=sorted(tag for tag in listed_tags.split(TAG_SEPARATOR) if tag) if listed_tags else [],
                version=version,
                created_at=created,
                updated_at=updated,
            )
            page.append((task, [*sort_keys, task_id]))
        return page

    def list_statement(
        self,
        *,
        owner_id: uuid.UUID,
        limit: int,
        filters: TaskFilters,
        order: TaskOrder,
        after: Sequence[Any] | None = None,
    ) -> Select[*tuple[Any, ...]]:
        """The SELECT behind `list_page` with its parameters bound (what the query-plan test EXPLAINs)."""
        statement, parameters = self._prepared_list(owner_id, limit, filters, order, after)
        return statement.params(parameters)

    def _prepared_list(
        self,
        owner_id: uuid.UUID,
        limit: int,
        filters: TaskFilters,
        order: TaskOrder,
        after: Sequence[Any] | None,
    ) -> tuple[Select[*tuple[Any, ...]], dict[str, Any]]:
        """The statement for this shape of query, built on first use and then reused (a reused
        statement also keeps its memoized cache key: SQLAlchemy neither builds nor keys it
        again), and the parameters that fill it."""
        words = _words(filters.search) if filters.search and not self._postgres else []
        shape = ListShape(
            postgres=self._postgres,
            keys=tuple((name, descending) for name, descending in order.keys),
            by_relevance=order.by_relevance,
            completed=filters.completed is not None,
            priorities=bool(filters.priorities),
            tags=len(filters.tags),
            due_before=filters.due_before is not None,
            due_after=filters.due_after is not None,
            overdue=filters.overdue if filters.overdue_at is not None else None,
            created_after=filters.created_after is not None,
            search=bool(filters.search),
            words=len(words),
            after=after is not None,
        )
        statement = _LIST_STATEMENTS.get(shape)
        if statement is None:
            statement = _LIST_STATEMENTS.setdefault(shape, shape.statement())
        parameters: dict[str, Any] = {"owner_id": owner_id, "limit": limit}
        for name in ("completed", "due_before", "due_after", "overdue_at", "created_after", "search"):
            if getattr(filters, name) is not None:
                parameters[name] = getattr(filters, name)
        if filters.priorities:
            parameters["priorities"] = list(filters.priorities)
        parameters.update((f"tag_{i}", tag) for i, tag in enumerate(filters.tags))
        parameters.update((f"word_{i}", word) for i, word in enumerate(words))
        parameters.update((f"after_{i}", value) for i, value in enumerate(after or ()))
        return statement, parameters

    def stats(
        self, *, owner_id: uuid.UUID, now: datetime, week_ago: datetime, month_ago: datetime, week_ahead: datetime
    ) -> Stats:
        """The owner's task statistics, computed by the database in one aggregate query."""
        row = self.db.execute(
            self.stats_statement(
                owner_id=owner_id, now=now, week_ago=week_ago, month_ago=month_ago, week_ahead=week_ahead
            )
        ).one()
        total, completed, low, medium, high, urgent, overdue, due_soon, last_7, last_30 = (int(v) for v in row)
        return Stats(
            total=total,
            completed=completed,
            by_priority={"low": low, "medium": medium, "high": high, "urgent": urgent},
            overdue=overdue,
            due_next_7_days=due_soon,
            completed_last_7_days=last_7,
            completed_last_30_days=last_30,
        )

    @staticmethod
    def stats_statement(
        *, owner_id: uuid.UUID, now: datetime, week_ago: datetime, month_ago: datetime, week_ahead: datetime
    ) -> Select[*tuple[Any, ...]]:
        """The aggregate SELECT behind `stats`: one pass over the owner's rows of the covering
        index ``ix_tasks_owner_stats`` (no table access on PostgreSQL when the visibility map allows)."""

        def count_where(condition: ColumnElement[bool]) -> ColumnElement[int]:
            return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)

        open_ = Task.completed.is_(False)
        return select(
            func.count(),
            count_where(Task.completed.is_(True)),
            *[count_where(Task.priority_rank == rank) for rank in range(4)],
            count_where(and_(open_, Task.due_at_key < now)),
            count_where(and_(open_, Task.due_at_key >= now, Task.due_at_key < week_ahead)),
            count_where(and_(Task.completed.is_(True), Task.completed_at >= week_ago)),
            count_where(and_(Task.completed.is_(True), Task.completed_at >= month_ago)),
        ).where(Task.owner_id == owner_id)

    def tag_counts(self, *, owner_id: uuid.UUID, limit: int, after: str | None = None) -> list[tuple[str, int]]:
        """Up to `limit` of the owner's tags in alphabetical order, each with its number of tasks."""
        statement = select(TaskTag.tag, func.count()).where(TaskTag.owner_id == owner_id)
        if after is not None:
            statement = statement.where(TaskTag.tag > after)
        statement = statement.group_by(TaskTag.tag).order_by(TaskTag.tag).limit(limit)
        return [(tag, int(count)) for tag, count in self.db.execute(statement).all()]


def _words(text: str) -> list[str]:
    """LIKE patterns for every word of `text` (at most 100: the contract caps `q` at 200
    characters), wildcards escaped."""
    words = text.lower().split() or [""]
    return ["%" + w.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%" for w in words]


@dataclass(frozen=True)
class ListShape:
    """What makes one list statement differ from another: the sort, which filters are present
    (and how many tags and search words), whether a page comes after a position, the dialect.
    Values are not part of it: they are the statement's parameters. There are a few hundred
    shapes at most (five sort fields, three keys, the filters' presence), so `_LIST_STATEMENTS`
    stays small."""

    postgres: bool
    keys: tuple[tuple[str, bool], ...]
    by_relevance: bool
    completed: bool
    priorities: bool
    tags: int
    due_before: bool
    due_after: bool
    overdue: bool | None
    created_after: bool
    search: bool
    words: int
    after: bool

    def statement(self) -> Select[*tuple[Any, ...]]:
        """The SELECT of this shape, its values left as named parameters: ``owner_id``,
        ``limit``, one per present filter (``tag_<i>``, ``word_<i>`` for SQLite's search
        words), ``after_<i>`` for the position's values."""
        keys = self._order_expressions()
        statement = select(*LISTED_COLUMNS, self._tag_list(), *[expression for expression, _ in keys[:-1]])
        statement = statement.where(Task.owner_id == bindparam("owner_id"), *self._conditions())
        if self.after:
            statement = statement.where(self._after(keys))
        statement = statement.order_by(*[e.desc() if descending else e.asc() for e, descending in keys])
        return statement.limit(bindparam("limit", type_=Integer))

    def _order_expressions(self) -> list[tuple[SQLColumnExpression[Any], bool]]:
        keys: list[tuple[SQLColumnExpression[Any], bool]]
        if self.by_relevance:
            keys = [(self._relevance(), True), (Task.created_at, True)]
        else:
            keys = [(SORT_COLUMNS[name], descending) for name, descending in self.keys]
        last_descending = keys[-1][1]
        return [*keys, (Task.id, last_descending)]

    def _tag_list(self) -> ColumnElement[str]:
        """The task's tags joined by TAG_SEPARATOR, as a correlated subquery (index on task_id);
        '' for a task without tags."""
        aggregate = (
            func.string_agg(TaskTag.tag, TAG_SEPARATOR)
            if self.postgres
            else func.group_concat(TaskTag.tag, TAG_SEPARATOR)
        )
        listed = select(aggregate).where(TaskTag.task_id == Task.id).correlate(Task).scalar_subquery()
        return func.coalesce(listed, "")

    def _conditions(self) -> list[ColumnElement[bool]]:
        conditions: list[ColumnElement[bool]] = []
        if self.completed:
            conditions.append(Task.completed == bindparam("completed", type_=Boolean))
        if self.priorities:
            conditions.append(Task.priority_rank.in_(bindparam("priorities", expanding=True)))
        for i in range(self.tags):
            conditions.append(
                exists().where(
                    TaskTag.task_id == Task.id,
                    TaskTag.owner_id == bindparam("owner_id"),
                    TaskTag.tag == bindparam(f"tag_{i}"),
                )
            )
        if self.due_before:
            conditions.append(and_(Task.due_at.is_not(None), Task.due_at < bindparam("due_before")))
        if self.due_after:
            conditions.append(Task.due_at >= bindparam("due_after"))
        if self.overdue is not None:
            overdue = and_(Task.completed.is_(False), Task.due_at_key < bindparam("overdue_at"))
            conditions.append(overdue if self.overdue else ~overdue)
        if self.created_after:
            conditions.append(Task.created_at >= bindparam("created_after"))
        if self.search:
            conditions.append(self._matches())
        return conditions

    # Full-text search: PostgreSQL uses the generated tsvector and its GIN index (English
    # stemming, web-search syntax: "quoted phrases", -exclusions, or). SQLite, the single-process
    # default, has no index for it: every word must appear in the title or the description
    # (case-insensitive substring), and title matches rank first.

    def _query(self) -> ColumnElement[Any]:
        return func.websearch_to_tsquery(literal_column("'english'"), bindparam("search", type_=String))

    def _word_parameters(self) -> list[BindParameter[str]]:
        return [bindparam(f"word_{i}", type_=String) for i in range(self.words)]

    def _matches(self) -> ColumnElement[bool]:
        if self.postgres:
            return literal_column("tasks.search_vector").op("@@")(self._query())
        return and_(
            *[
                or_(
                    func.lower(Task.title).like(w, escape="\\"),
                    func.lower(func.coalesce(Task.description, "")).like(w, escape="\\"),
                )
                for w in self._word_parameters()
            ]
        )

    def _relevance(self) -> ColumnElement[Any]:
        if self.postgres:
            return func.ts_rank(literal_column("tasks.search_vector"), self._query(), type_=REAL)
        score: ColumnElement[Any] = literal_column("0")
        for w in self._word_parameters():
            score = (
                score
                + case((func.lower(Task.title).like(w, escape="\\"), 2), else_=0)
                + case((func.lower(func.coalesce(Task.description, "")).like(w, escape="\\"), 1), else_=0)
            )
        return score

    def _after(self, keys: list[tuple[SQLColumnExpression[Any], bool]]) -> ColumnElement[bool]:
        """Rows strictly after the position ``after_<i>`` in the order `keys`.

        Same direction for every key: one row-value comparison, which an index serves as a range.
        Mixed directions: the expanded form (k1 beyond v1) OR (k1 = v1 AND k2 beyond v2) OR ….
        PostgreSQL's rank is a REAL: its position is compared as one (a double would never be equal).
        """
        values: list[ColumnElement[Any]] = []
        for i, (expression, _) in enumerate(keys):
            value = bindparam(f"after_{i}", type_=getattr(expression, "type", None))  # the key's own type
            values.append(cast(value, REAL) if self.by_relevance and self.postgres and i == 0 else value)
        directions = {descending for _, descending in keys}
        if len(directions) == 1:
            left, right = tuple_(*[e for e, _ in keys]), tuple_(*values)
            return left < right if directions == {True} else left > right
        alternatives = []
        for i, (expression, descending) in enumerate(keys):
            equal = [keys[j][0] == values[j] for j in range(i)]
            beyond = expression < values[i] if descending else expression > values[i]
            alternatives.append(and_(true(), *equal, beyond))
        return or_(*alternatives)


_LIST_STATEMENTS: dict[ListShape, Select[*tuple[Any, ...]]] = {}
"""Each shape's statement, built once per process (`TaskRepository._prepared_list`)."""
