"""Todo tasks (brief 002): create, read, replace, complete, delete; list with filters, sort,
search and keyset cursors; tags; bulk changes; statistics. Every change bumps the task's
`version` (its ETag), and a change can be made conditional on the version (If-Match)."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from persistence.tasks.models import NO_DUE_DATE, TASK_PRIORITIES, Task, TaskTag
from persistence.tasks.repository import SORT_COLUMNS, ListedTask, Stats, TaskFilters, TaskOrder
from persistence.unit_of_work import UnitOfWork
from services import events, recurrence, reminders
from services.clock import Clock
from services.cursors import decode_values, encode_values
from services.errors import DomainError, InvalidInput, NotFound, PreconditionFailed
from services.events import EventType
from services.jobs import JobEngine
from services.timestamps import parse_instant

DEFAULT_PRIORITY = "medium"
MAX_SORT_KEYS = 3
MAX_TAGS = 20
MAX_TAG_LENGTH = 40

_KIND_OF_KEY = {
    "created_at": "instant",
    "updated_at": "instant",
    "due_at": "instant",
    "priority": "integer",
    "title": "text",
}


@dataclass(frozen=True)
class TaskPage:
    """One page of tasks and the cursor of the next page (None on the last page)."""

    items: list[ListedTask]
    next_cursor: str | None


@dataclass(frozen=True)
class TaskQuery:
    """A list request as the contract gives it (all optional)."""

    completed: bool | None = None
    priorities: Sequence[str] = ()
    tags: Sequence[str] = ()
    due_before: str | None = None
    due_after: str | None = None
    overdue: bool | None = None
    created_after: str | None = None
    q: str | None = None
    sort: str | None = None


class BulkOutcome(Enum):
    """What one operation of a bulk request did (the handler answers each with its status)."""

    CREATED = "created"
    CHANGED = "changed"
    DELETED = "deleted"


@dataclass(frozen=True)
class BulkResult:
    """The outcome of one operation of a bulk request: what it did and the task, or the error."""

    index: int
    op: str
    outcome: BulkOutcome | None
    task: Task | None = None
    task_id: uuid.UUID | None = None
    error: DomainError | None = None


def normalise_tags(tags: Sequence[str], *, pointer: str | None = "/tags", parameter: str | None = None) -> list[str]:
    """Tags as stored: lower case, whitespace trimmed and collapsed, duplicates dropped, sorted.

    Raises InvalidInput, naming the body member (`pointer`) or query `parameter`, for more than
    20 tags or one over 40 characters once lower-cased (some letters grow: "İ" becomes two).
    """
    where = {"parameter": parameter} if parameter else {"pointer": pointer}
    normalised = sorted({" ".join(tag.lower().split()) for tag in tags} - {""})
    if len(normalised) > MAX_TAGS:
        raise InvalidInput(f"A task has at most {MAX_TAGS} tags.", **where)
    if any(len(tag) > MAX_TAG_LENGTH for tag in normalised):
        raise InvalidInput(f"A tag has at most {MAX_TAG_LENGTH} characters.", **where)
    return normalised


def create_task(*, uow: UnitOfWork, clock: Clock, owner_id: uuid.UUID, data: dict[str, Any], pointer: str = "") -> Task:
    """Create an open task from a validated `TaskCreate` body (title required).

    Raises InvalidInput (naming the member under `pointer`) for tags or a due date the
    contract's schema allows but the rules refuse, and for a `recurrence` without a due date;
    UnsupportedRecurrence (a 400 of its own type) for an RRULE part this service does not
    evaluate (`services.recurrence`)."""
    now = clock.now()
    task = Task(
        id=uuid.uuid4(),
        owner_id=owner_id,
        completed=False,
        completed_at=None,
        created_at=now,
        updated_at=now,
        version=1,
        tag_rows=[],  # known to be none yet: reading the tags later needs no query
    )
    _assign(task, data, pointer=pointer)
    uow.tasks.add(task)
    _event(uow, clock, task, EventType.TASK_CREATED)
    return task


def exported_tasks(*, uow: UnitOfWork, owner_id: uuid.UUID) -> list[Task]:
    """Every task of the owner, oldest first: their data export's section."""
    return uow.tasks.all_of_owner(owner_id)


def get_task(*, uow: UnitOfWork, owner_id: uuid.UUID, task_id: uuid.UUID) -> Task:
    """The owner's task. Raises NotFound for an unknown id and for another user's task alike."""
    task = uow.tasks.get(owner_id=owner_id, task_id=task_id)
    if task is None:
        raise NotFound("No task with this id exists for this user.")
    return task


def replace_task(
    *,
    uow: UnitOfWork,
    clock: Clock,
    owner_id: uuid.UUID,
    task_id: uuid.UUID,
    data: dict[str, Any],
    expected_versions: Collection[int] | None = None,
    pointer: str = "",
    engine: JobEngine | None = None,
) -> Task:
    """Set the whole state of a task from a validated `TaskReplace` body; omitted optional
    fields go back to their defaults. A new due date moves its `minutes_before_due` reminders
    (scheduled on `engine`); completing it skips its pending reminders and, for a recurring
    task, creates the next occurrence (`set_completion`). Raises NotFound, PreconditionFailed,
    InvalidInput or UnsupportedRecurrence."""
    task = _get_for_change(uow, owner_id, task_id, expected_versions)
    now = clock.now()
    due_before, was_completed = task.due_at, task.completed
    _assign(task, data, pointer=pointer)
    _set_completed(task, bool(data.get("completed", False)), now)
    _touch(task, now)
    uow.flush()
    if task.due_at != due_before:
        reminders.due_date_changed(uow=uow, clock=clock, engine=engine, task=task)
    if task.completed and not was_completed:
        _completed(uow, clock, engine, task)
        _event(uow, clock, task, EventType.TASK_COMPLETED)
    return task


def set_completion(
    *,
    uow: UnitOfWork,
    clock: Clock,
    owner_id: uuid.UUID,
    task_id: uuid.UUID,
    completed: bool,
    expected_versions: Collection[int] | None = None,
    engine: JobEngine | None = None,
) -> Task:
    """Mark a task done (stamping `completed_at`) or open again; no change, no new version.

    Completing it skips its pending reminders (issue 14: a task completed before its reminder
    does not fire) and, when the task recurs, creates the next occurrence: a copy due at the
    rule's next date (`services.recurrence.next_occurrence`), open, with the rule (COUNT one
    smaller) and the reminders shifted by the distance between the due dates, scheduled on
    `engine`. Reopening creates nothing and revives no reminder.

    Raises NotFound or PreconditionFailed."""
    task = _get_for_change(uow, owner_id, task_id, expected_versions)
    if task.completed != completed:
        now = clock.now()
        _set_completed(task, completed, now)
        _touch(task, now)
        uow.flush()
        if completed:
            _completed(uow, clock, engine, task)
            _event(uow, clock, task, EventType.TASK_COMPLETED)
    return task


def _completed(uow: UnitOfWork, clock: Clock, engine: JobEngine | None, task: Task) -> Task | None:
    """What completing `task` does besides the flag: skip its reminders, create the next
    occurrence of a recurring task (returned; None when there is none)."""
    reminders.task_completed(uow=uow, task=task)
    if not task.recurrence or task.due_at is None:
        return None
    following = recurrence.next_occurrence(task.recurrence, due_at=task.due_at)
    if following is None:
        return None
    due_at, rule = following
    now = clock.now()
    successor_id = uuid.uuid4()
    successor = Task(
        id=successor_id,
        owner_id=task.owner_id,
        title=task.title,
        description=task.description,
        priority=task.priority,
        priority_rank=task.priority_rank,
        due_at=due_at,
        due_at_key=due_at,
        recurrence=rule,
        completed=False,
        completed_at=None,
        created_at=now,
        updated_at=now,
        version=1,
        tag_rows=[TaskTag(task_id=successor_id, owner_id=task.owner_id, tag=tag) for tag in task.tags],
    )
    uow.tasks.add(successor)
    reminders.copy_to_next(uow=uow, clock=clock, engine=engine, done=task, following=successor)
    return successor


def delete_task(
    *,
    uow: UnitOfWork,
    clock: Clock,
    owner_id: uuid.UUID,
    task_id: uuid.UUID,
    expected_versions: Collection[int] | None = None,
) -> None:
    """Delete the owner's task. Raises NotFound or PreconditionFailed."""
    task = _get_for_change(uow, owner_id, task_id, expected_versions)
    uow.tasks.delete(task)
    events.emit(uow, clock=clock, owner_id=owner_id, type=EventType.TASK_DELETED, data={"task_id": str(task_id)})


def list_tasks(
    *, uow: UnitOfWork, clock: Clock, owner_id: uuid.UUID, limit: int, cursor: str | None, query: TaskQuery
) -> TaskPage:
    """A page of the owner's tasks: filtered, searched (`q`), sorted (`sort`; by relevance when
    `q` is given without `sort`, else newest first), keyset-paginated.

    Raises:
        InvalidInput: a sort outside the allow-list or repeated, a cursor not made for this
            sort, or an instant Python cannot represent.
    """
    now = clock.now()
    order, scope, kinds = _order(query)
    filters = TaskFilters(
        completed=query.completed,
        priorities=[TASK_PRIORITIES.index(p) for p in query.priorities],
        tags=normalise_tags(query.tags, parameter="tag") if query.tags else (),
        due_before=parse_instant(query.due_before, parameter="due_before") if query.due_before else None,
        due_after=parse_instant(query.due_after, parameter="due_after") if query.due_after else None,
        overdue=query.overdue,
        overdue_at=now,
        created_after=parse_instant(query.created_after, parameter="created_after") if query.created_after else None,
        search=query.q.strip() if query.q and query.q.strip() else None,
    )
    if order.by_relevance and filters.search is None:
        order = TaskOrder()
        scope, kinds = "created_at:desc", ["instant", "uuid"]
    after = decode_values(cursor, kinds=kinds, scope=scope) if cursor else None
    rows = uow.tasks.list_page(owner_id=owner_id, limit=limit + 1, filters=filters, order=order, after=after)
    items = [task for task, _ in rows[:limit]]
    next_cursor = encode_values(rows[limit - 1][1], scope=scope) if len(rows) > limit else None
    return TaskPage(items=items, next_cursor=next_cursor)


def parse_sort(sort: str) -> list[tuple[str, bool]]:
    """``-due_at,priority`` -> ``[("due_at", True), ("priority", False)]``.

    Raises InvalidInput (parameter ``sort``) for an unknown or repeated field, or more than 3.
    """
    keys: list[tuple[str, bool]] = []
    for part in sort.split(","):
        name = part.strip().removeprefix("-")
        if name not in SORT_COLUMNS:
            raise InvalidInput(
                f"Cannot sort by {part.strip()!r}; use {', '.join(SORT_COLUMNS)}, each optionally with a leading '-'.",
                parameter="sort",
            )
        if name in {key for key, _ in keys}:
            raise InvalidInput(f"{name} appears twice in sort.", parameter="sort")
        keys.append((name, part.strip().startswith("-")))
    if len(keys) > MAX_SORT_KEYS:
        raise InvalidInput(f"Sort by at most {MAX_SORT_KEYS} fields.", parameter="sort")
    return keys


def _order(query: TaskQuery) -> tuple[TaskOrder, str, list[str]]:
    """The order, the cursor scope naming it, and the kinds of the cursor's values."""
    if query.sort:
        keys = parse_sort(query.sort)
        scope = ",".join(f"{name}:{'desc' if descending else 'asc'}" for name, descending in keys)
        return TaskOrder(keys=keys), scope, [*(_KIND_OF_KEY[name] for name, _ in keys), "uuid"]
    if query.q and query.q.strip():
        return TaskOrder(by_relevance=True), "relevance:" + query.q.strip(), ["number", "instant", "uuid"]
    return TaskOrder(), "created_at:desc", ["instant", "uuid"]


def stats(*, uow: UnitOfWork, clock: Clock, owner_id: uuid.UUID) -> tuple[Stats, datetime]:
    """The owner's statistics (computed by the database) and the instant they refer to."""
    now = clock.now()
    computed = uow.tasks.stats(
        owner_id=owner_id,
        now=now,
        week_ago=now - timedelta(days=7),
        month_ago=now - timedelta(days=30),
        week_ahead=now + timedelta(days=7),
    )
    return computed, now


def tag_counts(
    *, uow: UnitOfWork, owner_id: uuid.UUID, limit: int, cursor: str | None
) -> tuple[list[tuple[str, int]], str | None]:
    """A page of the owner's tags (alphabetical) with task counts, and the next page's cursor.
    Raises InvalidInput for a cursor not made by this operation."""
    after = decode_values(cursor, kinds=["text"], scope="tags")[0] if cursor else None
    rows = uow.tasks.tag_counts(owner_id=owner_id, limit=limit + 1, after=after)
    items = rows[:limit]
    return items, (encode_values([items[-1][0]], scope="tags") if len(rows) > limit else None)


def bulk(
    *,
    uow: UnitOfWork,
    clock: Clock,
    owner_id: uuid.UUID,
    operations: Sequence[dict[str, Any]],
    engine: JobEngine | None = None,
) -> list[BulkResult]:
    """Apply up to 100 operations (create, replace, complete, delete), each on its own: an
    operation that fails leaves no trace (its savepoint is rolled back) and the others go on.
    The caller answers 207 Multi-Status with one result per operation (Zalando rule 152)."""
    results = []
    for index, operation in enumerate(operations):
        op = operation["op"]
        try:
            with uow.savepoint():
                result = _apply(uow, clock, engine, owner_id, index, op, operation)
        except DomainError as error:
            task_id = operation.get("id")
            result = BulkResult(
                index=index, op=op, outcome=None, error=error, task_id=uuid.UUID(task_id) if task_id else None
            )
        results.append(result)
    return results


def _apply(
    uow: UnitOfWork,
    clock: Clock,
    engine: JobEngine | None,
    owner_id: uuid.UUID,
    index: int,
    op: str,
    operation: dict[str, Any],
) -> BulkResult:
    pointer = f"/operations/{index}/task"
    if op == "create":
        task = create_task(uow=uow, clock=clock, owner_id=owner_id, data=operation["task"], pointer=pointer)
        return BulkResult(index=index, op=op, outcome=BulkOutcome.CREATED, task=task, task_id=task.id)
    task_id = uuid.UUID(operation["id"])
    versions = {operation["if_match_version"]} if "if_match_version" in operation else None
    if op == "replace":
        task = replace_task(
            uow=uow,
            clock=clock,
            owner_id=owner_id,
            task_id=task_id,
            data=operation["task"],
            expected_versions=versions,
            pointer=pointer,
            engine=engine,
        )
        return BulkResult(index=index, op=op, outcome=BulkOutcome.CHANGED, task=task, task_id=task_id)
    if op == "complete":
        task = set_completion(
            uow=uow,
            clock=clock,
            owner_id=owner_id,
            task_id=task_id,
            completed=operation.get("completed", True),
            expected_versions=versions,
            engine=engine,
        )
        return BulkResult(index=index, op=op, outcome=BulkOutcome.CHANGED, task=task, task_id=task_id)
    delete_task(uow=uow, clock=clock, owner_id=owner_id, task_id=task_id, expected_versions=versions)
    return BulkResult(index=index, op=op, outcome=BulkOutcome.DELETED, task_id=task_id)


def _get_for_change(
    uow: UnitOfWork, owner_id: uuid.UUID, task_id: uuid.UUID, expected_versions: Collection[int] | None
) -> Task:
    """The task to change, locked until the unit of work ends, so the version compared here is
    the one the change replaces (no concurrent writer in between: issue 11). Raises NotFound or
    PreconditionFailed."""
    task = uow.tasks.get_for_change(owner_id=owner_id, task_id=task_id)
    if task is None:
        raise NotFound("No task with this id exists for this user.")
    if expected_versions is not None and task.version not in expected_versions:
        raise PreconditionFailed(f"The task has changed (its version is now {task.version}); read it again and retry.")
    return task


def _assign(task: Task, data: dict[str, Any], *, pointer: str) -> None:
    """Set the writable fields of `task` from a validated body; omitted ones get defaults."""
    task.title = data["title"]
    task.description = data.get("description")
    task.priority = data.get("priority") or DEFAULT_PRIORITY
    task.priority_rank = TASK_PRIORITIES.index(task.priority)
    task.due_at = parse_instant(data["due_at"], pointer=f"{pointer}/due_at") if data.get("due_at") else None
    task.due_at_key = task.due_at or NO_DUE_DATE
    rule = data.get("recurrence")
    task.recurrence = recurrence.validate(rule, due_at=task.due_at, pointer=f"{pointer}/recurrence") if rule else None
    tags = normalise_tags(data.get("tags") or [], pointer=f"{pointer}/tags")
    if tags != task.tags:
        # Keep the rows of tags that stay: deleting and re-inserting one primary key in a
        # single flush would collide (SQLAlchemy inserts before it deletes).
        kept = {row.tag: row for row in task.tag_rows}
        task.tag_rows = [kept.get(tag) or TaskTag(task_id=task.id, owner_id=task.owner_id, tag=tag) for tag in tags]


def _event(uow: UnitOfWork, clock: Clock, task: Task, kind: EventType) -> None:
    """Record a task event for the owner's webhooks (`services.events`; the contract's
    `TaskEventData`), published at the commit."""
    events.emit(uow, clock=clock, owner_id=task.owner_id, type=kind, data={"task": events.task_data(task)})


def _touch(task: Task, now: datetime) -> None:
    task.updated_at = now
    task.version = (task.version or 0) + 1


def _set_completed(task: Task, completed: bool, now: datetime) -> None:
    if completed and not task.completed:
        task.completed_at = now
    elif not completed:
        task.completed_at = None
    task.completed = completed
