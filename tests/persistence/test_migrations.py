"""Alembic migrations: they round-trip, they build exactly the schema the ORM models describe,
and the database itself enforces the priority rule and the cascades."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, delete, func, insert, inspect, select, text
from sqlalchemy.exc import IntegrityError

from persistence.accounts.models import AuthSession, RefreshToken, User
from persistence.base import Base, database_only_objects
from persistence.database import make_engine
from persistence.tasks.models import NO_DUE_DATE, TASK_PRIORITIES, Task
from server.cli import alembic_config
from tests.helpers import postgres_url_in_environment, temporary_postgres_database, unique_email

APP_TABLES = {
    "users",
    "auth_sessions",
    "refresh_tokens",
    "tasks",
    "login_throttles",
    "password_reset_tokens",
    "audit_events",
    "task_tags",
    "idempotency_records",
    "jobs",
}


def _config(url: str) -> Config:
    config = alembic_config(url)
    config.attributes["configure_logger"] = False  # keep the suite's logging as it is
    return config


def _head(config: Config) -> str:
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


def _state(url: str) -> tuple[set[str], str | None]:
    """The app tables present and the revision recorded in the database."""
    engine = make_engine(url, pool_size=1, max_overflow=0)
    try:
        with engine.connect() as connection:
            tables = set(inspect(connection).get_table_names()) & APP_TABLES
            return tables, MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def _round_trip(url: str) -> None:
    config = _config(url)
    head = _head(config)
    assert _state(url) == (set(), None)
    command.upgrade(config, "head")
    assert _state(url) == (APP_TABLES, head)
    command.downgrade(config, "base")
    assert _state(url) == (set(), None)
    command.upgrade(config, "head")
    assert _state(url) == (APP_TABLES, head)
    _assert_models_match(url)


def _assert_models_match(url: str) -> None:
    engine = make_engine(url, pool_size=1, max_overflow=0)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"include_object": lambda obj, name, *_: name not in database_only_objects()}
            )
            diff = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()
    assert diff == [], f"ORM models and migrated schema differ: {diff}"


@pytest.fixture
def fresh_sqlite(tmp_path: Path) -> Iterator[Engine]:
    """A new SQLite file migrated to head, with the app's engine (foreign keys on)."""
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    command.upgrade(_config(url), "head")
    engine = make_engine(url)
    yield engine
    engine.dispose()


@pytest.fixture
def session_engine(database_url: str) -> Iterator[Engine]:
    """The app's engine on the suite's migrated database (SQLite, or PostgreSQL from DATABASE_URL)."""
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


class TestRoundTrip:
    def test_sqlite_upgrade_downgrade_upgrade(self, tmp_path):
        _round_trip(f"sqlite:///{tmp_path / 'round-trip.db'}")

    @pytest.mark.postgres
    def test_postgresql_upgrade_downgrade_upgrade(self):
        server_url = postgres_url_in_environment()
        if server_url is None:
            pytest.skip("DATABASE_URL does not name PostgreSQL")
        with temporary_postgres_database(server_url, prefix="charter_migrations") as url:
            _round_trip(url)

    def test_offline_sql_can_be_rendered(self, capsys):
        # For a DBA who applies SQL by hand (`alembic upgrade head --sql`), on PostgreSQL: SQLite's
        # batch ALTERs need a live database to reflect, so offline mode is PostgreSQL's.
        command.upgrade(_config("postgresql+psycopg://nobody@127.0.0.1:1/none"), "head", sql=True)
        sql = capsys.readouterr().out
        assert "CREATE TABLE tasks" in sql and "ck_tasks_priority_allowed" in sql
        assert "CREATE TRIGGER audit_events_append_only" in sql


class TestModelsMatchSchema:
    def test_no_difference_on_the_suite_database(self, database_url):
        _assert_models_match(database_url)

    def test_suite_database_is_at_head(self, database_url):
        assert _state(database_url) == (APP_TABLES, _head(_config(database_url)))

    def test_constraint_names_follow_the_convention(self, session_engine):
        inspector = inspect(session_engine)
        assert inspector.get_pk_constraint("tasks")["name"] == "pk_tasks"
        assert {fk["name"] for fk in inspector.get_foreign_keys("tasks")} == {"fk_tasks_owner_id_users"}
        assert {fk["name"] for fk in inspector.get_foreign_keys("refresh_tokens")} == {
            "fk_refresh_tokens_session_id_auth_sessions"
        }
        assert "uq_users_email" in {uq["name"] for uq in inspector.get_unique_constraints("users")}
        indexes = {ix["name"] for ix in inspector.get_indexes("tasks")}
        assert {"ix_tasks_owner_created", "ix_tasks_owner_completed_created"} <= indexes


def _now() -> datetime:
    return datetime.now(UTC)


def _user_row() -> dict:
    now = _now()
    return {
        "id": uuid.uuid4(),
        "email": unique_email("db"),
        "display_name": "DB",
        "password_hash": "$2b$04$" + "x" * 53,
        "created_at": now,
        "updated_at": now,
    }


def _task_row(owner_id: uuid.UUID, priority: str = "medium") -> dict:
    now = _now()
    return {
        "id": uuid.uuid4(),
        "owner_id": owner_id,
        "title": "A task",
        "description": None,
        "completed": False,
        "completed_at": None,
        "priority": priority,
        "priority_rank": TASK_PRIORITIES.index(priority) if priority in TASK_PRIORITIES else 1,
        "due_at": None,
        "due_at_key": NO_DUE_DATE,
        "created_at": now,
        "updated_at": now,
    }


def _session_rows(user_id: uuid.UUID) -> tuple[dict, dict]:
    now = _now()
    session = {
        "id": uuid.uuid4(),
        "user_id": user_id,
        "created_at": now,
        "last_used_at": now,
        "expires_at": now + timedelta(days=1),
        "revoked_at": None,
        "revoked_reason": None,
    }
    token = {
        "id": uuid.uuid4(),
        "session_id": session["id"],
        "token_hash": uuid.uuid4().hex * 2,
        "created_at": now,
        "expires_at": now + timedelta(days=1),
        "used_at": None,
    }
    return session, token


class TestPriorityConstraint:
    @pytest.mark.parametrize("priority", ["critical", "LOW", "", "medium "])
    def test_other_values_are_rejected_by_the_database(self, fresh_sqlite, priority):
        user = _user_row()
        with fresh_sqlite.begin() as connection:
            connection.execute(insert(User.__table__).values(user))
        with pytest.raises(IntegrityError), fresh_sqlite.begin() as connection:
            connection.execute(insert(Task.__table__).values(_task_row(user["id"], priority)))
        with fresh_sqlite.connect() as connection:
            assert connection.scalar(select(func.count()).select_from(Task.__table__)) == 0

    def test_allowed_values_are_accepted(self, fresh_sqlite):
        user = _user_row()
        with fresh_sqlite.begin() as connection:
            connection.execute(insert(User.__table__).values(user))
            for priority in TASK_PRIORITIES:
                connection.execute(insert(Task.__table__).values(_task_row(user["id"], priority)))
        with fresh_sqlite.connect() as connection:
            stored = connection.scalars(select(Task.__table__.c.priority)).all()
        assert sorted(stored) == sorted(TASK_PRIORITIES)
        assert set(TASK_PRIORITIES) == {"low", "medium", "high", "urgent"}

    def test_rejected_on_the_suite_database_too(self, session_engine):
        user = _user_row()
        with session_engine.begin() as connection:
            connection.execute(insert(User.__table__).values(user))
        try:
            with pytest.raises(IntegrityError), session_engine.begin() as connection:
                connection.execute(insert(Task.__table__).values(_task_row(user["id"], "critical")))
        finally:
            with session_engine.begin() as connection:
                connection.execute(delete(User.__table__).where(User.__table__.c.id == user["id"]))


class TestCascades:
    @pytest.fixture(params=["fresh_sqlite", "session_engine"])
    def engine(self, request) -> Engine:
        return request.getfixturevalue(request.param)

    def test_foreign_keys_are_enforced(self, engine):
        if engine.dialect.name == "sqlite":
            with engine.connect() as connection:
                assert connection.scalar(text("PRAGMA foreign_keys")) == 1
        with pytest.raises(IntegrityError), engine.begin() as connection:
            connection.execute(insert(Task.__table__).values(_task_row(uuid.uuid4())))

    def test_deleting_a_user_deletes_its_tasks_sessions_and_refresh_tokens(self, engine):
        doomed, kept = _user_row(), _user_row()
        doomed_session, doomed_token = _session_rows(doomed["id"])
        kept_session, kept_token = _session_rows(kept["id"])
        with engine.begin() as connection:
            connection.execute(insert(User.__table__), [doomed, kept])
            connection.execute(insert(AuthSession.__table__), [doomed_session, kept_session])
            connection.execute(insert(RefreshToken.__table__), [doomed_token, kept_token])
            connection.execute(
                insert(Task.__table__),
                [_task_row(doomed["id"]), _task_row(doomed["id"], "high"), _task_row(kept["id"])],
            )

        def remaining(user_id: uuid.UUID) -> dict[str, int]:
            tasks, sessions, tokens = Task.__table__, AuthSession.__table__, RefreshToken.__table__
            with engine.connect() as connection:
                return {
                    "tasks": connection.scalar(
                        select(func.count()).select_from(tasks).where(tasks.c.owner_id == user_id)
                    ),
                    "sessions": connection.scalar(
                        select(func.count()).select_from(sessions).where(sessions.c.user_id == user_id)
                    ),
                    "refresh_tokens": connection.scalar(
                        select(func.count())
                        .select_from(tokens)
                        .join(sessions, sessions.c.id == tokens.c.session_id)
                        .where(sessions.c.user_id == user_id)
                    ),
                    "tokens_by_id": connection.scalar(
                        select(func.count())
                        .select_from(tokens)
                        .where(tokens.c.id == (doomed_token["id"] if user_id == doomed["id"] else kept_token["id"]))
                    ),
                }

        assert remaining(doomed["id"]) == {"tasks": 2, "sessions": 1, "refresh_tokens": 1, "tokens_by_id": 1}
        try:
            with engine.begin() as connection:
                connection.execute(delete(User.__table__).where(User.__table__.c.id == doomed["id"]))
            assert remaining(doomed["id"]) == {"tasks": 0, "sessions": 0, "refresh_tokens": 0, "tokens_by_id": 0}
            assert remaining(kept["id"]) == {"tasks": 1, "sessions": 1, "refresh_tokens": 1, "tokens_by_id": 1}
        finally:
            with engine.begin() as connection:
                connection.execute(delete(User.__table__).where(User.__table__.c.id.in_([doomed["id"], kept["id"]])))
