"""Operations of the `documents` tag (issue 15): files uploaded to a chatbot at
``/api/v1/chatbots/{chatbot_id}/documents…``, scanned, read and indexed by a job. Owners see
their own chatbots' documents (another user's chatbot is 404); administrators see every one."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import flask

from handlers.jobs import job_representation
from handlers.responses import json_answer, no_content, timestamp
from server.integration.context import clock, job_engine, principal, unit_of_work
from services import documents
from services.errors import InvalidInput

if TYPE_CHECKING:
    from persistence.documents.models import Document


def document_representation(document: Document) -> dict[str, Any]:
    """The contract's `Document` schema."""
    return {
        "id": str(document.id),
        "chatbot_id": str(document.chatbot_id),
        "owner_id": str(document.owner_id),
        "title": document.title,
        "filename": document.filename,
        "media_type": document.media_type,
        "kind": document.kind,
        "size_bytes": document.size_bytes,
        "sha256": document.sha256,
        "status": document.status,
        "scan": None
        if document.scan_verdict is None
        else {
            "verdict": document.scan_verdict,
            "engine": document.scan_engine,
            "signature": document.scan_signature,
            "detail": document.scan_detail,
        },
        "pages": document.pages,
        "words": document.words,
        "passages": document.passages,
        "error": document.error,
        "job_id": str(document.job_id) if document.job_id else None,
        "created_at": timestamp(document.created_at),
        "updated_at": timestamp(document.updated_at),
    }


def _export_documents(user_id: uuid.UUID) -> list[dict[str, Any]]:
    return [
        document_representation(document)
        for document in documents.exported_documents(uow=unit_of_work(), owner_id=user_id)
    ]


EXPORT_SECTIONS = {"documents": _export_documents}
"""The metadata of the caller's documents in their data export (`handlers.data_export`); the
files themselves are downloaded one by one (`GET …/content`)."""


def _config() -> documents.DocumentConfig:
    return documents.config_of(job_engine())


def _path(document: Document) -> str:
    return f"/api/v1/chatbots/{document.chatbot_id}/documents/{document.id}"


def content_disposition(filename: str) -> str:
    """``attachment`` with the file's name (RFC 6266 section 4.3): a quoted ASCII ``filename``
    (other characters replaced by ``_``, quotes and backslashes dropped) and, when the name is
    not plain ASCII, ``filename*`` in UTF-8 (RFC 8187) for the clients that read it."""
    fallback = "".join(c if 0x20 <= ord(c) < 0x7F and c not in '"\\' else "_" for c in filename) or "document"
    value = f'attachment; filename="{fallback}"'
    if fallback != filename:
        value += f"; filename*=UTF-8''{quote(filename, safe='')}"
    return value


def upload_document(chatbot_id: str, body: dict[str, Any] | None = None, file: Any = None) -> tuple:
    """POST /api/v1/chatbots/{chatbot_id}/documents — 202 with the document and its processing
    job; `Location` names the job (as every 202 does), `Content-Location` the document."""
    if file is None or not hasattr(file, "stream"):
        raise InvalidInput("Send the document as the multipart/form-data part `file`.", pointer="/file")
    title = (body or {}).get("title")
    document, job = documents.upload_document(
        uow=unit_of_work(),
        clock=clock(),
        engine=job_engine(),
        config=_config(),
        caller=principal(),
        chatbot_id=uuid.UUID(chatbot_id),
        stream=file.stream,
        filename=file.filename,
        declared_type=file.mimetype or None,
        title=title if isinstance(title, str) else None,
    )
    return json_answer(
        {"document": document_representation(document), "job": job_representation(job)},
        202,
        {"Location": f"/api/v1/jobs/{job.id}", "Content-Location": _path(document)},
    )


def list_documents(chatbot_id: str, limit: int = 20, cursor: str | None = None, status: str | None = None) -> tuple:
    """GET /api/v1/chatbots/{chatbot_id}/documents — newest first, `status` filters."""
    result = documents.list_documents(
        uow=unit_of_work(),
        caller=principal(),
        chatbot_id=uuid.UUID(chatbot_id),
        limit=limit,
        cursor=cursor,
        status=status,
    )
    return json_answer(
        {"items": [document_representation(item) for item in result.items], "next_cursor": result.next_cursor}
    )


def get_document(chatbot_id: str, document_id: str) -> tuple:
    """GET /api/v1/chatbots/{chatbot_id}/documents/{document_id}."""
    document = documents.get_document(
        uow=unit_of_work(), caller=principal(), chatbot_id=uuid.UUID(chatbot_id), document_id=uuid.UUID(document_id)
    )
    return json_answer(document_representation(document))


def delete_document(chatbot_id: str, document_id: str) -> tuple:
    """DELETE /api/v1/chatbots/{chatbot_id}/documents/{document_id} — 204; its passages, its row,
    and its file when no other document has the same bytes."""
    documents.delete_document(
        uow=unit_of_work(),
        clock=clock(),
        config=_config(),
        caller=principal(),
        chatbot_id=uuid.UUID(chatbot_id),
        document_id=uuid.UUID(document_id),
    )
    return no_content()


def get_document_content(chatbot_id: str, document_id: str) -> flask.Response:
    """GET /api/v1/chatbots/{chatbot_id}/documents/{document_id}/content — the original bytes
    of a `ready` document, as an attachment (409 otherwise)."""
    document, stream = documents.open_content(
        uow=unit_of_work(),
        config=_config(),
        caller=principal(),
        chatbot_id=uuid.UUID(chatbot_id),
        document_id=uuid.UUID(document_id),
    )
    with stream:
        data = stream.read()
    media_type = document.media_type
    if document.text_encoding and media_type.startswith("text/"):
        media_type += f"; charset={document.text_encoding}"
    return flask.Response(
        data,
        status=200,
        headers={
            "Content-Type": media_type,
            "Content-Disposition": content_disposition(document.filename),
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "private, no-store",
        },
    )
