"""Documents (issue 15): files uploaded to a chatbot, scanned, read and indexed.

Rules and where they come from:

* **Upload** (API_STYLE, Uploads; OWASP File Upload Cheat Sheet): the size limit
  (DOCUMENT_MAX_BYTES) is checked before the file is read and again while it is stored (413,
  nothing kept); the type is sniffed from the bytes (`services.document_types`), a name or
  declared type claiming another kind is 415 naming both, zero bytes 422. These answer at once
  and store nothing. An accepted file is stored content-addressed (`services.document_files`),
  a `pending` document row is written and a `documents.process` job queued: the answer is 202
  with the document and the job's `Location` (API_STYLE, Long-running work).
* **Processing** (`process_document`, the job): `scanning` → the built-in structural scan, then
  clamd when CLAMD_URL is set (`services.document_scan`); infected, or unscannable while
  DOCUMENT_BLOCK_UNSCANNABLE, is `quarantined` (never extracted, indexed or served). Clean →
  `extracting` → text (`services.document_text`), passages (`services.document_passages`),
  the chatbot's index (`services.knowledge.index_source`) → `ready` with its pages, words and
  passages. A document that cannot be read is `failed` with the problem
  (`/problems/document-unreadable`) and the job fails with it (not retried: the file will not
  change). An unreachable scanner raises `ScannerUnavailable`: the job engine retries it.
  Idempotent: every step can run again (a worker that died mid-way), and a finished document is
  left as it is.
* **Owner-scoped** through the chatbot (`services.chatbots.get_chatbot`): another user's
  chatbot's documents are 404; administrators see every chatbot's.
* **Content** is served only when `ready` (409 `/problems/document-not-ready` otherwise): a
  quarantined or unprocessed file is never handed out.
* **Quota** (issue 17): a document counts 1 on the owner's ``documents`` meter and its size on
  ``storage_bytes`` (`USAGE_METERS`, `services.usage`) from its upload to its deletion (or its
  chatbot's). An upload over either limit is 402 `/problems/quota-exceeded`: checked before
  the file is read (from the part's size), then counted under the counters' lock once stored;
  over quota there, no document is written and the file, named by nothing, goes with the
  hourly sweep of unreferenced files (`services.maintenance`).
* **Deletion** removes the document's passages, its row, and its stored file unless another
  document has the same bytes (content addressing shares one file).
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

from persistence.accounts.models import User
from persistence.documents.models import DOCUMENT_STATUSES, IN_PROGRESS_STATUSES, Document
from persistence.jobs.models import Job
from persistence.unit_of_work import UnitOfWork
from services import chatbots, knowledge, usage
from services import jobs as job_services
from services.clock import Clock
from services.cursors import decode_cursor, page
from services.document_files import DocumentTooLarge, FileStore, store_upload
from services.document_passages import chunk_passages
from services.document_scan import ScanLimits, ScanResult, VirusScanner, is_blocked, scan_document
from services.document_text import DocumentUnreadable, extract_text
from services.document_types import SNIFF_BYTES, DocumentKind, sniff_document_type
from services.errors import Conflict, DomainError, InvalidInput, NotFound, ProblemType

PROCESS_KIND = "documents.process"
"""The job kind that scans, reads and indexes an uploaded document (declared in jobs/documents.py)."""
SOURCE_TYPE = "document"
"""The knowledge source type of a document's passages."""
READ_CHUNK_BYTES = 64 * 1024
"""How much of an upload is read at a time while it is stored."""
MAX_FILENAME_LENGTH = 255
MAX_TITLE_LENGTH = 200
USAGE_METERS = [
    usage.Meter(
        name="documents",
        unit="documents",
        periodic=False,
        description="The documents your chatbots hold, whatever their state (a deleted one no longer counts).",
    ),
    usage.Meter(
        name="storage_bytes",
        unit="bytes",
        periodic=False,
        description="The bytes of the documents your chatbots hold, as uploaded.",
    ),
]
"""The meters this area counts (`services.usage`)."""


class DocumentNotReady(Conflict):
    """A document's content asked for before it is `ready` (pending, being processed,
    quarantined or failed): it is not served."""

    problem = ProblemType("/problems/document-not-ready", "Document not ready", 409)


@dataclass(frozen=True)
class DocumentConfig:
    """What the documents area needs from the wiring (`server.worker.make_document_config`, in the
    job engine's `context["documents"]`).

    Attributes:
        store: where uploaded files are kept (`LocalFileStore` on `VAR_DIR/documents`).
        max_bytes: the largest document accepted, in bytes (DOCUMENT_MAX_BYTES).
        scanner: clamd (CLAMD_URL), or None for the built-in scan only.
        block_unscannable: quarantine an unscannable document (DOCUMENT_BLOCK_UNSCANNABLE).
        scan_limits: the built-in scan's limits.
    """

    store: FileStore
    max_bytes: int
    scanner: VirusScanner | None = None
    block_unscannable: bool = True
    scan_limits: ScanLimits | None = None


def config_of(engine: job_services.JobEngine) -> DocumentConfig:
    """The documents configuration the wiring put in the job engine's `context`.

    Raises:
        LookupError: the wiring gave none (a bug of the wiring).
    """
    config = engine.context.get("documents")
    if not isinstance(config, DocumentConfig):
        raise LookupError("the job engine has no documents configuration")
    return config


@dataclass(frozen=True)
class DocumentPage:
    """One page of documents and the cursor of the next page (None on the last page)."""

    items: list[Document]
    next_cursor: str | None


_UNSAFE_NAME = re.compile(r"[\x00-\x1f\x7f/\\]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def clean_filename(filename: str | None) -> str:
    """The name an upload is kept and served under: the last path segment of what the client
    sent, control characters and separators removed, NFC, at most 255 characters (the
    extension kept); ``document`` when nothing is left."""
    name = unicodedata.normalize("NFC", (filename or "").replace("\\", "/").rsplit("/", 1)[-1])
    name = _UNSAFE_NAME.sub("", name).strip().strip(".") or ""
    if len(name) > MAX_FILENAME_LENGTH:
        stem, dot, extension = name.rpartition(".")
        if dot and 0 < len(extension) <= 10:
            name = stem[: MAX_FILENAME_LENGTH - len(extension) - 1] + "." + extension
        else:
            name = name[:MAX_FILENAME_LENGTH]
    return name or "document"


def _chunks(stream: BinaryIO) -> Iterator[bytes]:
    while chunk := stream.read(READ_CHUNK_BYTES):
        yield chunk


def _size_of(stream: BinaryIO) -> int | None:
    try:
        position = stream.tell()
        size = stream.seek(0, 2)
        stream.seek(position)
    except (OSError, ValueError, AttributeError):
        return None
    return int(size)


def upload_document(
    *,
    uow: UnitOfWork,
    clock: Clock,
    engine: job_services.JobEngine,
    config: DocumentConfig,
    caller: User,
    chatbot_id: uuid.UUID,
    stream: BinaryIO,
    filename: str | None,
    declared_type: str | None,
    title: str | None = None,
) -> tuple[Document, Job]:
    """Accept an upload: check its size and type, store it, write a `pending` document and queue
    its `documents.process` job (owned by the chatbot's owner). Returns the document and the job.

    Args:
        stream: the uploaded file, from its start (seekable: the multipart part).
        filename: the name the client gave, or None (kept cleaned, `clean_filename`).
        declared_type: the part's `Content-Type`, or None.
        title: the title to show and cite (at most 200 characters); None: the file name.

    Raises:
        NotFound: no such chatbot of the caller (administrators: of anyone).
        InvalidInput: a title over 200 characters or with control characters (400, pointer
            ``/title``).
        DocumentTooLarge: more than `config.max_bytes` (413); nothing is kept.
        EmptyDocument: zero bytes (422).
        DocumentTypeMismatch, UnsupportedDocumentType: the bytes are not an accepted kind, or
            the name or declared type claims another (415).
        QuotaExceeded: the owner's plan allows no more documents, or not this many more bytes
            (402); no document is written.
    """
    chatbot = chatbots.get_chatbot(uow=uow, caller=caller, chatbot_id=chatbot_id)
    if title is not None and len(title) > MAX_TITLE_LENGTH:
        raise InvalidInput(f"A title is at most {MAX_TITLE_LENGTH} characters.", pointer="/title")
    if title is not None and _CONTROL.search(title):
        raise InvalidInput("A title holds no control characters.", pointer="/title")
    size = _size_of(stream)
    if size is not None and size > config.max_bytes:
        raise DocumentTooLarge(
            f"The file is larger than {config.max_bytes} bytes, the most accepted.", max_bytes=config.max_bytes
        )
    usage.check_quota(uow, owner_id=chatbot.owner_id, meter="documents", quantity=1, clock=clock)
    usage.check_quota(uow, owner_id=chatbot.owner_id, meter="storage_bytes", quantity=size or 0, clock=clock)
    name = clean_filename(filename)
    head = stream.read(SNIFF_BYTES)
    stream.seek(0)
    sniffed = sniff_document_type(head, filename=name, declared_type=declared_type, stream=stream)
    stream.seek(0)
    stored = store_upload(store=config.store, chunks=_chunks(stream), max_bytes=config.max_bytes)
    document_id = uuid.uuid4()
    # over quota here, the stored file is named by nothing: the hourly sweep removes it, as it
    # removes a failed upload transaction's (deleting it now could take a concurrent upload's
    # file of the same bytes, whose row is not committed yet)
    _count_upload(uow=uow, clock=clock, owner_id=chatbot.owner_id, document_id=document_id, size=stored.size)
    now = clock.now()
    document = Document(
        id=document_id,
        chatbot_id=chatbot.id,
        owner_id=chatbot.owner_id,
        title=(title.strip() if title and title.strip() else name)[:MAX_TITLE_LENGTH],
        filename=name,
        media_type=sniffed.media_type,
        kind=sniffed.kind.value,
        text_encoding=sniffed.encoding,
        size_bytes=stored.size,
        sha256=stored.key,
        status="pending",
        created_at=now,
        updated_at=now,
    )
    uow.documents.add(document)
    job = job_services.enqueue(
        uow=uow,
        clock=clock,
        engine=engine,
        kind=PROCESS_KIND,
        owner_id=chatbot.owner_id,
        subject=job_services.Subject("document", str(document.id)),
        payload={"document_id": str(document.id)},
    )
    document.job_id = job.id
    uow.flush()
    return document, job


def _count_upload(*, uow: UnitOfWork, clock: Clock, owner_id: uuid.UUID, document_id: uuid.UUID, size: int) -> None:
    """Count a new document on ``documents`` and ``storage_bytes`` (locked, checked: over either
    limit raises `usage.QuotaExceeded`)."""
    key = f"document:{document_id}"
    usage.record_usage(uow, owner_id=owner_id, meter="documents", quantity=1, idempotency_key=key, clock=clock)
    usage.record_usage(uow, owner_id=owner_id, meter="storage_bytes", quantity=size, idempotency_key=key, clock=clock)


def get_document(*, uow: UnitOfWork, caller: User, chatbot_id: uuid.UUID, document_id: uuid.UUID) -> Document:
    """The chatbot's document, if the caller may see the chatbot.

    Raises:
        NotFound: no such chatbot of the caller, or no such document of the chatbot.
    """
    chatbot = chatbots.get_chatbot(uow=uow, caller=caller, chatbot_id=chatbot_id)
    document = uow.documents.get(document_id, chatbot_id=chatbot.id)
    if document is None:
        raise NotFound("No document with this id exists in this chatbot.")
    return document


def list_documents(
    *,
    uow: UnitOfWork,
    caller: User,
    chatbot_id: uuid.UUID,
    limit: int,
    cursor: str | None = None,
    status: str | None = None,
) -> DocumentPage:
    """The chatbot's documents, newest first, `limit` per page after `cursor` (a keyset
    cursor: created_at and id), only those in `status` when given (one of `DOCUMENT_STATUSES`).

    Raises:
        NotFound: no such chatbot of the caller.
        InvalidInput: a cursor this list did not make.
    """
    if status is not None and status not in DOCUMENT_STATUSES:
        raise InvalidInput(f"Unknown document status {status!r}.", parameter="status")
    chatbot = chatbots.get_chatbot(uow=uow, caller=caller, chatbot_id=chatbot_id)
    rows = uow.documents.page(
        chatbot_id=chatbot.id,
        limit=limit + 1,
        before=decode_cursor(cursor) if cursor else None,
        status=status,
    )
    items, next_cursor = page(rows, limit, lambda document: (document.created_at, document.id))
    return DocumentPage(items, next_cursor)


def open_content(
    *, uow: UnitOfWork, config: DocumentConfig, caller: User, chatbot_id: uuid.UUID, document_id: uuid.UUID
) -> tuple[Document, BinaryIO]:
    """The document and its stored bytes, open for reading (the caller closes them), when it is
    `ready`.

    Raises:
        NotFound: as `get_document`, or its stored file is missing.
        DocumentNotReady: the document is not `ready` (409): not yet processed, quarantined or
            failed.
    """
    document = get_document(uow=uow, caller=caller, chatbot_id=chatbot_id, document_id=document_id)
    if document.status != "ready":
        raise DocumentNotReady(f"The document is {document.status}; only a ready document's content is served.")
    try:
        return document, config.store.open(document.sha256)
    except FileNotFoundError as error:
        raise NotFound("The document's file is no longer stored.") from error


def release_files(*, unit_of_work: Callable[[], UnitOfWork], store: FileStore, keys: Sequence[str]) -> int:
    """Delete the stored files `keys` that no document names any more (after the rows naming
    them were deleted and committed); returns how many were deleted. Content addressing shares
    a file between documents with the same bytes, so a file still named is kept."""
    deleted = 0
    for key in dict.fromkeys(keys):
        with unit_of_work() as uow:
            in_use = uow.documents.key_in_use(key)
        if not in_use and store.delete(key):
            deleted += 1
    return deleted


def delete_document(
    *,
    uow: UnitOfWork,
    clock: Clock,
    config: DocumentConfig,
    caller: User,
    chatbot_id: uuid.UUID,
    document_id: uuid.UUID,
) -> None:
    """Delete the document's passages and its row (giving back its ``documents`` and
    ``storage_bytes`` usage), commit, then delete its stored file unless
    another document names the same bytes (content addressing shares one file). The file goes
    only after the commit: a rolled-back deletion never leaves a row without its file.

    Raises:
        NotFound: as `get_document`.
    """
    document = get_document(uow=uow, caller=caller, chatbot_id=chatbot_id, document_id=document_id)
    knowledge.remove_source(uow=uow, chatbot_id=document.chatbot_id, source_type=SOURCE_TYPE, source_id=document.id)
    key = document.sha256
    chatbots.release_document_usage(
        uow=uow, clock=clock, owner_id=document.owner_id, document_id=document.id, size=document.size_bytes
    )
    uow.documents.delete(document)
    uow.commit()
    if not uow.documents.key_in_use(key):
        config.store.delete(key)


def purge_chatbot_documents(*, uow: UnitOfWork, chatbot_id: uuid.UUID) -> list[str]:
    """Delete every document row of a chatbot whose deletion was asked for (its passages go with
    the chatbot's index, `chatbots.purge_chatbot`); returns their file keys, for `release_files`
    after the commit. A chatbot not marked for deletion is left alone (no keys)."""
    chatbot = uow.chatbots.get_for_deletion(chatbot_id)
    if chatbot is None or chatbot.deleting_since is None:
        return []
    keys = []
    for document in uow.documents.of_chatbot(chatbot_id):
        keys.append(document.sha256)
        uow.documents.delete(document)
    return keys


def exported_documents(*, uow: UnitOfWork, owner_id: uuid.UUID) -> list[Document]:
    """Every document of the owner's chatbots (metadata; their data export's section)."""
    return uow.documents.of_owner(owner_id)


# --- processing ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcessReport:
    """What a processing run did: the document's id and its status afterwards (None when the
    document or its chatbot is gone), and its verdict and counts."""

    document_id: uuid.UUID
    status: str | None
    scan_verdict: str | None = None
    pages: int | None = None
    words: int | None = None
    passages: int | None = None

    def as_result(self) -> dict[str, Any]:
        """The job's `result`."""
        return {
            "document_id": str(self.document_id),
            "status": self.status,
            "scan_verdict": self.scan_verdict,
            "pages": self.pages,
            "words": self.words,
            "passages": self.passages,
        }


def _report(document: Document) -> ProcessReport:
    return ProcessReport(
        document.id, document.status, document.scan_verdict, document.pages, document.words, document.passages
    )


def _problem(error: DomainError) -> dict[str, Any]:
    return job_services.problem_object(error.problem, error.detail)


def _fail(unit_of_work: Callable[[], UnitOfWork], clock: Clock, document_id: uuid.UUID, error: DomainError) -> None:
    """Mark the document `failed` with the error's problem, in a unit of work of its own."""
    with unit_of_work() as uow:
        document = uow.documents.get_for_processing(document_id)
        if document is not None:
            document.status = "failed"
            document.error = _problem(error)
            document.updated_at = clock.now()


def process_document(
    *,
    unit_of_work: Callable[[], UnitOfWork],
    clock: Clock,
    config: DocumentConfig,
    document_id: uuid.UUID,
    progress: Callable[[int, str], None] | None = None,
) -> ProcessReport:
    """Scan, read and index a document (the `documents.process` job); see the module's rules.

    Each step commits its status (`scanning`, `extracting`, then `ready`, `quarantined` or
    `failed`) so a client polling the document sees it move. A document already finished, gone,
    or whose chatbot is being deleted is left as it is.

    Args:
        unit_of_work: makes each step's unit of work.
        progress: called with (step 1 to 3, what) before each step (the job's checkpoint: it renews
            the lease and stops a cancelled job).

    Raises:
        ScannerUnavailable: clamd could not be reached (the job engine retries).
        DocumentUnreadable: the text cannot be extracted, or the stored file is missing (a
            deletion of another document with the same bytes raced this one's upload); the
            document is `failed` with this problem first (committed).
    """
    report = progress or (lambda _step, _what: None)
    with unit_of_work() as uow:
        document = uow.documents.get_for_processing(document_id)
        if document is None:
            return ProcessReport(document_id, None)
        if document.status not in IN_PROGRESS_STATUSES:
            return _report(document)
        document.status = "scanning"
        document.updated_at = clock.now()
        key, kind, encoding = document.sha256, DocumentKind(document.kind), document.text_encoding

    report(1, "scanning")
    try:
        with config.store.open(key) as stream:
            result: ScanResult = scan_document(stream=stream, scanner=config.scanner, limits=config.scan_limits)
    except FileNotFoundError as missing:
        error = DocumentUnreadable("The document's file is no longer stored; upload it again.")
        _fail(unit_of_work, clock, document_id, error)
        raise error from missing
    blocked = is_blocked(result, block_unscannable=config.block_unscannable)
    with unit_of_work() as uow:
        document = uow.documents.get_for_processing(document_id)
        if document is None:
            return ProcessReport(document_id, None)
        document.scan_verdict = result.verdict.value
        document.scan_engine = result.engine[:40]
        document.scan_signature = result.signature[:200] if result.signature else None
        document.scan_detail = result.detail[:500] if result.detail else None
        document.status = "quarantined" if blocked else "extracting"
        document.updated_at = clock.now()
        if blocked:
            return _report(document)

    report(2, "extracting")
    try:
        with config.store.open(key) as stream:
            extracted = extract_text(stream, kind=kind, encoding=encoding)
        passages = chunk_passages(extracted.blocks)
        if not passages:
            raise DocumentUnreadable("The document holds no text to index.")
    except DocumentUnreadable as error:
        _fail(unit_of_work, clock, document_id, error)
        raise

    report(3, "indexing")
    with unit_of_work() as uow:
        document = uow.documents.get_for_processing(document_id)
        if document is None:
            return ProcessReport(document_id, None)
        indexed = knowledge.index_source(
            uow=uow,
            clock=clock,
            chatbot_id=document.chatbot_id,
            source=knowledge.KnowledgeSource(SOURCE_TYPE, document.id, title=document.title),
            passages=passages,
        )
        document.status = "ready"
        document.pages = extracted.pages
        document.words = extracted.words
        document.passages = indexed
        document.error = None
        document.updated_at = clock.now()
        return _report(document)
