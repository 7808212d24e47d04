"""A private, throw-away PostgreSQL cluster for the fault suite: `initdb` and `pg_ctl` from
/usr/lib/postgresql/*/bin in a temporary folder, on a free port of 127.0.0.1, so the suite can
stop and restart *its* database. The shared server on 127.0.0.1:5432 is never touched.

`initdb` refuses to run as root: as root the cluster runs as the ``postgres`` system user
(``runuser -u postgres``) in a folder that user owns. Every wait is bounded; `destroy` stops the
server (``pg_ctl stop -m immediate``) and removes the folder, whatever happened.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

from tests.processes import free_port

START_TIMEOUT_SECONDS = 30.0


def postgres_bin() -> Path | None:
    """The newest /usr/lib/postgresql/<version>/bin holding initdb, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda path: int(path.split("/")[4]))
    return Path(found[-1]).parent if found else None


class PostgresCluster:
    """A PostgreSQL cluster of our own on 127.0.0.1:<port>, user ``postgres`` without password."""

    def __init__(self) -> None:
        binaries = postgres_bin()
        if binaries is None:
            raise RuntimeError("PostgreSQL's initdb is not installed under /usr/lib/postgresql")
        self.bin = binaries
        self.port = free_port()
        self.as_root = os.geteuid() == 0
        self.root = Path(tempfile.mkdtemp(prefix="charter-chaos-pg-"))
        self.data = self.root / "data"
        self.log_path = self.root / "postgres.log"
        if self.as_root:
            owner = pwd.getpwnam("postgres")
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
        )

    def url(self, database: str = "postgres") -> str:
        """The SQLAlchemy URL of `database` in this cluster."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def dsn(self, database: str = "postgres") -> str:
        """The libpq connection string of `database` in this cluster."""
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={database}"

    def _run(self, tool: str, *arguments: str, timeout: float = START_TIMEOUT_SECONDS) -> None:
        command = [str(self.bin / tool), *arguments]
        if self.as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=timeout, cwd=self.root)

    def start(self) -> None:
        """Start the server and wait (bounded) until it accepts connections."""
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='{self.root}' "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=100"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log_path), "-o", options, "-w", "-t", "30", "start")
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            try:
                with psycopg.connect(self.dsn(), connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: disconnect clients, roll back; ``immediate``: like a crash)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "30", "stop")

    def create_database(self, name: str) -> str:
        """Create database `name`; returns its SQLAlchemy URL."""
        with psycopg.connect(self.dsn(), autocommit=True, connect_timeout=5) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')  # a fixed name of the test's
        return self.url(name)

    def destroy(self) -> None:
        """Stop the server if it runs, and remove its folder."""
        pid_file = self.data / "postmaster.pid"
        if pid_file.exists():
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)
