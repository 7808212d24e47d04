"""Housekeeping of the service's own data (issue 14's first job kind): expired records, and
stored files nothing names any more."""

from __future__ import annotations

from collections.abc import Callable
from itertools import islice

from persistence.unit_of_work import UnitOfWork
from services.clock import Clock
from services.document_files import FileStore

FILE_GRACE_SECONDS = 3600.0
"""How old a stored file no document names must be before it is deleted (an upload stores its
file before its transaction commits the document row; an hour is far beyond any upload)."""
MAX_FILES_PER_SWEEP = 10_000
"""Stored files looked at per sweep at most (the next hourly sweep goes on)."""


def purge_expired(*, uow: UnitOfWork, clock: Clock) -> dict[str, int]:
    """Delete what can no longer be used: idempotency records past their 24 h (a retry after
    that is a new request anyway) and password-reset tokens that expired or were used (a reset
    link works once, for PASSWORD_RESET_TTL_SECONDS). Returns how many of each went:
    ``{"idempotency_records": n, "password_reset_tokens": m}``."""
    now = clock.now()
    return {
        "idempotency_records": uow.idempotency.purge_expired(now),
        "password_reset_tokens": uow.resets.purge(now),
    }


def sweep_unreferenced_files(
    *,
    unit_of_work: Callable[[], UnitOfWork],
    clock: Clock,
    store: FileStore,
    grace_seconds: float = FILE_GRACE_SECONDS,
) -> dict[str, int]:
    """Delete uploaded files that no document names and that are older than `grace_seconds`,
    and the half-written temporary files of uploads whose writer died, older than the same.

    Where they come from (issue 15, documents): an upload stores its file first and commits the
    document row after, so a transaction that then fails (a database error, a lost connection)
    leaves a file no row names; a document deleted together with its chatbot or its account
    (the database's cascade) leaves its file behind; a process killed mid-upload leaves a
    temporary file. Content addressing makes a file shared by every document with its bytes:
    only a file that *no* document names goes.

    Args:
        store: the documents' file store (`services.document_files.FileStore`).
        grace_seconds: the least age, in seconds since the file was last stored, of what is
            deleted (`FILE_GRACE_SECONDS`, 1 hour): a file of an upload still in its
            transaction is always younger. Ages are measured against `clock`.

    Returns:
        ``{"unreferenced_files": n, "incoming_files": m}``: how many of each were deleted.

    At most `MAX_FILES_PER_SWEEP` stored files are looked at per call. A file is checked again
    just before it goes: one stored again meanwhile (an upload of the same bytes) is younger
    and kept.
    """
    cutoff = clock.now().timestamp() - grace_seconds
    old = [key for key, modified in islice(store.entries(), MAX_FILES_PER_SWEEP) if modified < cutoff]
    with unit_of_work() as uow:
        named = uow.documents.keys_in_use(old)
    deleted = 0
    for key in old:
        if key in named:
            continue
        modified = store.modified_at(key)
        if modified is not None and modified < cutoff and store.delete(key):
            deleted += 1
    return {"unreferenced_files": deleted, "incoming_files": store.sweep_incoming(older_than=cutoff)}
