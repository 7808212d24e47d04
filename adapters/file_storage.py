"""Uploaded files kept in a local folder, content-addressed by SHA-256: the adapter of the
`services.document_files.FileStore` port, and an in-memory fake.

`LocalFileStore(root)` keeps a file's bytes at ``root/ab/cd/abcd…`` (its SHA-256 in hex, fanned
out by its first two bytes so no folder grows huge). A file is written atomically: streamed into a
temporary file in ``root/.incoming`` (same file system), hashed on the way, flushed and fsynced,
then moved into place with `os.replace` and the folder fsynced, so a reader sees the whole file or
none, and a crash leaves at most a stray temporary file (`sweep_incoming` removes old ones). The
same bytes stored twice are stored once.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

_KEY = re.compile(r"[0-9a-f]{64}")


def _check_key(key: str) -> str:
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        raise ValueError("a file key is a SHA-256 in 64 lowercase hex digits")
    return key


@dataclass(frozen=True)
class Stored:
    """A stored file: `key` is the SHA-256 of its bytes (hex), `size` its length in bytes."""

    key: str
    size: int


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalFileStore:
    """Files under a local folder (VAR_DIR/documents), content-addressed and written atomically.

    Args:
        root: the folder; created (mode 0700) when missing.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self._incoming = self.root / ".incoming"
        self._incoming.mkdir(parents=True, exist_ok=True, mode=0o700)

    def path(self, key: str) -> Path:
        """Where the file with this key lives (whether or not it exists). Raises ValueError for a
        key that is not 64 lowercase hex digits (so no key can name a path outside the root)."""
        _check_key(key)
        return self.root / key[:2] / key[2:4] / key

    def put(self, chunks: Iterable[bytes]) -> Stored:
        """Store the bytes `chunks` yields, one chunk at a time, atomically.

        Returns:
            The key (SHA-256 of the bytes, hex) and the size in bytes.

        Raises:
            Whatever iterating `chunks` raises (e.g. the size cap's error), after removing the
            partial temporary file: nothing is kept. OSError when the disk refuses.
        """
        digest = hashlib.sha256()
        size = 0
        fd, temporary = tempfile.mkstemp(dir=self._incoming, prefix="upload-")  # mode 0600
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            key = digest.hexdigest()
            target = self.path(key)
            target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.replace(temporary, target)  # the same key is the same bytes: replacing one is harmless
            _fsync_dir(target.parent)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise
        return Stored(key=key, size=size)

    def open(self, key: str) -> BinaryIO:
        """The stored file open for reading (a seekable binary file; the caller closes it).

        Raises:
            FileNotFoundError: no file with this key. ValueError: a malformed key.
        """
        return self.path(key).open("rb")

    def exists(self, key: str) -> bool:
        """Whether a file with this key is stored (ValueError for a malformed key)."""
        return self.path(key).is_file()

    def delete(self, key: str) -> bool:
        """Remove the file with this key; False when there was none (ValueError for a malformed
        key). Empty fan-out folders are left in place."""
        try:
            self.path(key).unlink()
        except FileNotFoundError:
            return False
        return True

    def entries(self) -> Iterator[tuple[str, float]]:
        """Every stored file: (key, modification time in seconds since the epoch). Files whose
        names are no key (anything else someone put in the folder) are not listed."""
        for fan_out in sorted(self.root.glob("[0-9a-f][0-9a-f]/[0-9a-f][0-9a-f]")):
            for path in fan_out.iterdir():
                if _KEY.fullmatch(path.name) and path.name[:4] == fan_out.parent.name + fan_out.name:
                    with contextlib.suppress(FileNotFoundError):  # deleted meanwhile
                        yield path.name, path.stat().st_mtime

    def modified_at(self, key: str) -> float | None:
        """When the file with this key was last written (seconds since the epoch), or None when
        there is none (ValueError for a malformed key)."""
        try:
            return self.path(key).stat().st_mtime
        except FileNotFoundError:
            return None

    def sweep_incoming(self, *, older_than: float | None = None, older_than_seconds: float = 3600.0) -> int:
        """Remove temporary files left by writers that died: last modified before `older_than`
        (seconds since the epoch), or else more than `older_than_seconds` ago. How many were
        removed."""
        cutoff = older_than if older_than is not None else time.time() - older_than_seconds
        removed = 0
        for leftover in self._incoming.glob("upload-*"):
            with contextlib.suppress(FileNotFoundError):
                if leftover.stat().st_mtime < cutoff:
                    leftover.unlink()
                    removed += 1
        return removed


class MemoryFileStore:
    """The same store in memory, for tests: `files` maps keys to bytes, `modified` keys to when
    they were last stored (seconds since the epoch; a test may set it)."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.modified: dict[str, float] = {}

    def put(self, chunks: Iterable[bytes]) -> Stored:
        """Store the bytes (nothing is kept when iterating `chunks` raises)."""
        data = b"".join(chunks)
        key = hashlib.sha256(data).hexdigest()
        self.files[key] = data
        self.modified[key] = time.time()
        return Stored(key=key, size=len(data))

    def entries(self) -> Iterator[tuple[str, float]]:
        """Every stored key and when it was stored."""
        for key in list(self.files):
            yield key, self.modified.get(key, 0.0)

    def modified_at(self, key: str) -> float | None:
        """When the key was stored, or None when absent."""
        return self.modified.get(_check_key(key)) if key in self.files else None

    def sweep_incoming(self, *, older_than: float | None = None, older_than_seconds: float = 3600.0) -> int:
        """Nothing is ever half-written in memory: 0."""
        return 0

    def open(self, key: str) -> BinaryIO:
        """The bytes as a seekable stream (FileNotFoundError when absent)."""
        try:
            return io.BytesIO(self.files[_check_key(key)])
        except KeyError:
            raise FileNotFoundError(key) from None

    def exists(self, key: str) -> bool:
        """Whether the key is stored."""
        return _check_key(key) in self.files

    def delete(self, key: str) -> bool:
        """Remove the key; False when absent."""
        self.modified.pop(_check_key(key), None)
        return self.files.pop(key, None) is not None
