"""Issue 18's proof for backups, on SQLite and (when DATABASE_URL names it) PostgreSQL: a database
filled with every area's data is backed up while writer threads keep inserting tasks, restored
into a fresh database, and the restore holds exactly what the manifest says (every table's count)
and the same content (a digest of every table the writers do not touch, and the stored files);
a corrupted or truncated archive is refused before anything changes; a non-empty target is
refused unless forced; a dump of the other kind is refused."""

from __future__ import annotations

import dataclasses
import shutil
import tarfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from adapters.file_storage import LocalFileStore
from persistence.unit_of_work import UnitOfWork
from server import cli
from services import backups, tasks
from services.clock import SystemClock
from tests.backups.conftest import Source, backup_config, empty_target
from tests.helpers import TEST_SECRET, register_and_login

WRITERS = 3
MAX_WRITES_PER_WRITER = 400
WRITE_SECONDS = 60.0


class Writers:
    """`WRITERS` threads inserting tasks, each at most `MAX_WRITES_PER_WRITER` and for at most
    `WRITE_SECONDS`; `written` counts the committed ones."""

    def __init__(self, source: Source, owner_id: uuid.UUID) -> None:
        self.source = source
        self.owner_id = owner_id
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.written = 0
        self.errors: list[BaseException] = []
        self.threads = [threading.Thread(target=self._write, args=(n,), daemon=True) for n in range(WRITERS)]

    def _write(self, number: int) -> None:
        deadline = time.monotonic() + WRITE_SECONDS
        factory = self.source.state.session_factory
        for count in range(MAX_WRITES_PER_WRITER):
            if self.stop.is_set() or time.monotonic() > deadline:
                return
            try:
                with UnitOfWork(factory) as uow:
                    tasks.create_task(
                        uow=uow, clock=SystemClock(), owner_id=self.owner_id, data={"title": f"w{number}-{count}"}
                    )
            except BaseException as error:  # reported by the test
                self.errors.append(error)
                return
            with self.lock:
                self.written += 1

    def wait_for(self, writes: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while self.written < writes and time.monotonic() < deadline and not self.errors:
            time.sleep(0.01)
        assert self.written >= writes, (self.written, self.errors)

    def __enter__(self) -> Writers:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)
        assert not any(thread.is_alive() for thread in self.threads)


class Stalling:
    """A dump tool that lets the writers commit 5 more tasks before it dumps (PostgreSQL: after the
    snapshot was exported and counted in), then counts what they wrote while it dumped."""

    def __init__(self, inner: Any, writers: Writers) -> None:
        self.inner = inner
        self.writers = writers
        self.kind = inner.kind
        self.during = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)  # the client versions of pg_dump and pg_restore

    def dump(self, target: Path, *, snapshot: str | None) -> None:
        start = self.writers.written
        self.writers.wait_for(start + 5)
        self.inner.dump(target, snapshot=snapshot)
        self.during = self.writers.written - start

    def restore(self, source: Path) -> None:
        self.inner.restore(source)


def _task_ids(config: backups.BackupConfig) -> set[str]:
    with config.inventory.engine.connect() as connection:  # type: ignore[attr-defined]
        from sqlalchemy import text

        return {str(row[0]) for row in connection.execute(text("SELECT id FROM tasks"))}


def _store_keys(settings: Any) -> set[str]:
    return {key for key, _ in LocalFileStore(settings.documents_dir).entries()}


def test_a_backup_taken_while_writers_insert_restores_exactly_its_manifest(source: Source, tmp_path: Path):
    writer = register_and_login(source.client)
    with backup_config(source.settings, directory=tmp_path / "backups") as config:
        before = config.inventory.facts()
        assert before.schema_revision is not None
        # Every area left rows (the fill went through the API and ran the documents' jobs).
        for table in (
            "users",
            "auth_sessions",
            "tasks",
            "task_tags",
            "reminders",
            "webhook_endpoints",
            "api_keys",
            "chatbots",
            "documents",
            "knowledge_passages",
            "conversations",
            "conversation_messages",
            "jobs",
            "audit_events",
            "notifications",
            "webhook_deliveries",
            "websites",
        ):
            assert before.table_counts[table] > 0, table
        with Writers(source, uuid.UUID(writer.id)) as writers:
            writers.wait_for(10)
            written_before = writers.written
            # Writes land after the snapshot is taken and before the dump runs: the dump and the
            # manifest's counts must both leave them out.
            stalling = dataclasses.replace(config, dumper=Stalling(config.dumper, writers))
            info = backups.create_backup(config=stalling, clock=SystemClock())
            assert stalling.dumper.during >= 5
            writers.wait_for(written_before + 10)
        assert not writers.errors
        after = config.inventory.facts()
        source_tasks = _task_ids(config)
        source_digests = {
            name: config.inventory.table_digest(name)  # type: ignore[attr-defined]
            for name in after.table_counts
            if name != "tasks"
        }

    manifest = backups.verify_archive(path=info.path)
    dumped = manifest.table_counts
    assert before.table_counts["tasks"] + written_before <= dumped["tasks"] < after.table_counts["tasks"]
    assert {name: count for name, count in dumped.items() if name != "tasks"} == {
        name: count for name, count in after.table_counts.items() if name != "tasks"
    }
    assert manifest.schema_revision == after.schema_revision
    assert manifest.raw["documents"]["files"] == len(_store_keys(source.settings)) > 0
    assert manifest.raw["app_version"] == source.state.service_info.version

    with empty_target(source.kind, tmp_path / "target") as target, backup_config(target) as restore_config:
        report = backups.restore_backup(config=restore_config, path=info.path)
        restored = restore_config.inventory.facts()
        assert restored.table_counts == dumped  # every table, exactly the dump's count
        assert restored.schema_revision == manifest.schema_revision
        assert (report.tables, report.rows, report.documents) == (
            len(dumped),
            sum(dumped.values()),
            manifest.raw["documents"]["files"],
        )
        restored_tasks = _task_ids(restore_config)
        assert restored_tasks < source_tasks  # a consistent prefix: none invented, the later ones absent
        for name, digest in source_digests.items():
            assert restore_config.inventory.table_digest(name) == digest, name  # type: ignore[attr-defined]
        assert _store_keys(target) == _store_keys(source.settings)


def _member_offset(path: Path, name: str) -> tuple[int, int]:
    with tarfile.open(path) as tar:
        info = tar.getmember(name)
        return info.offset_data, info.size


@pytest.fixture(scope="module")
def archive(source: Source, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One backup of the filled source."""
    with backup_config(source.settings, directory=tmp_path_factory.mktemp("archive")) as config:
        return backups.create_backup(config=config, clock=SystemClock()).path


def _assert_untouched(config: backups.BackupConfig, target: Any) -> None:
    assert config.inventory.is_empty()
    assert not _store_keys(target)


@pytest.mark.parametrize("member", ["database", "document", "manifest"])
def test_a_flipped_byte_is_refused_before_anything_changes(source: Source, archive: Path, tmp_path: Path, member):
    broken = tmp_path / archive.name
    shutil.copy(archive, broken)
    manifest = backups.verify_archive(path=archive)
    names = {
        "database": backups.DATABASE_MEMBERS[source.kind],
        "document": next(m.name for m in manifest.members if m.name.startswith("documents/")),
        "manifest": backups.MANIFEST,
    }
    offset, size = _member_offset(broken, names[member])
    with broken.open("r+b") as stream:
        stream.seek(offset + size // 2)
        byte = stream.read(1)
        stream.seek(offset + size // 2)
        stream.write(bytes([byte[0] ^ 0x01]))

    with empty_target(source.kind, tmp_path / "target", migrated=True) as target, backup_config(target) as config:
        with pytest.raises(backups.ArchiveInvalid) as refused:
            backups.restore_backup(config=config, path=broken)
        _assert_untouched(config, target)
    expected = "manifest" if member == "manifest" else "does not match its SHA-256 checksum"
    assert expected in refused.value.detail, refused.value.detail


@pytest.mark.parametrize("where", ["a quarter", "three quarters", "the manifest's header", "mid-manifest"])
def test_a_truncated_archive_is_refused(source: Source, archive: Path, tmp_path: Path, where: str):
    cut = tmp_path / archive.name
    data = archive.read_bytes()
    manifest_at, manifest_size = _member_offset(archive, backups.MANIFEST)
    length = {
        "a quarter": len(data) // 4,
        "three quarters": len(data) * 3 // 4,
        "the manifest's header": manifest_at,  # every other member whole, the manifest's data gone
        "mid-manifest": manifest_at + manifest_size // 2,
    }[where]
    cut.write_bytes(data[:length])
    with empty_target(source.kind, tmp_path / "target") as target, backup_config(target) as config:
        with pytest.raises(backups.ArchiveInvalid) as refused:
            backups.restore_backup(config=config, path=cut)
        _assert_untouched(config, target)
    assert "truncated" in refused.value.detail, refused.value.detail


def test_the_cli_says_why_it_refuses_and_exits_non_zero(
    source: Source, archive: Path, tmp_path: Path, monkeypatch, capsys
):
    cut = tmp_path / "cut.tar"
    cut.write_bytes(archive.read_bytes()[:1000])
    with empty_target(source.kind, tmp_path / "target") as target:
        for name, value in {
            "DATABASE_URL": target.database_url,
            "VAR_DIR": str(target.var_dir),
            "ENV": "test",
            "JWT_SECRET": TEST_SECRET,
        }.items():
            monkeypatch.setenv(name, value)
        assert cli.main(["restore", str(cut)]) == 1
        assert "the archive is not intact" in capsys.readouterr().err
        assert cli.main(["restore", "--verify-only", str(archive)]) == 0
        assert "intact" in capsys.readouterr().out
        assert cli.main(["restore", str(archive)]) == 0
        assert "counts and revision match the manifest" in capsys.readouterr().out
        # Now the target holds data: a second restore is refused, unless forced.
        assert cli.main(["restore", str(archive)]) == 1
        assert "the target database is not empty" in capsys.readouterr().err
        assert cli.main(["restore", "--force", str(archive)]) == 0
        capsys.readouterr()
        assert cli.main(["backup", "--output", str(tmp_path / "again.tar")]) == 0
        assert (tmp_path / "again.tar").is_file()
        assert cli.main(["backup", "--output", str(tmp_path / "again.tar")]) == 1  # never overwritten
        assert "exists already" in capsys.readouterr().err


def test_a_non_empty_target_is_refused_and_left_as_it_was(source: Source, archive: Path):
    with backup_config(source.settings) as config:
        before = config.inventory.facts()
        with pytest.raises(backups.RestoreRefused) as refused:
            backups.restore_backup(config=config, path=archive)
        assert config.inventory.facts() == before
    assert "not empty" in refused.value.detail and "--force" in refused.value.detail


def test_a_dump_of_the_other_database_kind_is_refused(source: Source, archive: Path, tmp_path: Path):
    other = "sqlite" if source.kind == "postgresql" else "postgresql"

    @dataclasses.dataclass
    class OtherKind:
        kind: str

        def dump(self, target: Path, *, snapshot: str | None) -> None:
            raise AssertionError("never called")

        def restore(self, source: Path) -> None:
            raise AssertionError("never called")

    with (
        empty_target(source.kind, tmp_path / "target") as target,
        backup_config(target) as config,
        pytest.raises(backups.RestoreRefused) as refused,
    ):
        backups.restore_backup(config=dataclasses.replace(config, dumper=OtherKind(other)), path=archive)
    assert f"holds a {source.kind} database" in refused.value.detail
    assert f"cannot be restored into {other}" in refused.value.detail
