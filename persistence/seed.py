"""Bulk loading of realistic users and tasks, for development and benchmarks (`charter seed`).

PostgreSQL gets `COPY … FROM STDIN` (psycopg 3), which loads a million tasks in well under a
minute; SQLite gets batched `executemany` inserts. Rows bypass the ORM on purpose: this is a
loader, not the service's write path, so it fills the sort keys (`priority_rank`,
`due_at_key`) itself.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, insert, text

from persistence.accounts.models import User
from persistence.tasks.models import NO_DUE_DATE, TASK_PRIORITIES, Task, TaskTag

VERBS = [
    "Write",
    "Review",
    "Plan",
    "Call",
    "Email",
    "Fix",
    "Prepare",
    "Book",
    "Update",
    "Clean",
    "Order",
    "Pay",
    "Draft",
    "Check",
    "Send",
    "Buy",
    "Schedule",
    "Test",
    "Read",
    "Organise",
]
OBJECTS = [
    "the quarterly report",
    "the budget",
    "the dentist",
    "the team meeting",
    "the invoice",
    "the roof",
    "the release notes",
    "the car service",
    "groceries",
    "the tax return",
    "the slides",
    "the contract",
    "the garden",
    "the onboarding guide",
    "flights to Lisbon",
    "the database backup",
    "the newsletter",
    "the kitchen",
    "the insurance claim",
    "the birthday present",
]
DETAILS = [
    "Before the end of the week.",
    "Ask Sam for the numbers first.",
    "Two pages at most.",
    "Keep the receipts.",
    "Check the calendar.",
    "Use the new template.",
    None,
    None,
    None,
]
TAGS = ["work", "home", "finance", "health", "errands", "urgent-ish", "someday", "family", "travel", "reading"]
BATCH = 5000


def fake_tasks(owner_id: uuid.UUID, count: int, *, now: datetime, rng: random.Random) -> Iterator[dict[str, Any]]:
    """`count` plausible tasks: mixed priorities, about 30 % done, 60 % with a due date around now."""
    for _ in range(count):
        created = now - timedelta(seconds=rng.randint(0, 365 * 86400))
        done = rng.random() < 0.3
        due = created + timedelta(days=rng.randint(-10, 60)) if rng.random() < 0.6 else None
        priority = rng.choices(TASK_PRIORITIES, weights=[3, 5, 2, 1])[0]
        yield {
            "id": uuid.uuid4(),
            "owner_id": owner_id,
            "title": f"{rng.choice(VERBS)} {rng.choice(OBJECTS)}",
            "description": rng.choice(DETAILS),
            "completed": done,
            "completed_at": created + timedelta(days=rng.randint(0, 30)) if done else None,
            "priority": priority,
            "priority_rank": TASK_PRIORITIES.index(priority),
            "due_at": due,
            "due_at_key": due or NO_DUE_DATE,
            "created_at": created,
            "updated_at": created,
            "version": 1,
            "tags": rng.sample(TAGS, rng.choice([0, 0, 1, 1, 2, 3])),
        }


TASK_COLUMNS = [
    "id",
    "owner_id",
    "title",
    "description",
    "completed",
    "completed_at",
    "priority",
    "priority_rank",
    "due_at",
    "due_at_key",
    "created_at",
    "updated_at",
    "version",
]


def seed(
    engine: Engine,
    *,
    users: int,
    tasks_per_user: int,
    password_hash: str,
    email_prefix: str = "seed",
    progress: Callable[[int], None] = lambda _n: None,
    seed_value: int | None = None,
) -> list[tuple[uuid.UUID, str]]:
    """Create `users` accounts (``<prefix>-<n>@example.com``, all with `password_hash`) with
    `tasks_per_user` tasks each; `progress(n)` is called as every n tasks are written.

    Returns the (id, email) of each user created.
    """
    rng = random.Random(seed_value)  # noqa: S311 - fake data, not secrets
    now = datetime.now(UTC)
    created = []
    postgres = engine.dialect.name == "postgresql"
    for number in range(users):
        user_id = uuid.uuid4()
        email = f"{email_prefix}-{number}-{user_id.hex[:6]}@example.com"
        with engine.begin() as connection:
            connection.execute(
                insert(User).values(
                    id=user_id,
                    email=email,
                    display_name=f"Seed User {number}",
                    password_hash=password_hash,
                    role="user",
                    status="active",
                    created_at=now,
                    updated_at=now,
                )
            )
        add_tasks(engine, owner_id=user_id, count=tasks_per_user, rng=rng, progress=progress, analyze=False)
        created.append((user_id, email))
    if postgres:
        _analyze(engine)
    return created


def add_tasks(
    engine: Engine,
    *,
    owner_id: uuid.UUID,
    count: int,
    rng: random.Random | None = None,
    progress: Callable[[int], None] = lambda _n: None,
    analyze: bool = True,
) -> None:
    """Add `count` fake tasks to an existing account (then refresh PostgreSQL's statistics)."""
    rows = fake_tasks(owner_id, count, now=datetime.now(UTC), rng=rng or random.Random())  # noqa: S311
    if engine.dialect.name == "postgresql":
        _copy(engine, rows, progress)
        if analyze:
            _analyze(engine)
    else:
        _insert(engine, rows, progress)


def _analyze(engine: Engine) -> None:
    """VACUUM ANALYZE after a bulk load: fresh statistics for the planner, and a visibility map
    so index-only scans (the statistics query's covering index) need not visit the table."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE tasks"))
        connection.execute(text("VACUUM ANALYZE task_tags"))


def _copy(engine: Engine, rows: Iterator[dict[str, Any]], progress: Callable[[int], None]) -> None:
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        tags: list[tuple[uuid.UUID, uuid.UUID, str]] = []
        written = 0
        with cursor.copy(f"COPY tasks ({', '.join(TASK_COLUMNS)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row([row[column] for column in TASK_COLUMNS])
                tags.extend((row["id"], row["owner_id"], tag) for tag in row["tags"])
                written += 1
                if written % BATCH == 0:
                    progress(BATCH)
        progress(written % BATCH)
        with cursor.copy("COPY task_tags (task_id, owner_id, tag) FROM STDIN") as copy:
            for tag_row in tags:
                copy.write_row(tag_row)
        raw.commit()
    finally:
        raw.close()


def _insert(engine: Engine, rows: Iterator[dict[str, Any]], progress: Callable[[int], None]) -> None:
    batch: list[dict[str, Any]] = []

    def flush() -> None:
        with engine.begin() as connection:
            connection.execute(insert(Task), [{k: v for k, v in row.items() if k != "tags"} for row in batch])
            tag_rows = [{"task_id": r["id"], "owner_id": r["owner_id"], "tag": t} for r in batch for t in r["tags"]]
            if tag_rows:
                connection.execute(insert(TaskTag), tag_rows)
        progress(len(batch))
        batch.clear()

    for row in rows:
        batch.append(row)
        if len(batch) == BATCH:
            flush()
    if batch:
        flush()
