"""The databases' own copying tools, for backups: PostgreSQL's `pg_dump` / `pg_restore` (custom
format) and SQLite's online backup API. The adapters of `services.backups.DumpTool`.

Neither runs SQL of ours: what a backup must know about the database's content (its tables' row
counts, its schema revision, an exported snapshot) comes from `persistence.backups`.

PostgreSQL: the tools are Debian's client programs on PATH (package ``postgresql-client``). A
dump is taken inside the snapshot `persistence.backups` exported (``pg_dump --snapshot``), so the
row counts written in the manifest are exactly the dump's. The password, when the URL has one,
is handed over in ``PGPASSWORD``, never on the command line (where `ps` would show it).

SQLite: `sqlite3.Connection.backup` copies the database page by page in one read transaction
(``pages=-1``), so the copy is consistent while the app keeps writing (WAL mode: readers and the
writer do not block each other); restoring runs the same API the other way, into the target
database, which keeps its WAL coherent (a plain file copy over a database with a live ``-wal``
file would not).
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
from pathlib import Path

from sqlalchemy.engine import URL, make_url

DUMP_TIMEOUT_SECONDS = 6 * 3600.0
"""The longest a `pg_dump` or `pg_restore` may run before it is stopped (a bound, not a target)."""

_VERSION = re.compile(r"\(PostgreSQL\) (\d+)(?:\.(\d+))?")


class DumpToolError(RuntimeError):
    """A tool is missing, too old for the server, or failed (its standard error is in the message)."""


def client_major_version(program: str) -> int:
    """The major version of the PostgreSQL client `program` on PATH (``pg_dump --version``:
    ``pg_dump (PostgreSQL) 15.20 (Debian …)`` → 15).

    Raises:
        DumpToolError: the program is not on PATH or prints no version.
    """
    path = shutil.which(program)
    if path is None:
        raise DumpToolError(f"{program} is not on PATH; install PostgreSQL's client programs (postgresql-client)")
    completed = subprocess.run(  # noqa: S603 - a program found on PATH by name, fixed arguments
        [path, "--version"], capture_output=True, text=True, timeout=30, check=False
    )
    match = _VERSION.search(completed.stdout)
    if completed.returncode != 0 or match is None:
        raise DumpToolError(f"{program} --version printed no PostgreSQL version: {completed.stdout.strip()!r}")
    return int(match.group(1))


class PostgresDumpTool:
    """`pg_dump -Fc` and `pg_restore` for the database at `url`.

    Args:
        url: the SQLAlchemy URL of the database (``postgresql+psycopg://user:pw@host:port/db``).
        timeout_seconds: the longest one run may take.
    """

    kind = "postgresql"

    def __init__(self, url: str, *, timeout_seconds: float = DUMP_TIMEOUT_SECONDS) -> None:
        parsed = make_url(url)
        if parsed.get_backend_name() != "postgresql":
            raise ValueError("PostgresDumpTool needs a postgresql URL")
        self._password = parsed.password
        # libpq understands postgresql://user@host:port/db?options; the driver name is SQLAlchemy's.
        plain = URL.create(
            "postgresql",
            username=parsed.username,
            host=parsed.host,
            port=parsed.port,
            database=parsed.database,
            query=parsed.query,
        )  # without the password (`URL.set` cannot remove one)
        self._conninfo = plain.render_as_string(hide_password=False)
        self.timeout_seconds = timeout_seconds

    def _environment(self) -> dict[str, str]:
        environment = dict(os.environ)
        if self._password is not None:
            environment["PGPASSWORD"] = str(self._password)
        return environment

    def client_version(self) -> int:
        """The major version of `pg_dump` on PATH (`client_major_version`)."""
        return client_major_version("pg_dump")

    def restore_client_version(self) -> int:
        """The major version of `pg_restore` on PATH."""
        return client_major_version("pg_restore")

    def _run(self, program: str, arguments: list[str]) -> None:
        path = shutil.which(program)
        if path is None:
            raise DumpToolError(f"{program} is not on PATH; install PostgreSQL's client programs (postgresql-client)")
        try:
            completed = subprocess.run(  # noqa: S603 - a program found on PATH by name, our own arguments
                [path, *arguments],
                capture_output=True,
                text=True,
                timeout=self.timeout_seconds,
                env=self._environment(),
                check=False,
            )
        except subprocess.TimeoutExpired as error:
            raise DumpToolError(f"{program} ran longer than {self.timeout_seconds:.0f} s and was stopped") from error
        if completed.returncode != 0:
            message = completed.stderr.strip()[-2000:] or f"exit status {completed.returncode}"
            raise DumpToolError(f"{program} failed: {message}")

    def dump(self, target: Path, *, snapshot: str | None) -> None:
        """Write the whole database to `target` in pg_dump's custom format (compressed, restorable
        with pg_restore), inside the exported `snapshot` when given.

        Raises:
            DumpToolError: pg_dump is missing or failed.
        """
        arguments = ["--format=custom", "--no-owner", "--no-privileges", f"--file={target}"]
        if snapshot is not None:
            arguments.append(f"--snapshot={snapshot}")
        self._run("pg_dump", [*arguments, f"--dbname={self._conninfo}"])

    def restore(self, source: Path) -> None:
        """Load the custom-format dump `source` into the database in one transaction (all or
        nothing): objects the dump holds are dropped first when they exist (``--clean
        --if-exists``: a migrated but empty database, or a non-empty one the operator chose to
        overwrite), ownership and grants are not restored (the connecting role owns everything).

        Raises:
            DumpToolError: pg_restore is missing or failed (nothing was changed).
        """
        self._run(
            "pg_restore",
            [
                "--clean",
                "--if-exists",
                "--no-owner",
                "--no-privileges",
                "--single-transaction",
                "--exit-on-error",
                f"--dbname={self._conninfo}",
                str(source),
            ],
        )


class SqliteDumpTool:
    """SQLite's online backup API for the database file at `path`.

    Args:
        path: the database file (DATABASE_URL's path).
        busy_timeout_seconds: how long to wait for a lock held by the app.
    """

    kind = "sqlite"

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout_seconds: float = 60.0) -> None:
        self.path = Path(path)
        self.busy_timeout_seconds = busy_timeout_seconds

    def dump(self, target: Path, *, snapshot: str | None) -> None:
        """Copy the live database into the new file `target`, consistently, while the app serves
        (`snapshot` is PostgreSQL's; SQLite's copy is its own snapshot).

        Raises:
            DumpToolError: the database file does not exist or cannot be read.
        """
        if not self.path.is_file():
            raise DumpToolError(f"the SQLite database {self.path} does not exist")
        try:
            source = sqlite3.connect(self.path, timeout=self.busy_timeout_seconds)
            try:
                destination = sqlite3.connect(target)
                try:
                    source.backup(destination, pages=-1)
                    # A self-contained file: no WAL beside it (the archive holds one file).
                    destination.execute("PRAGMA journal_mode=DELETE")
                finally:
                    destination.close()
            finally:
                source.close()
        except sqlite3.Error as error:
            raise DumpToolError(f"the SQLite backup failed: {error}") from error

    def restore(self, source: Path) -> None:
        """Copy the database file `source` into the target database, page by page, replacing what
        it holds (the file is created when missing).

        Raises:
            DumpToolError: the copy failed (SQLite rolls the target back).
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            origin = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
            try:
                destination = sqlite3.connect(self.path, timeout=self.busy_timeout_seconds)
                try:
                    origin.backup(destination, pages=-1)
                finally:
                    destination.close()
            finally:
                origin.close()
        except sqlite3.Error as error:
            raise DumpToolError(f"the SQLite restore failed: {error}") from error
