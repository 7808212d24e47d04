"""Documents (issue 15): where uploaded files are kept, and the size cap applied while they arrive.

The store is a port (`FileStore`): `adapters/file_storage.py` keeps files in a local folder
(`VAR_DIR/documents`), content-addressed by SHA-256 and written atomically, and `MemoryFileStore`
keeps them in memory for tests; an object store can implement the same four methods later.
Content addressing means two uploads of the same bytes share one stored file: whoever deletes a
document deletes the file only when no other document names the same key.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import BinaryIO, Protocol

from services.errors import DomainError, ProblemType


class DocumentTooLarge(DomainError):
    """An upload larger than the limit (DOCUMENT_MAX_BYTES); nothing past the limit was read.

    Attributes:
        max_bytes: the limit, in bytes.
    """

    problem = ProblemType("/problems/payload-too-large", "Payload too large", 413)

    def __init__(self, detail: str, *, max_bytes: int) -> None:
        super().__init__(detail)
        self.max_bytes = max_bytes


class StoredFile(Protocol):
    """A file the store holds: its key (the SHA-256 of its bytes, 64 lowercase hex digits) and
    its size in bytes."""

    @property
    def key(self) -> str: ...

    @property
    def size(self) -> int: ...


class FileStore(Protocol):
    """Keeps uploaded files by the SHA-256 of their bytes (`adapters/file_storage.py`
    `LocalFileStore`; `MemoryFileStore` in tests). Keys are 64 lowercase hex digits; any other key
    raises ValueError."""

    def put(self, chunks: Iterable[bytes]) -> StoredFile:
        """Store the bytes `chunks` yields, read one chunk at a time; all or nothing: when the
        iteration raises, nothing is kept and the error propagates."""
        ...

    def open(self, key: str) -> BinaryIO:
        """The stored file, open for reading (seekable); the caller closes it. Raises
        FileNotFoundError when there is none."""
        ...

    def exists(self, key: str) -> bool:
        """Whether a file with this key is stored."""
        ...

    def delete(self, key: str) -> bool:
        """Remove the file; False when there was none."""
        ...

    def entries(self) -> Iterator[tuple[str, float]]:
        """Every stored file: (key, last modified as seconds since the epoch). Storing the same
        bytes again counts as a modification."""
        ...

    def modified_at(self, key: str) -> float | None:
        """When the file with this key was last stored (seconds since the epoch), or None."""
        ...

    def sweep_incoming(self, *, older_than: float) -> int:
        """Remove the half-written temporary files of writers that died, last modified before
        `older_than` (seconds since the epoch); how many were removed."""
        ...


def capped(chunks: Iterable[bytes], *, max_bytes: int) -> Iterator[bytes]:
    """The chunks of an upload, raising as soon as they add up to more than `max_bytes`.

    The chunk that crosses the limit is the last one read: the source is not read further, so an
    oversized upload costs at most `max_bytes` plus one chunk (issue 15: "413 without reading past
    it").

    Args:
        chunks: the upload's bytes, in order (empty chunks are skipped).
        max_bytes: the most bytes accepted (DOCUMENT_MAX_BYTES), at least 1.

    Raises:
        DocumentTooLarge: the chunks add up to more than `max_bytes`.
    """
    total = 0
    for chunk in chunks:
        if not chunk:
            continue
        total += len(chunk)
        if total > max_bytes:
            raise DocumentTooLarge(
                f"The file is larger than {max_bytes} bytes, the most accepted.", max_bytes=max_bytes
            )
        yield chunk


def store_upload(*, store: FileStore, chunks: Iterable[bytes], max_bytes: int) -> StoredFile:
    """Store an upload's bytes, refusing it past `max_bytes` without reading further.

    Args:
        store: where files are kept.
        chunks: the upload's bytes, in order (e.g. 64 KiB reads of the multipart part).
        max_bytes: the most bytes accepted (DOCUMENT_MAX_BYTES).

    Returns:
        The stored file: its key (SHA-256, hex) and size in bytes.

    Raises:
        DocumentTooLarge: more than `max_bytes`; nothing is kept.
    """
    return store.put(capped(chunks, max_bytes=max_bytes))
