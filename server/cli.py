"""The `charter` command: ``charter migrate`` applies migrations, ``charter serve`` runs the API.

``make migrate`` and ``make run`` call these; they read the same settings as the app.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from alembic import command
from alembic.config import Config

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def alembic_config(database_url: str) -> Config:
    """Alembic configuration for this project, aimed at `database_url`."""
    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.attributes["database_url"] = database_url
    return config


def migrate(database_url: str, revision: str = "head") -> None:
    """Upgrade the database at `database_url` to `revision` (Alembic; the only way the schema changes)."""
    command.upgrade(alembic_config(database_url), revision)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `charter` console script."""
    parser = argparse.ArgumentParser(prog="charter", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="apply every migration to DATABASE_URL")
    serve = commands.add_parser("serve", help="serve the API with uvicorn")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)

    from server.settings import Settings

    settings = Settings()
    if args.command == "migrate":
        migrate(settings.database_url)
    elif args.command == "serve":
        import uvicorn

        if args.workers > 1 and settings.prometheus_multiproc_dir is None:
            # Each worker writes its metrics here and GET /metrics adds them up (prometheus-client
            # reads this variable itself when a worker imports it).
            folder = tempfile.mkdtemp(prefix="charter-metrics-")
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
        uvicorn.run(
            "server.asgi:app",
            host=args.host,
            port=args.port,
            workers=args.workers,
            log_config=None,
            access_log=False,
            proxy_headers=False,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
