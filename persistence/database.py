"""Engine and session factory for SQLite (default) and PostgreSQL (psycopg 3)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVarTuple, cast

import structlog
from sqlalchemy import CursorResult, Engine, Result, Select, create_engine, event, exc, text
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection
from sqlalchemy.sql.base import Executable

_Ts = TypeVarTuple("_Ts")
log = structlog.get_logger(__name__)


def make_engine(
    url: str,
    *,
    pool_size: int = 5,
    max_overflow: int = 10,
    pool_timeout: float = 10.0,
    pool_pre_ping: bool = True,
    connect_timeout: int = 5,
    statement_timeout_ms: int = 0,
) -> Engine:
    """Create the process's engine.

    Args:
        url: SQLAlchemy URL, ``sqlite:///relative/path.db`` or ``postgresql+psycopg://…``.
        pool_size, max_overflow: connections kept and allowed beyond that, per process.
        pool_timeout: seconds to wait for a pooled connection before failing.
        pool_pre_ping: test a pooled connection before handing it out when it has been idle for
            more than PING_IDLE_SECONDS (survives database restarts and dropped idle
            connections); a connection in steady use is not pinged, which would cost a round
            trip per request.
        connect_timeout: seconds PostgreSQL may take to accept a connection.
        statement_timeout_ms: PostgreSQL `statement_timeout` of every connection (0: none), so a
            runaway query is cancelled instead of holding a connection.

    On SQLite the file's folder is created, foreign keys are enforced and WAL journaling is
    used so readers do not block the writer.
    """
    parsed = make_url(url)
    kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 15}
        kwargs.update(pool_size=pool_size, max_overflow=max_overflow, pool_timeout=pool_timeout)
    else:
        kwargs["connect_args"] = {
            "connect_timeout": connect_timeout,
            "options": f"-c statement_timeout={int(statement_timeout_ms)}",
        }
        kwargs.update(pool_size=pool_size, max_overflow=max_overflow, pool_timeout=pool_timeout)
    engine = create_engine(parsed, **kwargs)
    if pool_pre_ping:
        event.listen(engine, "checkout", _ping_if_idle)
        event.listen(engine, "checkin", _note_checkin)
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_on_connect)
    return engine


def _sqlite_on_connect(dbapi_connection: sqlite3.Connection, _record: ConnectionPoolEntry) -> None:
    # SQLite's own lower() folds only ASCII; case-insensitive search must fold every letter as
    # Python (and PostgreSQL) do.
    dbapi_connection.create_function("lower", 1, _lower, deterministic=True)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=15000")
    cursor.close()


PING_IDLE_SECONDS = 10.0


def _note_checkin(_dbapi_connection: DBAPIConnection, record: ConnectionPoolEntry) -> None:
    record.info["checked_in_at"] = time.monotonic()


def _ping_if_idle(
    dbapi_connection: DBAPIConnection, record: ConnectionPoolEntry, _proxy: PoolProxiedConnection
) -> None:
    """Pessimistic disconnect handling (SQLAlchemy's pool "checkout" recipe), for idle
    connections only: a failed ping makes the pool discard this connection and try another."""
    checked_in_at = record.info.get("checked_in_at")
    if checked_in_at is None or time.monotonic() - checked_in_at < PING_IDLE_SECONDS:
        return
    try:
        cursor = dbapi_connection.cursor()
        cursor.execute("SELECT 1")
        cursor.close()
        dbapi_connection.rollback()
    except Exception as error:  # any failure means this connection is unusable
        raise exc.DisconnectionError() from error


def make_session_factory(engine: Engine, *, autocommit: bool = False) -> sessionmaker[Session]:
    """A session factory whose sessions keep loaded objects usable after commit.

    With `autocommit`, each statement commits on its own and no BEGIN/COMMIT is sent: for
    requests that only read (a read needs no transaction, and skipping it saves two round trips).
    Such a session retries a SELECT once when its connection was lost (`_retry_read_once`);
    a transactional session never retries anything.
    """
    bind = engine.execution_options(isolation_level="AUTOCOMMIT") if autocommit else engine
    factory = sessionmaker(bind=bind, expire_on_commit=False, autoflush=False, info={RETRY_READS: autocommit})
    if autocommit:
        event.listen(factory, "do_orm_execute", _retry_read_once)
    return factory


RETRY_READS = "charter_retry_reads"
"""`Session.info` key: True on the autocommit (read-only) sessions, whose SELECTs are retried once
after a lost connection (`_retry_read_once`, `read_rows`)."""


def read_rows(
    db: Session, statement: Executable, parameters: Mapping[str, Any] | None = None
) -> Result[*tuple[Any, ...]]:
    """Execute a Core SELECT on `db`'s connection (the hot paths read Core rows, bypassing the
    ORM and so its `do_orm_execute` hook), retried once after a lost connection exactly as
    `_retry_read_once` retries an ORM read: only on an autocommit (read-only) session, and only a
    SELECT. Elsewhere it is ``db.connection().execute(statement, parameters)``."""
    try:
        return db.connection().execute(statement, parameters)
    except exc.DBAPIError as error:
        retry = db.info.get(RETRY_READS) and getattr(statement, "is_select", False) and error.connection_invalidated
        if not retry:
            raise
        log.warning("database_read_retried", error=type(error.orig).__name__ if error.orig else None)
        db.rollback()
        return db.connection().execute(statement, parameters)


def _retry_read_once(state: ORMExecuteState) -> Result[Any] | None:
    """Run a SELECT of an autocommit (read-only) session once more when it failed because the
    connection was lost (`DBAPIError.connection_invalidated`: the database restarted, a proxy
    dropped the connection). SQLAlchemy has by then discarded the pool's connections, so the
    second attempt opens a fresh one; when the database is still gone it fails again and the
    request answers 503 with Retry-After (`server/integration/problems.py`).

    Safe because the statement is a read in a session without a transaction: running it again
    changes nothing and sees no half-finished transaction. Writes (INSERT, UPDATE, DELETE, in
    any session) and every statement of a transactional session are never retried silently: a
    lost connection may have lost or kept the write, and only the client, told by the 503, can
    decide to repeat it.
    """
    if not state.is_select:
        return None
    try:
        return state.invoke_statement()
    except exc.DBAPIError as error:
        if not error.connection_invalidated:
            raise
        log.warning("database_read_retried", error=type(error.orig).__name__ if error.orig else None)
        state.session.rollback()  # drop the invalidated connection; autocommit: nothing is undone
        return state.invoke_statement()


def hold_write_lock(db: Session) -> None:
    """Make the rest of `db`'s transaction see the latest committed data and keep other writers
    out until it ends: what ``SELECT … FOR UPDATE`` does for the rows it reads on PostgreSQL.

    On SQLite there are no row locks; the database has one writer at a time. Python's sqlite3
    driver (in its default, legacy transaction mode) opens a transaction only before the first
    INSERT, UPDATE or DELETE, so reads before that see the latest commit, each on its own, and a
    transaction that is open has written and so holds the write lock. When none is open this
    opens one with ``BEGIN IMMEDIATE``, which takes the write lock at once (waiting up to the
    busy timeout for another writer to finish): from here to the commit nobody else writes, so
    a value read, checked and written back cannot be changed in between. Rails 7.1 and Django 5.1
    (``transaction_mode``) use IMMEDIATE transactions on SQLite for the same reason.

    On PostgreSQL this does nothing: use `for_update`, which adds ``FOR UPDATE`` to the read.
    Only for the unit of work of a request that writes (never on an autocommit read session).
    """
    connection = db.connection()
    if connection.dialect.name != "sqlite":
        return
    driver = connection.connection.driver_connection
    if driver is not None and not driver.in_transaction:
        driver.execute("BEGIN IMMEDIATE")


def for_update(db: Session, statement: Select[*_Ts]) -> Select[*_Ts]:
    """`statement` as a locking read, for a read-check-write that must not lose a concurrent
    change: PostgreSQL locks the rows it returns until the transaction ends (``FOR UPDATE``; a
    concurrent locker waits, then reads the committed row), SQLite holds the write lock
    (`hold_write_lock`). Loaded objects are refreshed from the row, not taken from the session.
    """
    hold_write_lock(db)
    return statement.with_for_update().execution_options(populate_existing=True)


def savepoint(db: Session) -> SessionTransaction:
    """A savepoint in `db`'s write transaction (``SAVEPOINT``), to undo part of the work.

    The write lock is taken first (`hold_write_lock`): on SQLite a SAVEPOINT outside a
    transaction would open a deferred one, which holds no lock until it first writes, and a
    locking read inside it would read a snapshot another writer may already have replaced.
    """
    hold_write_lock(db)
    return db.begin_nested()


def insert_if_absent(db: Session, table: Any, values: dict[str, Any], *, key: list[str]) -> None:
    """``INSERT … ON CONFLICT (key) DO NOTHING`` on either database: the row exists afterwards,
    made by this call or by a concurrent one (which this waits for), and no unique violation
    aborts the transaction. Lock it with `for_update` to change it.

    Args:
        table: the mapped class or Table.
        values: the new row's columns.
        key: the columns of the primary key or unique index that may conflict.
    """
    dialect = db.get_bind().dialect.name
    statement = (postgresql_insert if dialect == "postgresql" else sqlite_insert)(table).values(**values)
    db.execute(statement.on_conflict_do_nothing(index_elements=key))


def affected_rows(result: Result[*tuple[Any, ...]]) -> int:
    """How many rows the UPDATE or DELETE (without RETURNING) that gave `result` matched.

    `Session.execute` answers such a statement with a `CursorResult`, which has the count, but is
    typed to return a plain `Result`: SQLAlchemy's advice is this cast.
    """
    return cast(CursorResult[*tuple[Any, ...]], result).rowcount


def ping(engine: Engine) -> None:
    """Run a trivial query; raises ``sqlalchemy.exc.SQLAlchemyError`` when the DB does not answer."""
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))


def database_answers(engine: Engine) -> bool:
    """Whether the database answers a trivial query (`ping`); a failure is logged with its
    error class, never its message (which may hold a connection string)."""
    try:
        ping(engine)
    except exc.SQLAlchemyError as error:
        log.warning("readiness_check_failed", dependency="database", error=type(error).__name__)
        return False
    return True


_SQLiteValue = str | bytes | int | float | None
"""What a SQLite function receives and may return."""


def _lower(value: _SQLiteValue) -> _SQLiteValue:
    return value.lower() if isinstance(value, str) else value
