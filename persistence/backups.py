"""What a backup must know about a database's content, read with SQL: every table's row count,
the schema revision (Alembic's head as stored in ``alembic_version``), whether the database is
empty, a content digest per table, and on PostgreSQL an exported snapshot that `pg_dump` then
dumps from. The adapter of `services.backups.DatabaseInventory`.

Tables are those the database has (reflected), not those the models name: a restore is checked
against what was dumped, whatever the code's version.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, column, create_engine, func, inspect, select, table, text

ALEMBIC_TABLE = "alembic_version"


@dataclass(frozen=True)
class DatabaseFacts:
    """A database's content in figures: `schema_revision` (None: never migrated) and the row
    count of every table, by name."""

    schema_revision: str | None
    table_counts: dict[str, int]


@dataclass(frozen=True)
class Snapshot:
    """A consistent view of the database: `id` is PostgreSQL's exported snapshot (for
    ``pg_dump --snapshot``), None on SQLite; `facts` are read in it (None on SQLite, whose copy
    is read afterwards: `facts_of_sqlite_file`)."""

    id: str | None
    facts: DatabaseFacts | None


def _table_names(connection: Connection) -> list[str]:
    names = inspect(connection).get_table_names()
    return sorted(name for name in names if not name.startswith("sqlite_"))


def _facts(connection: Connection) -> DatabaseFacts:
    names = _table_names(connection)
    counts = {
        name: int(connection.execute(select(func.count()).select_from(table(name))).scalar_one()) for name in names
    }
    revision = None
    if ALEMBIC_TABLE in names:
        revision = connection.execute(select(column("version_num")).select_from(table(ALEMBIC_TABLE))).scalar()
    return DatabaseFacts(schema_revision=revision, table_counts=counts)


MIGRATION_DATA_TABLES = frozenset({"plans"})
"""Tables a migration fills (the plan catalogue, migration 0015): rows there do not make a
database "used"; a restore replaces them with the archive's."""


class DatabaseInventory:
    """The figures of the database behind `engine` (`DatabaseFacts`), its emptiness, table
    digests and, on PostgreSQL, exported snapshots.

    Args:
        engine: an engine on the database (its own: a backup runs no statement timeout).
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.kind = "postgresql" if engine.dialect.name == "postgresql" else "sqlite"

    def facts(self) -> DatabaseFacts:
        """Every table's row count and the schema revision, read in one transaction."""
        with self.engine.connect() as connection:
            if self.kind == "postgresql":
                connection = connection.execution_options(isolation_level="REPEATABLE READ")
            with connection.begin():
                return _facts(connection)

    def is_empty(self) -> bool:
        """Whether no table holds a row but Alembic's and the SQLite full-text indexes' own
        (`bookkeeping_tables`): a database never migrated, or migrated and never used, is empty."""
        facts = self.facts()
        ignored = self.bookkeeping_tables()
        return all(count == 0 for name, count in facts.table_counts.items() if name not in ignored)

    def bookkeeping_tables(self) -> set[str]:
        """Tables that hold rows in a database nobody used: ``alembic_version``, the tables the
        migrations fill with the product's own data (`MIGRATION_DATA_TABLES`: the plan catalogue
        of 0015), and on SQLite the shadow tables of each FTS5 virtual table (``<name>_data``,
        ``_config``, … hold the index's own settings from the start)."""
        names = {ALEMBIC_TABLE, *MIGRATION_DATA_TABLES}
        if self.kind != "sqlite":
            return names
        with self.engine.connect() as connection:
            virtual = connection.execute(
                text("SELECT name FROM sqlite_master WHERE type = 'table' AND sql LIKE 'CREATE VIRTUAL TABLE%'")
            ).scalars()
            prefixes = [f"{name}_" for name in virtual]
            every = _table_names(connection)
        return names | {name for name in every if any(name.startswith(prefix) for prefix in prefixes)}

    def server_version(self) -> int | None:
        """PostgreSQL's major version (``server_version_num`` 150020 → 15); None on SQLite."""
        if self.kind != "postgresql":
            return None
        with self.engine.connect() as connection:
            return int(connection.execute(text("SHOW server_version_num")).scalar_one()) // 10000

    @contextmanager
    def snapshot(self) -> Iterator[Snapshot]:
        """A consistent view held open until the block ends: on PostgreSQL a REPEATABLE READ
        transaction whose snapshot is exported (``pg_export_snapshot()``) and whose figures are
        read in it, so a dump taken with that snapshot holds exactly those rows; on SQLite
        nothing (the backup API's copy is consistent by itself)."""
        if self.kind != "postgresql":
            yield Snapshot(id=None, facts=None)
            return
        with self.engine.connect() as connection:
            connection = connection.execution_options(isolation_level="REPEATABLE READ")
            with connection.begin():
                snapshot_id = str(connection.execute(text("SELECT pg_export_snapshot()")).scalar_one())
                yield Snapshot(id=snapshot_id, facts=_facts(connection))

    def table_digest(self, name: str) -> str:
        """SHA-256 (hex) of a table's rows, independent of their order: each row as JSON (values
        as text), sorted. For checking that a restore holds the same content."""
        with self.engine.connect() as connection:
            if name not in _table_names(connection):
                raise LookupError(f"no table {name!r}")
            rows = connection.execute(select(text("*")).select_from(table(name))).mappings().all()
        lines = sorted(json.dumps(dict(row), sort_keys=True, default=_plain) for row in rows)
        digest = hashlib.sha256()
        for line in lines:
            digest.update(line.encode())
            digest.update(b"\n")
        return digest.hexdigest()


def _plain(value: Any) -> str:
    if isinstance(value, bytes | memoryview):
        return bytes(value).hex()
    return str(value)


def facts_of_sqlite_file(path: Path) -> DatabaseFacts:
    """The figures of the SQLite database file at `path` (a backup's copy)."""
    engine = create_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as connection, connection.begin():
            return _facts(connection)
    finally:
        engine.dispose()
