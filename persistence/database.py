"""Engine and session factory for SQLite (default) and PostgreSQL (psycopg 3)."""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, exc, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker


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
    kwargs: dict = {}
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


def _sqlite_on_connect(dbapi_connection, _record) -> None:
    # SQLite's own lower() folds only ASCII; case-insensitive search must fold every letter as
    # Python (and PostgreSQL) do.
    dbapi_connection.create_function("lower", 1, _lower, deterministic=True)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=15000")
    cursor.close()


PING_IDLE_SECONDS = 10.0


def _note_checkin(_dbapi_connection, record) -> None:
    record.info["checked_in_at"] = time.monotonic()


def _ping_if_idle(dbapi_connection, record, _proxy) -> None:
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
    """
    bind = engine.execution_options(isolation_level="AUTOCOMMIT") if autocommit else engine
    return sessionmaker(bind=bind, expire_on_commit=False, autoflush=False)


def ping(engine: Engine) -> None:
    """Run a trivial query; raises ``sqlalchemy.exc.SQLAlchemyError`` when the DB does not answer."""
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value
