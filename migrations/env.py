"""Alembic environment: migrates the database named by DATABASE_URL (or by the caller)."""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context

from persistence.base import Base, load_models
from persistence.database import make_engine

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

load_models()  # every area's persistence/<area>/models.py, found rather than listed
target_metadata = Base.metadata


def _url() -> str:
    url = config.attributes.get("database_url") or config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from server.settings import Settings

    return Settings().database_url


def run_migrations_offline() -> None:
    """Emit SQL to standard output instead of running it (``alembic upgrade head --sql``)."""
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run migrations in one transaction per migration against a live connection."""
    engine = make_engine(_url(), pool_size=1, max_overflow=0)
    try:
        with engine.connect() as connection:
            sqlite = connection.dialect.name == "sqlite"
            if sqlite:
                # SQLite's batch operations recreate a table (copy, drop, rename). With foreign keys
                # enforced (make_engine turns them on), dropping a parent table deletes its
                # children's rows through ON DELETE CASCADE: a migration that recreates `chatbots`
                # would empty `documents`. Alembic's advice: keep them off while migrating (the
                # pragma only takes effect outside a transaction), and check them afterwards.
                connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
                connection.commit()  # ends SQLAlchemy's autobegun transaction: Alembic's own commits
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                render_as_batch=sqlite,
            )
            with context.begin_transaction():
                context.run_migrations()
            if sqlite:
                broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                connection.rollback()
                if broken:
                    raise RuntimeError(f"the migrations left rows whose foreign keys name nothing: {broken[:10]}")
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
