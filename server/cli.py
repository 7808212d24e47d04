"""The `charter` command: ``migrate`` applies migrations, ``serve`` runs the API, ``worker`` runs jobs.

``backup`` and ``restore`` save and put back the database and the document files
(`services.backups`; the README's operations runbook).

``make migrate`` and ``make run`` call these; they read the same settings as the app.
"""

from __future__ import annotations

import argparse
import getpass
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from alembic import command
from alembic.config import Config
from pydantic import ValidationError

from server.settings import ConfigurationError, Settings

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def alembic_config(database_url: str) -> Config:
    """Alembic configuration for this project, aimed at `database_url`."""
    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.attributes["database_url"] = database_url
    return config


def migrate(database_url: str, revision: str = "head") -> None:
    """Upgrade the database at `database_url` to `revision` (Alembic; the only way the schema changes)."""
    command.upgrade(alembic_config(database_url), revision)


def seed_database(settings: Settings, *, users: int, tasks_per_user: int, from_stdin: bool) -> int:
    """`charter seed`: load `users` accounts with `tasks_per_user` tasks each, with a progress
    bar (COPY on PostgreSQL). Every seeded account has the same password: read from standard
    input, or generated and printed once. Returns the exit status."""
    import secrets

    from tqdm import tqdm

    from persistence.database import make_engine
    from persistence.seed import seed
    from services.passwords import PasswordHasher

    if users < 1 or tasks_per_user < 0:
        print("charter: --users must be at least 1 and --tasks-per-user at least 0", file=sys.stderr)
        return 1
    password = sys.stdin.readline().rstrip("\n") if from_stdin else secrets.token_urlsafe(18)
    engine = make_engine(settings.database_url, pool_size=1, max_overflow=0)
    try:
        with tqdm(total=users * tasks_per_user, unit="task", unit_scale=True, desc="seeding") as bar:
            created = seed(
                engine,
                users=users,
                tasks_per_user=tasks_per_user,
                password_hash=PasswordHasher(settings.bcrypt_rounds).hash(password),
                progress=bar.update,
            )
    finally:
        engine.dispose()
    for _, email in created:
        print(email)
    if not from_stdin:
        print(f"password of every seeded account: {password}")
    return 0


def contract_problems(schema_name: str, instance: dict) -> list[str]:
    """What the contract's schema `schema_name` says is wrong with `instance` (empty: nothing),
    so the CLI accepts exactly what the API would."""
    from connexion.json_schema import resolve_refs
    from jsonschema import Draft4Validator, FormatChecker

    from server.contract import bundle

    schema = resolve_refs(bundle())["components"]["schemas"][schema_name]
    return [
        f"{'/'.join(map(str, error.absolute_path)) or 'body'}: {error.message}"
        for error in Draft4Validator(schema, format_checker=FormatChecker()).iter_errors(instance)
    ]


def create_admin(settings: Settings, *, email: str, display_name: str, from_stdin: bool) -> int:
    """`charter create-admin`: a new administrator, or an existing account (email + its
    password) promoted. The password is asked for (or read from standard input), never taken
    from the command line, where other users could see it. Returns the exit status."""
    from persistence.database import make_engine, make_session_factory
    from persistence.unit_of_work import UnitOfWork
    from services.clock import SystemClock
    from services.errors import DomainError
    from services.passwords import PasswordHasher, PasswordPolicy
    from services.users import create_admin as create

    problems = contract_problems(
        "RegisterRequest", {"email": email, "password": "x" * 64, "display_name": display_name}
    )
    if problems:
        print("charter: " + "; ".join(problems), file=sys.stderr)
        return 1
    password = sys.stdin.readline().rstrip("\n") if from_stdin else getpass.getpass("Password: ")
    engine = make_engine(settings.database_url, pool_size=1, max_overflow=0)
    try:
        PasswordPolicy(min_length=settings.password_min_length, min_strength=settings.password_min_strength).check(
            password, context=[email, email.split("@")[0], display_name]
        )
        with UnitOfWork(make_session_factory(engine)) as uow:
            user = create(
                uow=uow,
                clock=SystemClock(),
                passwords=PasswordHasher(settings.bcrypt_rounds),
                email=email,
                password=password,
                display_name=display_name,
            )
            print(f"{user.email} is an administrator (id {user.id}).")
    except DomainError as error:
        print(f"charter: {error.detail}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    return 0


def rotate_encryption_key(settings: Settings) -> int:
    """`charter rotate-encryption-key`: after putting a new key first in ENCRYPTION_KEYS (keeping
    the old ones after it), re-encrypt every stored secret with the new key; then the old keys
    can be removed. Safe to run again. Returns the exit status (1 when a secret cannot be read)."""
    from adapters.secret_box import FernetBox, UnreadableSecret
    from persistence.database import make_engine, make_session_factory
    from persistence.unit_of_work import UnitOfWork
    from services import webhooks

    try:
        box = FernetBox(settings.encryption_key_list)
    except (ConfigurationError, ValueError) as error:
        print(f"charter: {error}", file=sys.stderr)
        return 2
    engine = make_engine(settings.database_url)
    try:
        count = webhooks.reencrypt_secrets(unit_of_work=lambda: UnitOfWork(make_session_factory(engine)), box=box)
    except UnreadableSecret as error:
        print(f"charter: {error}; keep the key that made it in ENCRYPTION_KEYS", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    print(f"re-encrypted the secrets of {count} webhook endpoint(s) with the first key")
    return 0


def backup(settings: Settings, *, output: str | None) -> int:
    """`charter backup [--output PATH]`: one archive of the database and the document files,
    into BACKUP_DIR under a new name, or at PATH (an existing folder: a new name in it). Prints
    the archive's path. Returns the exit status (1 when the backup failed; nothing is left)."""
    from server.worker import make_backup_config
    from services import backups
    from services.clock import SystemClock

    config = make_backup_config(settings)
    try:
        info = backups.create_backup(config=config, clock=SystemClock(), output=Path(output) if output else None)
    except backups.BackupFailed as error:
        print(f"charter: backup failed: {error.detail}", file=sys.stderr)
        return 1
    finally:
        _dispose(config)
    counts = info.manifest.table_counts
    print(
        f"{info.path} ({info.size_bytes} bytes): {config.dumper.kind} database at revision "
        f"{info.manifest.schema_revision}, {sum(counts.values())} rows in {len(counts)} tables, "
        f"{info.manifest.raw['documents']['files']} document file(s)"
    )
    return 0


def restore(settings: Settings, *, path: str, force: bool, verify_only: bool) -> int:
    """`charter restore PATH [--force] [--verify-only]`: check the archive's checksums, then
    restore it into DATABASE_URL's database (empty, unless --force) and VAR_DIR/documents, then
    check the restored counts and revision against the manifest. With --verify-only, only the
    archive is checked. Returns the exit status: 0 done, 1 refused or failed (the message says
    why; an invalid archive or a refusal changed nothing)."""
    from server.worker import make_backup_config
    from services import backups

    if verify_only:
        try:
            manifest = backups.verify_archive(path=Path(path))
        except backups.ArchiveInvalid as error:
            print(f"charter: {error.detail}", file=sys.stderr)
            return 1
        print(
            f"{path}: intact ({len(manifest.members)} members, checksums match); a {manifest.database_kind} "
            f"database at revision {manifest.schema_revision}, made {manifest.raw['created_at']}"
        )
        return 0
    config = make_backup_config(settings)
    try:
        report = backups.restore_backup(config=config, path=Path(path), force=force)
    except backups.ArchiveInvalid as error:
        print(f"charter: restore refused, the archive is not intact: {error.detail}", file=sys.stderr)
        return 1
    except backups.RestoreRefused as error:
        print(f"charter: restore refused: {error.detail}", file=sys.stderr)
        return 1
    except (backups.BackupFailed, backups.RestoreMismatch) as error:
        print(f"charter: restore failed: {error.detail}", file=sys.stderr)
        return 1
    finally:
        _dispose(config)
    print(
        f"restored {report.rows} rows in {report.tables} tables ({report.database_kind}, revision "
        f"{report.schema_revision}) and {report.documents} document file(s); counts and revision match the manifest"
    )
    return 0


def _dispose(config: object) -> None:
    engine = getattr(getattr(config, "inventory", None), "engine", None)
    if engine is not None:
        engine.dispose()


def sync_plans(settings: Settings) -> int:
    """`charter plans sync`: upsert the plan catalogue of `services/plans.py` (missing plans made,
    changed ones rewritten; nothing deleted or deactivated: administrators' plans stay) and print
    what changed. Safe to run again. Returns the exit status."""
    from persistence.database import make_engine, make_session_factory
    from persistence.unit_of_work import UnitOfWork
    from services.clock import SystemClock
    from services.plans import sync_catalogue

    engine = make_engine(settings.database_url, pool_size=1, max_overflow=0)
    try:
        with UnitOfWork(make_session_factory(engine)) as uow:
            report = sync_catalogue(uow=uow, clock=SystemClock())
    finally:
        engine.dispose()
    print(
        f"plans: created {', '.join(report.created) or 'none'}; updated {', '.join(report.updated) or 'none'}; "
        f"unchanged {len(report.unchanged)}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `charter` console script."""
    parser = argparse.ArgumentParser(prog="charter", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="apply every migration to DATABASE_URL")
    seed = commands.add_parser("seed", help="fill the database with realistic users and tasks")
    seed.add_argument("--users", type=int, default=10, help="accounts to create (default 10)")
    seed.add_argument("--tasks-per-user", type=int, default=1000, help="tasks per account (default 1000)")
    seed.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the accounts' password from standard input (default: printed once)",
    )
    admin = commands.add_parser("create-admin", help="create the first administrator (or promote an account)")
    admin.add_argument("--email", required=True)
    admin.add_argument("--display-name", default="Administrator")
    admin.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    serve = commands.add_parser("serve", help="serve the API with uvicorn")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument(
        "--with-worker",
        action="store_true",
        help="also run one job worker (`charter worker`) as a child process, stopped with the server (make run)",
    )
    commands.add_parser(
        "rotate-encryption-key",
        help="re-encrypt stored secrets (webhook signing secrets) with the first key of ENCRYPTION_KEYS",
    )
    backup_command = commands.add_parser(
        "backup", help="write one archive of the database and the document files (into BACKUP_DIR)"
    )
    backup_command.add_argument(
        "--output", default=None, help="the archive's path, or a folder for it (default: a new name in BACKUP_DIR)"
    )
    restore_command = commands.add_parser(
        "restore", help="restore an archive into an empty database and check it against its manifest"
    )
    restore_command.add_argument("path", help="the archive (charter-backup-*.tar)")
    restore_command.add_argument(
        "--force", action="store_true", help="restore even into a non-empty database, replacing what it holds"
    )
    restore_command.add_argument(
        "--verify-only", action="store_true", help="only check the archive's checksums; change nothing"
    )
    plans = commands.add_parser("plans", help="the plan catalogue")
    plan_commands = plans.add_subparsers(dest="plans_command", required=True)
    plan_commands.add_parser(
        "sync", help="upsert the catalogue of services/plans.py (never deletes or deactivates other plans)"
    )
    worker = commands.add_parser("worker", help="run background jobs (a huey consumer)")
    worker.add_argument("--threads", type=int, default=2, help="jobs run at once (default 2)")
    worker.add_argument("--parent-pid", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    try:
        settings = Settings()
    except ValidationError as error:
        for problem in error.errors():
            where = ".".join(str(part) for part in problem["loc"]).upper()
            message = problem["msg"].removeprefix("Value error, ")
            print(f"charter: configuration refused: {where + ': ' if where else ''}{message}", file=sys.stderr)
        return 2
    if args.command == "migrate":
        migrate(settings.database_url)
    elif args.command == "seed":
        return seed_database(
            settings, users=args.users, tasks_per_user=args.tasks_per_user, from_stdin=args.password_stdin
        )
    elif args.command == "create-admin":
        return create_admin(settings, email=args.email, display_name=args.display_name, from_stdin=args.password_stdin)
    elif args.command == "backup":
        return backup(settings, output=args.output)
    elif args.command == "restore":
        return restore(settings, path=args.path, force=args.force, verify_only=args.verify_only)
    elif args.command == "plans":
        return sync_plans(settings)
    elif args.command == "rotate-encryption-key":
        return rotate_encryption_key(settings)
    elif args.command == "worker":
        from server.worker import run_worker

        if args.threads < 1:
            print("charter: --threads must be at least 1", file=sys.stderr)
            return 1
        return run_worker(settings, threads=args.threads, parent_pid=args.parent_pid)
    elif args.command == "serve":
        import uvicorn

        if args.workers > 1 and settings.prometheus_multiproc_dir is None:
            # Each worker writes its metrics here and GET /metrics adds them up (prometheus-client
            # reads this variable itself when a worker imports it).
            folder = tempfile.mkdtemp(prefix="charter-metrics-")
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
        child = start_worker_child() if args.with_worker else None
        try:
            uvicorn.run(
                "server.asgi:app",
                host=args.host,
                port=args.port,
                workers=args.workers,
                log_config=None,
                access_log=False,
                proxy_headers=False,
            )
        finally:
            if child is not None:
                stop_child(child)
    return 0


def start_worker_child() -> subprocess.Popen[bytes]:
    """`charter worker` as a child of this process (same environment and folder), which also
    stops by itself when this process is gone (`--parent-pid`)."""
    return subprocess.Popen(  # noqa: S603 - our own interpreter and module, fixed arguments
        [sys.executable, "-m", "server.cli", "worker", "--parent-pid", str(os.getpid())], stdin=subprocess.DEVNULL
    )


def stop_child(child: subprocess.Popen[bytes], *, timeout: float = 10.0) -> None:
    """Ask the child to finish its running jobs (SIGINT: huey's graceful stop), then kill it
    after `timeout` seconds."""
    if child.poll() is None:
        child.send_signal(signal.SIGINT)
        try:
            child.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(timeout=timeout)


if __name__ == "__main__":
    raise SystemExit(main())
