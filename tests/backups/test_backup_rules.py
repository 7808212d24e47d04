"""The backup rules that need no database, with stand-ins for the ports: PostgreSQL's client
versions (a pg_dump older than the server is refused, and so is a pg_restore older than the
pg_dump that made the archive), the snapshot's id handed to the dump, the manifest's content, the
store's files in the archive and back, and the password kept off pg_dump's command line."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from adapters import database_dump
from adapters.file_storage import MemoryFileStore
from persistence.backups import DatabaseFacts, Snapshot
from services import backups
from services.clock import FrozenClock

FACTS = DatabaseFacts(schema_revision="0014", table_counts={"alembic_version": 1, "users": 3, "tasks": 12})
AT = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)


@dataclass
class PostgresStandIn:
    """pg_dump / pg_restore of given versions, writing and reading a made-up dump."""

    client: int = 15
    restorer: int = 15
    kind: str = "postgresql"
    snapshots: list[str | None] = field(default_factory=list)
    restored: list[bytes] = field(default_factory=list)

    def client_version(self) -> int:
        return self.client

    def restore_client_version(self) -> int:
        return self.restorer

    def dump(self, target: Path, *, snapshot: str | None) -> None:
        self.snapshots.append(snapshot)
        target.write_bytes(b"PGDMP made-up dump")

    def restore(self, source: Path) -> None:
        self.restored.append(source.read_bytes())


@dataclass
class InventoryStandIn:
    server: int = 15
    empty: bool = True
    facts_now: DatabaseFacts = FACTS
    kind: str = "postgresql"

    def facts(self) -> DatabaseFacts:
        return self.facts_now

    def is_empty(self) -> bool:
        return self.empty

    def bookkeeping_tables(self) -> set[str]:
        return {"alembic_version"}

    def server_version(self) -> int | None:
        return self.server

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[Snapshot]:
        yield Snapshot(id="00000003-0000001B-1", facts=FACTS)


def _config(tmp_path: Path, dumper: Any, inventory: Any, store: Any = None) -> backups.BackupConfig:
    return backups.BackupConfig(
        directory=tmp_path / "backups",
        keep=3,
        dumper=dumper,
        inventory=inventory,
        copy_facts=lambda _path: pytest.fail("PostgreSQL's figures come from the snapshot"),
        store=store or MemoryFileStore(),
        app_version="0.10.0",
    )


def test_the_dump_runs_in_the_snapshot_and_the_manifest_says_what_it_holds(tmp_path: Path):
    store = MemoryFileStore()
    keys = sorted(store.put([data]).key for data in (b"first file", b"second file"))
    dumper = PostgresStandIn()
    info = backups.create_backup(config=_config(tmp_path, dumper, InventoryStandIn(), store), clock=FrozenClock(AT))
    assert dumper.snapshots == ["00000003-0000001B-1"]
    raw = backups.verify_archive(path=info.path).raw
    assert raw["format"] == "charter-backup" and raw["format_version"] == 1
    assert raw["created_at"] == "2026-12-02T03:00:00Z" and raw["app_version"] == "0.10.0"
    assert raw["database"] == {
        "kind": "postgresql",
        "member": "database/charter.pgdump",
        "schema_revision": "0014",
        "table_counts": {"alembic_version": 1, "tasks": 12, "users": 3},
        "dump_client_version": 15,
    }
    assert raw["documents"] == {"files": 2, "bytes": len(b"first file") + len(b"second file")}
    assert [m["name"] for m in raw["members"]] == ["database/charter.pgdump"] + [
        f"documents/{k[:2]}/{k[2:4]}/{k}" for k in keys
    ]
    assert raw["manifest_sha256"] == backups.manifest_checksum(raw)
    assert info.path.name.startswith("charter-backup-20261202T030000Z-")
    assert sorted(path.name for path in info.path.parent.iterdir()) == [info.path.name]  # no temporary left

    # Restored: the files into an empty store, the dump handed to pg_restore, the figures checked.
    restored_store = MemoryFileStore()
    restorer = PostgresStandIn()
    report = backups.restore_backup(
        config=_config(tmp_path, restorer, InventoryStandIn(), restored_store), path=info.path
    )
    assert restorer.restored == [b"PGDMP made-up dump"]
    assert sorted(key for key, _ in restored_store.entries()) == keys
    assert (report.tables, report.rows, report.documents, report.schema_revision) == (3, 16, 2, "0014")


def test_a_pg_dump_older_than_the_server_is_refused(tmp_path: Path):
    config = _config(tmp_path, PostgresStandIn(client=14), InventoryStandIn(server=15))
    with pytest.raises(backups.BackupFailed, match="pg_dump on PATH is PostgreSQL 14 but the server is PostgreSQL 15"):
        backups.create_backup(config=config, clock=FrozenClock(AT))
    assert not any((tmp_path / "backups").iterdir())


def test_a_pg_restore_older_than_the_archive_is_refused(tmp_path: Path):
    made = backups.create_backup(
        config=_config(tmp_path, PostgresStandIn(client=16), InventoryStandIn(server=15)), clock=FrozenClock(AT)
    )
    restorer = PostgresStandIn(restorer=15)
    with pytest.raises(backups.RestoreRefused, match="made by pg_dump 16; pg_restore on PATH is 15"):
        backups.restore_backup(config=_config(tmp_path, restorer, InventoryStandIn()), path=made.path)
    assert restorer.restored == []


def test_a_restore_that_does_not_match_the_manifest_is_reported(tmp_path: Path):
    made = backups.create_backup(config=_config(tmp_path, PostgresStandIn(), InventoryStandIn()), clock=FrozenClock(AT))
    short = DatabaseFacts(schema_revision="0013", table_counts={"alembic_version": 1, "users": 3, "tasks": 11})
    with pytest.raises(backups.RestoreMismatch) as mismatch:
        backups.restore_backup(
            config=_config(tmp_path, PostgresStandIn(), InventoryStandIn(facts_now=short)), path=made.path
        )
    assert "schema revision '0013', the manifest says '0014'" in mismatch.value.detail
    assert "tasks: 11 rows, the manifest says 12" in mismatch.value.detail


def test_the_password_reaches_pg_dump_in_its_environment_only(tmp_path: Path, monkeypatch):
    calls: list[tuple[list[str], dict[str, str]]] = []

    def run(arguments: list[str], **options: Any) -> subprocess.CompletedProcess[str]:
        calls.append((arguments, options["env"]))
        return subprocess.CompletedProcess(arguments, 0, "", "")

    monkeypatch.setattr(database_dump.subprocess, "run", run)
    tool = database_dump.PostgresDumpTool("postgresql+psycopg://charter:s3cret@127.0.0.1:5432/charter")
    tool.dump(tmp_path / "out", snapshot="00000003-0000001B-1")
    arguments, environment = calls[0]
    assert not any("s3cret" in argument for argument in arguments)
    assert environment["PGPASSWORD"] == "s3cret"
    assert "--dbname=postgresql://charter@127.0.0.1:5432/charter" in arguments
    assert "--snapshot=00000003-0000001B-1" in arguments and "--format=custom" in arguments


def test_pg_dump_version_is_read_from_the_program():
    assert database_dump.client_major_version("pg_dump") >= 15  # Debian's postgresql-client on PATH
