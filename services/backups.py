"""Backups and restores of the whole service's data (issue 18, "Backup and restore"): the
database and the documents' stored files, in one tar archive with a manifest.

An archive (``charter-backup-<UTC time>-<8 hex>.tar``, uncompressed: PostgreSQL's dump is
compressed already, and an uncompressed tar lets a listing read its headers without reading its
data) holds, in this order:

- ``database/charter.pgdump`` (`pg_dump` custom format) or ``database/charter.sqlite3`` (a copy
  made with SQLite's online backup API);
- ``documents/ab/cd/<sha256>``: every stored document file (content-addressed);
- ``manifest.json`` last: `FORMAT` and `FORMAT_VERSION`, ``created_at``, ``app_version``, the
  database's ``kind`` and ``schema_revision`` (Alembic's head stored in it), the row count of
  every table *as dumped* (PostgreSQL: read in the snapshot pg_dump dumps; SQLite: read from the
  copy), the size and SHA-256 of every other member, and ``manifest_sha256``, the SHA-256 of the
  manifest's own canonical JSON without that field.

A restore verifies every checksum before it changes anything, refuses a non-empty target unless
forced, restores the files then the database, and checks the restored database's counts and
revision against the manifest. The database-specific parts are behind two ports: `DumpTool`
(``adapters/database_dump.py``: pg_dump / pg_restore, SQLite's backup API) and
`DatabaseInventory` (``persistence/backups.py``: the SQL that counts, reads the revision and
exports PostgreSQL's snapshot).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any, Protocol

from persistence.backups import DatabaseFacts, Snapshot
from persistence.jobs.models import Job
from persistence.unit_of_work import UnitOfWork
from services import jobs as job_services
from services.clock import Clock
from services.cursors import decode_values, encode_values
from services.document_files import FileStore
from services.errors import DomainError, ProblemType

FORMAT = "charter-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
DATABASE_MEMBERS = {"sqlite": "database/charter.sqlite3", "postgresql": "database/charter.pgdump"}
ARCHIVE_NAME = re.compile(r"charter-backup-(\d{8}T\d{6}Z)-([0-9a-f]{8})\.tar")
"""The name of every archive `create_backup` writes into BACKUP_DIR; a listing and the pruning
look at these names only (never at a name a user gave)."""
_DOCUMENT_MEMBER = re.compile(r"documents/([0-9a-f]{2})/([0-9a-f]{2})/([0-9a-f]{64})")
MAX_MANIFEST_BYTES = 64 * 1024 * 1024
"""The largest manifest read (a member list of about a million files)."""
CHUNK_BYTES = 1024 * 1024
JOB_KIND = "backups.create"
MAX_SLOT_LOOKBACK_MINUTES = 24 * 60
"""How far back `due_slot` looks for a scheduled minute (a worker stopped longer catches up once)."""


# --- errors --------------------------------------------------------------------------------------


class BackupFailed(DomainError):
    """A backup could not be written (a tool failed, the disk refused); nothing was kept, and
    older archives are untouched."""

    problem = ProblemType("/problems/backup-failed", "Backup failed", 500)


class ArchiveInvalid(DomainError):
    """An archive that is not a complete, intact Charter backup: unreadable, truncated, a member
    missing, added or changed (checksum), or a manifest that does not hold. Nothing was changed."""

    problem = ProblemType("/problems/backup-archive-invalid", "Backup archive invalid", 422)


class RestoreRefused(DomainError):
    """A restore that would be wrong to start: a non-empty target without ``--force``, a dump of
    the other database kind (PostgreSQL into SQLite or the reverse), or a pg_restore older than
    the pg_dump that made the archive. Nothing was changed."""

    problem = ProblemType("/problems/restore-refused", "Restore refused", 409)


class RestoreMismatch(DomainError):
    """The restored database does not hold what the manifest says (a table's row count or the
    schema revision differs): the restore must not be trusted."""

    problem = ProblemType("/problems/restore-mismatch", "Restored database differs from its manifest", 500)


# --- ports -----------------------------------------------------------------------------------------


class DumpTool(Protocol):
    """Copies a database to a file and back (`adapters.database_dump`: `PostgresDumpTool`,
    `SqliteDumpTool`). `kind` is ``postgresql`` or ``sqlite``."""

    kind: str

    def dump(self, target: Path, *, snapshot: str | None) -> None:
        """Write the database to the new file `target` (inside PostgreSQL's exported `snapshot`)."""
        ...

    def restore(self, source: Path) -> None:
        """Load the file `source` (a `dump`) into the database, replacing what it holds."""
        ...


class PostgresClient(Protocol):
    """The versions of PostgreSQL's client programs (`PostgresDumpTool`)."""

    def client_version(self) -> int:
        """pg_dump's major version."""
        ...

    def restore_client_version(self) -> int:
        """pg_restore's major version."""
        ...


class DatabaseInventory(Protocol):
    """The SQL side of a backup (`persistence.backups.DatabaseInventory`)."""

    kind: str

    def facts(self) -> DatabaseFacts:
        """Every table's row count and the schema revision."""
        ...

    def is_empty(self) -> bool:
        """Whether no table holds a row but the bookkeeping ones (`bookkeeping_tables`)."""
        ...

    def bookkeeping_tables(self) -> set[str]:
        """Tables with rows even in an unused database (Alembic's, SQLite's FTS5 shadow tables)."""
        ...

    def server_version(self) -> int | None:
        """PostgreSQL's major version; None on SQLite."""
        ...

    def snapshot(self) -> AbstractContextManager[Snapshot]:
        """A consistent view held while the block runs (PostgreSQL: an exported snapshot)."""
        ...


class Schedule(Protocol):
    """When scheduled backups run (`adapters.cron_schedule.CronSchedule`: BACKUP_SCHEDULE)."""

    expression: str

    def matches(self, minute: datetime) -> bool:
        """Whether the minute holding `minute` is a scheduled one."""
        ...


@dataclass
class BackupConfig:
    """What backups need from the wiring (`server.worker.make_backup_config`; the job engine's
    ``context["backups"]``).

    Attributes:
        directory: BACKUP_DIR, where archives are written and listed.
        keep: BACKUP_KEEP, how many archives a scheduled backup leaves (the newest).
        dumper: the database's copying tool.
        inventory: the database's figures.
        copy_facts: the figures of a SQLite copy (a file), read after the backup API made it.
        store: the documents' file store (VAR_DIR/documents).
        app_version: written into the manifest (the contract's ``info.version``).
        schedule: BACKUP_SCHEDULE, or None (no scheduled backups).
    """

    directory: Path
    keep: int
    dumper: DumpTool
    inventory: DatabaseInventory
    copy_facts: Callable[[Path], DatabaseFacts]
    store: FileStore
    app_version: str
    schedule: Schedule | None = None


# --- results ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    """One member of an archive: its `name`, `size` in bytes and `sha256` (hex)."""

    name: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    """An archive's manifest, as written (`raw`) and read."""

    raw: dict[str, Any]

    @property
    def created_at(self) -> datetime:
        return datetime.fromisoformat(self.raw["created_at"])

    @property
    def database_kind(self) -> str:
        return str(self.raw["database"]["kind"])

    @property
    def schema_revision(self) -> str | None:
        revision = self.raw["database"]["schema_revision"]
        return None if revision is None else str(revision)

    @property
    def table_counts(self) -> dict[str, int]:
        return {str(name): int(count) for name, count in self.raw["database"]["table_counts"].items()}

    @property
    def members(self) -> list[Member]:
        return [Member(m["name"], int(m["size"]), str(m["sha256"])) for m in self.raw["members"]]


@dataclass(frozen=True)
class BackupInfo:
    """A backup just written: where, its size in bytes, and its manifest."""

    path: Path
    size_bytes: int
    manifest: Manifest


@dataclass(frozen=True)
class RestoreReport:
    """What a restore put back: tables and rows (as verified), document files, the revision."""

    tables: int
    rows: int
    documents: int
    schema_revision: str | None
    database_kind: str


@dataclass(frozen=True)
class BackupSummary:
    """One archive of BACKUP_DIR in a listing.

    Attributes:
        name: the file name (`ARCHIVE_NAME`).
        size_bytes: its size.
        created_at: the manifest's, or the name's time when the manifest cannot be read.
        valid: whether its structure holds (`inspect_archive`); `problem` says why not.
        database_kind, schema_revision, table_rows_total, document_files: from the manifest
            (None when it cannot be read).
    """

    name: str
    size_bytes: int
    created_at: datetime
    valid: bool
    problem: str | None = None
    database_kind: str | None = None
    schema_revision: str | None = None
    table_rows_total: int | None = None
    document_files: int | None = None


@dataclass(frozen=True)
class BackupPage:
    """One page of archives, newest first, and the next page's cursor (None on the last)."""

    items: list[BackupSummary] = field(default_factory=list)
    next_cursor: str | None = None


# --- writing -----------------------------------------------------------------------------------------


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def manifest_checksum(raw: dict[str, Any]) -> str:
    """The SHA-256 (hex) of a manifest's canonical JSON without its ``manifest_sha256``."""
    return hashlib.sha256(_canonical({k: v for k, v in raw.items() if k != "manifest_sha256"})).hexdigest()


class _Hashing:
    """A reader that hashes and counts what passes through it."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.digest = hashlib.sha256()
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        self.digest.update(data)
        self.size += len(data)
        return data


def _add(tar: tarfile.TarFile, name: str, stream: IO[bytes], size: int, mtime: float) -> Member:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = int(mtime)
    info.mode = 0o600
    reader = _Hashing(stream)
    tar.addfile(info, reader)  # tarfile reads exactly `size` bytes
    if reader.size != size:
        raise BackupFailed(f"{name} changed size while it was archived")
    return Member(name, size, reader.digest.hexdigest())


def archive_name(at: datetime) -> str:
    """A new archive's name: its UTC time and 8 random hex digits (`ARCHIVE_NAME`)."""
    return f"charter-backup-{at.astimezone(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}.tar"


def _fsync_directory(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _check_dump_versions(config: BackupConfig) -> int | None:
    """pg_dump's major version, refused when it is older than the server's (it cannot dump a
    newer server: PostgreSQL's pg_dump documentation); None on SQLite."""
    if config.dumper.kind != "postgresql":
        return None
    client = _postgres_client(config).client_version()
    server = config.inventory.server_version()
    if server is not None and client < server:
        raise BackupFailed(
            f"pg_dump on PATH is PostgreSQL {client} but the server is PostgreSQL {server}: install the client "
            f"programs of version {server} or newer (postgresql-client-{server})"
        )
    return client


def _postgres_client(config: BackupConfig) -> PostgresClient:
    client = config.dumper
    if not hasattr(client, "client_version") or not hasattr(client, "restore_client_version"):
        raise BackupFailed("the PostgreSQL dump tool tells no client version")
    return client  # type: ignore[return-value]  # checked just above


def create_backup(*, config: BackupConfig, clock: Clock, output: Path | None = None) -> BackupInfo:
    """Write one archive of the database and the document files (the module's docstring says
    what it holds), consistent while the app serves: the database is copied first (PostgreSQL:
    pg_dump inside an exported snapshot whose counts go into the manifest; SQLite: the online
    backup API, counted from the copy), then the stored files (content-addressed, so a file
    written meanwhile is an extra the maintenance sweep removes, never a missing one).

    The archive is written under a temporary name in its folder, fsynced, then renamed
    atomically: a reader sees a whole archive or none, and a failure leaves no partial file.

    Args:
        output: the archive's path, or an existing folder to write a new name into; None: a new
            name (`archive_name`) in BACKUP_DIR. An existing file is never overwritten.

    Raises:
        BackupFailed: a tool failed or is too old for the server, the disk refused, or `output`
            exists.
    """
    now = clock.now()
    if output is None:
        target = config.directory / archive_name(now)
    elif output.is_dir():
        target = output / archive_name(now)
    else:
        target = output
    if target.exists():
        raise BackupFailed(f"{target} exists already; backups never overwrite a file")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        client_version = _check_dump_versions(config)
        with tempfile.TemporaryDirectory(prefix=".charter-backup-", dir=target.parent) as staging:
            database_file = Path(staging) / "database"
            with config.inventory.snapshot() as snapshot:
                config.dumper.dump(database_file, snapshot=snapshot.id)
            facts = snapshot.facts if snapshot.facts is not None else config.copy_facts(database_file)
            partial = target.parent / f".{target.name}.partial"
            try:
                manifest = _write_archive(
                    partial, config=config, database_file=database_file, facts=facts, now=now, client=client_version
                )
                os.replace(partial, target)
                _fsync_directory(target.parent)
            finally:
                partial.unlink(missing_ok=True)
    except BackupFailed:
        raise
    except Exception as error:  # a tool's failure or the disk's: the message names it, no traceback needed
        raise BackupFailed(f"the backup failed: {error}") from error
    return BackupInfo(path=target, size_bytes=target.stat().st_size, manifest=manifest)


def _write_archive(
    path: Path, *, config: BackupConfig, database_file: Path, facts: DatabaseFacts, now: datetime, client: int | None
) -> Manifest:
    kind = config.dumper.kind
    members: list[Member] = []
    stamp = now.timestamp()
    document_bytes = 0
    with path.open("wb") as raw:
        with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
            with database_file.open("rb") as dump:
                members.append(_add(tar, DATABASE_MEMBERS[kind], dump, database_file.stat().st_size, stamp))
            for key, _modified in sorted(config.store.entries()):
                try:
                    stream = config.store.open(key)
                except FileNotFoundError:  # deleted since it was listed: its document is gone too
                    continue
                with stream:
                    size = stream.seek(0, os.SEEK_END)
                    stream.seek(0)
                    member = _add(tar, f"documents/{key[:2]}/{key[2:4]}/{key}", stream, size, stamp)
                if member.sha256 != key:
                    raise BackupFailed(f"the stored file {key} does not hold the bytes its name says (damaged disk?)")
                members.append(member)
                document_bytes += size
            body: dict[str, Any] = {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "created_at": now.astimezone(UTC).isoformat().replace("+00:00", "Z"),
                "app_version": config.app_version,
                "database": {
                    "kind": kind,
                    "member": DATABASE_MEMBERS[kind],
                    "schema_revision": facts.schema_revision,
                    "table_counts": dict(sorted(facts.table_counts.items())),
                    "dump_client_version": client,
                },
                "documents": {"files": len(members) - 1, "bytes": document_bytes},
                "members": [{"name": m.name, "size": m.size, "sha256": m.sha256} for m in members],
            }
            body["manifest_sha256"] = manifest_checksum(body)
            encoded = json.dumps(body, indent=2, ensure_ascii=False).encode()
            info = tarfile.TarInfo(MANIFEST)
            info.size = len(encoded)
            info.mtime = int(stamp)
            info.mode = 0o600
            tar.addfile(info, _BytesReader(encoded))
        raw.flush()
        os.fsync(raw.fileno())
    return Manifest(body)


class _BytesReader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = 0

    def read(self, size: int = -1) -> bytes:
        end = len(self.data) if size < 0 else self.offset + size
        chunk = self.data[self.offset : end]
        self.offset += len(chunk)
        return chunk


# --- reading and verifying ---------------------------------------------------------------------------


def _parse_manifest(data: bytes, *, where: str) -> Manifest:
    try:
        raw = json.loads(data)
        if not isinstance(raw, dict) or raw.get("format") != FORMAT:
            raise ValueError("not a Charter backup manifest")
        if raw.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"format version {raw.get('format_version')!r}; this version reads {FORMAT_VERSION}")
        if raw.get("manifest_sha256") != manifest_checksum(raw):
            raise ValueError("its checksum does not hold (the manifest was changed or damaged)")
        manifest = Manifest(raw)
        manifest.created_at  # noqa: B018 - each is read once, so a malformed field fails here
        if manifest.database_kind not in DATABASE_MEMBERS:
            raise ValueError(f"unknown database kind {manifest.database_kind!r}")
        manifest.table_counts  # noqa: B018
        manifest.schema_revision  # noqa: B018
        names = [member.name for member in manifest.members]
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise ArchiveInvalid(f"{where}: the manifest is invalid: {error}") from error
    if len(set(names)) != len(names) or DATABASE_MEMBERS[manifest.database_kind] not in names:
        raise ArchiveInvalid(f"{where}: the manifest's member list is invalid")
    return manifest


def _member_name_allowed(name: str) -> bool:
    return name == MANIFEST or name in DATABASE_MEMBERS.values() or _DOCUMENT_MEMBER.fullmatch(name) is not None


def _read_manifest(tar: tarfile.TarFile, info: tarfile.TarInfo, where: str) -> Manifest:
    if info.size > MAX_MANIFEST_BYTES:
        raise ArchiveInvalid(f"{where}: the manifest is larger than {MAX_MANIFEST_BYTES} bytes")
    stream = tar.extractfile(info)
    if stream is None:
        raise ArchiveInvalid(f"{where}: the manifest is not a file")
    data = stream.read()
    if len(data) != info.size:
        raise ArchiveInvalid(f"{where}: the manifest is cut short (the archive is truncated)")
    return _parse_manifest(data, where=where)


def _scan(path: Path, *, hash_members: bool) -> tuple[Manifest, dict[str, Member]]:
    """Read every header of the archive (and, with `hash_members`, every byte), returning the
    manifest and what was found, by name (sha256 empty when not hashed)."""
    where = f"{path.name}"
    found: dict[str, Member] = {}
    manifest: Manifest | None = None
    try:
        with tarfile.open(path, mode="r:") as tar:
            for info in tar:
                if not info.isfile() or not _member_name_allowed(info.name):
                    raise ArchiveInvalid(f"{where}: unexpected member {info.name!r}: this is not a Charter backup")
                if info.name in found or (info.name == MANIFEST and manifest is not None):
                    raise ArchiveInvalid(f"{where}: the member {info.name!r} appears twice")
                if info.name == MANIFEST:
                    manifest = _read_manifest(tar, info, where)
                    continue
                digest = ""
                if hash_members:
                    stream = tar.extractfile(info)
                    assert stream is not None  # a regular file
                    hasher = hashlib.sha256()
                    size = 0
                    while chunk := stream.read(CHUNK_BYTES):
                        hasher.update(chunk)
                        size += len(chunk)
                    if size != info.size:
                        raise ArchiveInvalid(f"{where}: {info.name} is cut short (the archive is truncated)")
                    digest = hasher.hexdigest()
                found[info.name] = Member(info.name, info.size, digest)
    except ArchiveInvalid:
        raise
    except FileNotFoundError as error:
        raise ArchiveInvalid(f"{where}: no such file") from error
    except (tarfile.TarError, EOFError, OSError, ValueError) as error:
        raise ArchiveInvalid(f"{where}: the archive cannot be read (truncated or corrupted): {error}") from error
    if manifest is None:
        raise ArchiveInvalid(f"{where}: no manifest.json: the archive is truncated, or not a Charter backup")
    declared = {member.name: member for member in manifest.members}
    missing = sorted(set(declared) - set(found))
    extra = sorted(set(found) - set(declared))
    if missing:
        raise ArchiveInvalid(f"{where}: {len(missing)} member(s) the manifest lists are missing, e.g. {missing[0]}")
    if extra:
        raise ArchiveInvalid(f"{where}: {len(extra)} member(s) the manifest does not list, e.g. {extra[0]}")
    for name, member in declared.items():
        if found[name].size != member.size:
            raise ArchiveInvalid(f"{where}: {name} is {found[name].size} bytes, the manifest says {member.size}")
        if hash_members and found[name].sha256 != member.sha256:
            raise ArchiveInvalid(f"{where}: {name} does not match its SHA-256 checksum: the archive is corrupted")
    return manifest, found


def verify_archive(*, path: Path) -> Manifest:
    """Check an archive completely: it reads to its end; its manifest is a Charter manifest of
    this format whose own checksum holds; it holds exactly the members the manifest lists, each
    with the listed size and SHA-256. Reads every byte; changes nothing.

    Raises:
        ArchiveInvalid: saying what is wrong (unreadable, truncated, corrupted member, …).
    """
    manifest, _found = _scan(path, hash_members=True)
    return manifest


def inspect_archive(*, path: Path) -> Manifest:
    """The cheap check a listing makes: `verify_archive` without hashing the members (headers,
    sizes and the manifest only; a flipped byte inside a member is found by `verify_archive`).

    Raises:
        ArchiveInvalid: as `verify_archive`.
    """
    manifest, _found = _scan(path, hash_members=False)
    return manifest


# --- restoring ---------------------------------------------------------------------------------------


def _stream_member(tar: tarfile.TarFile, name: str) -> Iterator[bytes]:
    stream = tar.extractfile(name)
    if stream is None:
        raise ArchiveInvalid(f"{name} is not a file")
    with stream:
        while chunk := stream.read(CHUNK_BYTES):
            yield chunk


def restore_backup(*, config: BackupConfig, path: Path, force: bool = False) -> RestoreReport:
    """Restore an archive into the configured database and file store, then check it.

    In order: `verify_archive` (every checksum, before anything is touched); the database kind
    must be the target's (a PostgreSQL dump cannot be restored into SQLite, nor the reverse:
    they are different formats); pg_restore must be at least as new as the pg_dump that made it;
    the target must be empty (`DatabaseInventory.is_empty`) unless `force`; the document files
    are put back (content-addressed: a file present already is the same file); the database is
    restored (PostgreSQL: pg_restore in one transaction, dropping the dumped objects first;
    SQLite: the backup API into the target); finally the restored database's schema revision
    and the row count of every table the manifest lists must equal the manifest's.

    Raises:
        ArchiveInvalid: the archive is not intact (nothing changed).
        RestoreRefused: another database kind, an old pg_restore, or a non-empty target without
            `force` (nothing changed).
        BackupFailed: a tool or the disk failed while restoring.
        RestoreMismatch: the restored database differs from the manifest.
    """
    manifest = verify_archive(path=path)
    kind = manifest.database_kind
    if kind != config.dumper.kind:
        raise RestoreRefused(
            f"{path.name} holds a {kind} database but DATABASE_URL names a {config.dumper.kind} database: a "
            f"{kind} dump cannot be restored into {config.dumper.kind}; restore it into a {kind} database"
        )
    if kind == "postgresql":
        made_by = manifest.raw["database"].get("dump_client_version")
        restorer = _postgres_client(config).restore_client_version()
        if isinstance(made_by, int) and restorer < made_by:
            raise RestoreRefused(
                f"the archive was made by pg_dump {made_by}; pg_restore on PATH is {restorer}, which cannot read it"
            )
    if not force and not config.inventory.is_empty():
        facts = config.inventory.facts()
        ignored = config.inventory.bookkeeping_tables()
        used = {name: count for name, count in facts.table_counts.items() if count and name not in ignored}
        raise RestoreRefused(
            f"the target database is not empty ({sum(used.values())} rows in {len(used)} tables): restore into an "
            "empty database, or pass --force to replace its content"
        )
    documents = 0
    try:
        with tempfile.TemporaryDirectory(prefix=".charter-restore-") as staging, tarfile.open(path, mode="r:") as tar:
            database_file = Path(staging) / "database"
            for member in manifest.members:
                matched = _DOCUMENT_MEMBER.fullmatch(member.name)
                if matched is not None:
                    stored = config.store.put(_stream_member(tar, member.name))
                    if stored.key != matched.group(3):
                        raise ArchiveInvalid(f"{member.name} changed since it was verified")
                    documents += 1
                    continue
                digest = hashlib.sha256()
                with database_file.open("wb") as out:
                    for chunk in _stream_member(tar, member.name):
                        digest.update(chunk)
                        out.write(chunk)
                if digest.hexdigest() != member.sha256:
                    raise ArchiveInvalid(f"{member.name} changed since it was verified")
            config.dumper.restore(database_file)
    except (ArchiveInvalid, RestoreRefused):
        raise
    except Exception as error:
        raise BackupFailed(f"the restore failed: {error}") from error
    facts = config.inventory.facts()
    differences = [
        f"{name}: {facts.table_counts.get(name, 'no table')} rows, the manifest says {count}"
        for name, count in manifest.table_counts.items()
        if facts.table_counts.get(name) != count
    ]
    if facts.schema_revision != manifest.schema_revision:
        differences.insert(
            0, f"schema revision {facts.schema_revision!r}, the manifest says {manifest.schema_revision!r}"
        )
    if differences:
        raise RestoreMismatch("the restored database differs from the manifest: " + "; ".join(differences[:10]))
    return RestoreReport(
        tables=len(manifest.table_counts),
        rows=sum(manifest.table_counts.values()),
        documents=documents,
        schema_revision=facts.schema_revision,
        database_kind=kind,
    )


# --- listing and pruning -----------------------------------------------------------------------------


def _archives(directory: Path) -> list[Path]:
    """The archives in `directory` by `ARCHIVE_NAME`, newest first (names sort by time)."""
    if not directory.is_dir():
        return []
    return sorted(
        (path for path in directory.iterdir() if ARCHIVE_NAME.fullmatch(path.name) and path.is_file()),
        key=lambda path: path.name,
        reverse=True,
    )


def _time_of(name: str) -> datetime:
    matched = ARCHIVE_NAME.fullmatch(name)
    assert matched is not None
    return datetime.strptime(matched.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


def summarize(path: Path) -> BackupSummary:
    """A listing's line for one archive (`inspect_archive`: headers and manifest, no hashing)."""
    size = path.stat().st_size
    try:
        manifest = inspect_archive(path=path)
    except ArchiveInvalid as error:
        return BackupSummary(
            name=path.name, size_bytes=size, created_at=_time_of(path.name), valid=False, problem=error.detail
        )
    return BackupSummary(
        name=path.name,
        size_bytes=size,
        created_at=manifest.created_at,
        valid=True,
        database_kind=manifest.database_kind,
        schema_revision=manifest.schema_revision,
        table_rows_total=sum(manifest.table_counts.values()),
        document_files=int(manifest.raw["documents"]["files"]),
    )


def list_backups(*, directory: Path, limit: int = 20, cursor: str | None = None) -> BackupPage:
    """The archives in BACKUP_DIR, newest first, `limit` per page (1 to 100), after `cursor`.

    Only names `create_backup` writes (`ARCHIVE_NAME`) are listed: nothing a request names is
    opened. Each is checked cheaply (`inspect_archive`); `valid` false means it cannot be
    restored as it is.

    Raises:
        InvalidInput: (``cursor``) a cursor this list did not make.
    """
    after = str(decode_values(cursor, kinds=("text",), scope="backups")[0]) if cursor else None
    names = [path for path in _archives(directory) if after is None or path.name < after]
    chosen = names[: limit + 1]
    items = [summarize(path) for path in chosen[:limit]]
    next_cursor = encode_values([items[-1].name], scope="backups") if len(chosen) > limit else None
    return BackupPage(items=items, next_cursor=next_cursor)


def newest_valid_backup_at(*, directory: Path, look_at: int = 5) -> datetime | None:
    """When the newest archive of `directory` that reads as whole (`summarize`'s `valid`) was
    made, among its `look_at` newest; None when there is none. What `/metrics` exports as
    `charter_backup_last_success_timestamp_seconds` for the backup-age alert (ops/prometheus)."""
    for path in _archives(directory)[:look_at]:
        summary = summarize(path)
        if summary.valid:
            return summary.created_at
    return None


def prune_backups(*, directory: Path, keep: int) -> list[str]:
    """Delete all but the `keep` newest archives of `directory` (by name, `ARCHIVE_NAME` only);
    returns the names deleted. Called only after a backup succeeded, so a failing backup never
    costs an older one."""
    deleted = []
    for path in _archives(directory)[max(keep, 1) :]:
        path.unlink(missing_ok=True)
        deleted.append(path.name)
    return deleted


# --- scheduled backups -------------------------------------------------------------------------------


def due_slot(*, schedule: Schedule, after: datetime, now: datetime) -> datetime | None:
    """The latest scheduled minute in (`after`, `now`], or None: what a worker's periodic check
    asks every JOB_SWEEP_INTERVAL_SECONDS. Looks back at most `MAX_SLOT_LOOKBACK_MINUTES`."""
    minute = now.astimezone(UTC).replace(second=0, microsecond=0)
    earliest = max(after, now - timedelta(minutes=MAX_SLOT_LOOKBACK_MINUTES))
    while minute > earliest:
        if schedule.matches(minute):
            return minute
        minute -= timedelta(minutes=1)
    return None


def queue_if_due(
    *, uow: UnitOfWork, clock: Clock, engine: job_services.JobEngine, schedule: Schedule, after: datetime
) -> Job | None:
    """Queue a `backups.create` job for the latest scheduled minute since `after` (`due_slot`),
    unless a backup job is already queued or running. Several workers may each queue one for
    the same minute: the job is idempotent per minute (`scheduled_backup`)."""
    slot = due_slot(schedule=schedule, after=after, now=clock.now())
    if slot is None or uow.jobs.pending_of_kind(JOB_KIND):
        return None
    return job_services.enqueue(
        uow=uow, clock=clock, engine=engine, kind=JOB_KIND, owner_id=None, payload={"slot": slot.isoformat()}
    )


def scheduled_backup(*, config: BackupConfig, clock: Clock, slot: datetime) -> dict[str, Any]:
    """The `backups.create` job: a backup into BACKUP_DIR for the scheduled minute `slot`, unless
    an archive made at or after `slot` exists (another worker's job for the same minute, or a
    re-delivery); then prune to BACKUP_KEEP. A failure raises before pruning, so older archives
    stay. Returns ``{"archive", "size_bytes", "pruned"}`` or ``{"skipped": true, "archive"}``.

    Raises:
        BackupFailed: as `create_backup`.
    """
    archives = _archives(config.directory)
    if archives and _time_of(archives[0].name) >= slot.replace(second=0, microsecond=0):
        return {"skipped": True, "archive": archives[0].name}
    info = create_backup(config=config, clock=clock)
    pruned = prune_backups(directory=config.directory, keep=config.keep)
    return {"archive": info.path.name, "size_bytes": info.size_bytes, "pruned": pruned}
