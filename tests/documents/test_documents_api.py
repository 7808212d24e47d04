"""The documents operations through the ASGI app (every answer checked against the contract by
the `client` fixture): upload (202 with the document and its job), the `documents.process` job
run as a worker would, search finding the passages with their page and heading, quarantine,
the refusals that store nothing (415, 422, 413), a failed extraction, content only when ready,
another user's chatbot as 404, deletion and the chatbot's knowledge summary."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator

import pytest

from adapters.clamd import ClamdOutcome, ClamdScanner, FakeVirusScanner
from adapters.file_storage import MemoryFileStore
from services import documents as document_services
from services import jobs as job_services
from tests.documents.conftest import CLAMD_MARKER, CLAMD_MARKER_SIGNATURE
from tests.documents.samples import EICAR, build_docx, build_pdf, vba_project, with_member, zip_bomb
from tests.helpers import NOT_FOUND, VALIDATION, assert_problem, run_job

CHATBOTS = "/api/v1/chatbots"
PDF_MEDIA_TYPE = "application/pdf"
DOCX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
ELF = b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 8 + b"\x02\x00\x3e\x00\x01\x00\x00\x00" + bytes(range(256)) * 4


@pytest.fixture
def store(app) -> Iterator[MemoryFileStore]:
    """The app's document store swapped for one in memory (what was stored is visible)."""
    context = app.app.extensions["charter"].jobs.context
    original = context["documents"]
    memory = MemoryFileStore()
    context["documents"] = dataclasses.replace(original, store=memory)
    yield memory
    context["documents"] = original


@pytest.fixture
def chatbot(client, account) -> str:
    response = client.post(CHATBOTS, json={"name": "Docs bot"}, headers=account.headers)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def upload(client, account, chatbot_id, name, data, media_type="application/octet-stream", **fields):
    return client.post(
        f"{CHATBOTS}/{chatbot_id}/documents",
        files={"file": (name, data, media_type)},
        data=fields,
        headers=account.headers,
    )


def uploaded(client, account, chatbot_id, name, data, media_type="application/octet-stream", **fields) -> dict:
    response = upload(client, account, chatbot_id, name, data, media_type, **fields)
    assert response.status_code == 202, response.text
    return response.json()


def document_of(client, account, chatbot_id, document_id) -> dict:
    response = client.get(f"{CHATBOTS}/{chatbot_id}/documents/{document_id}", headers=account.headers)
    assert response.status_code == 200, response.text
    return response.json()


def search(client, account, chatbot_id, q) -> list[dict]:
    response = client.get(f"{CHATBOTS}/{chatbot_id}/search", params={"q": q}, headers=account.headers)
    assert response.status_code == 200, response.text
    return response.json()["items"]


def handbook() -> bytes:
    """A two-page PDF with an outline, different bytes each time (stored files are shared by
    every document with the same bytes, across the session's tests)."""
    return build_pdf(
        [[f"Welcome to the Acme handbook, edition {uuid.uuid4()}."], ["Refunds are paid within fourteen days."]],
        outline=[("Introduction", 0), ("Refund policy", 1)],
    )


HANDBOOK = handbook()


def test_a_pdf_is_accepted_processed_and_found_by_search_with_its_page_and_heading(
    app, client, account, chatbot, store
):
    response = upload(client, account, chatbot, "handbook.pdf", HANDBOOK, PDF_MEDIA_TYPE, title="Acme handbook")
    assert response.status_code == 202, response.text
    body = response.json()
    document, job = body["document"], body["job"]
    assert response.headers["Location"] == f"/api/v1/jobs/{job['id']}"
    assert response.headers["Content-Location"] == f"{CHATBOTS}/{chatbot}/documents/{document['id']}"
    assert (document["status"], document["kind"], document["media_type"]) == ("pending", "pdf", PDF_MEDIA_TYPE)
    assert (document["title"], document["filename"]) == ("Acme handbook", "handbook.pdf")
    assert document["size_bytes"] == len(HANDBOOK)
    assert (job["kind"], job["subject"]) == ("documents.process", {"type": "document", "id": document["id"]})
    assert document["job_id"] == job["id"] and store.exists(document["sha256"])
    assert search(client, account, chatbot, "refunds") == []

    report = run_job(app, job["id"])
    assert report.outcome is job_services.Outcome.SUCCEEDED, report

    ready = document_of(client, account, chatbot, document["id"])
    assert ready["status"] == "ready"
    assert ready["scan"] == {"verdict": "clean", "engine": "charter", "signature": None, "detail": None}
    assert (ready["pages"], ready["passages"]) == (2, 2)
    assert ready["words"] > 0 and ready["error"] is None
    [hit] = search(client, account, chatbot, "refunds")
    assert hit["source"] == {
        "type": "document",
        "id": document["id"],
        "url": None,
        "title": "Acme handbook",
        "page": 2,
        "heading": "Refund policy",
    }
    summary = client.get(f"{CHATBOTS}/{chatbot}", headers=account.headers).json()["knowledge"]
    assert summary == {"sources": 1, "pages": 0, "documents": 1, "passages": 2, "status": "ready"}
    job_after = client.get(f"/api/v1/jobs/{job['id']}", headers=account.headers).json()
    assert job_after["status"] == "succeeded"
    assert job_after["result"]["status"] == "ready"


def test_a_docx_is_found_by_its_heading_and_its_content_is_served_as_an_attachment(
    app, client, account, chatbot, store
):
    data = build_docx([("Shipping", ["Parcels leave our warehouse every weekday morning."])])
    document = uploaded(client, account, chatbot, "Versand übersicht.docx", data, DOCX_MEDIA_TYPE)["document"]
    assert document["title"] == "Versand übersicht.docx"
    run_job(app, document["job_id"])
    [hit] = search(client, account, chatbot, "warehouse weekday")
    assert (hit["source"]["heading"], hit["source"]["page"]) == ("Shipping", None)

    content = client.get(f"{CHATBOTS}/{chatbot}/documents/{document['id']}/content", headers=account.headers)
    assert content.status_code == 200
    assert content.content == data
    assert content.headers["Content-Type"] == DOCX_MEDIA_TYPE
    assert content.headers["X-Content-Type-Options"] == "nosniff"
    assert content.headers["Content-Disposition"] == (
        "attachment; filename=\"Versand _bersicht.docx\"; filename*=UTF-8''Versand%20%C3%BCbersicht.docx"
    )


def test_a_text_document_is_served_with_its_charset(app, client, account, chatbot, store):
    data = "Café opening hours: nine to five, every day of the week.\n\n42\n".encode("latin-1")
    document = uploaded(client, account, chatbot, "hours.txt", data, "text/plain")["document"]
    run_job(app, document["job_id"])
    content = client.get(f"{CHATBOTS}/{chatbot}/documents/{document['id']}/content", headers=account.headers)
    assert content.status_code == 200, content.text
    assert content.content == data
    assert content.headers["Content-Type"] == "text/plain; charset=iso8859-1"
    assert content.headers["Content-Disposition"] == 'attachment; filename="hours.txt"'


def test_the_eicar_file_is_quarantined_never_indexed_nor_served(app, client, account, chatbot, store):
    document = uploaded(client, account, chatbot, "eicar.txt", EICAR, "text/plain")["document"]
    report = run_job(app, document["job_id"])
    assert report.outcome is job_services.Outcome.SUCCEEDED

    quarantined = document_of(client, account, chatbot, document["id"])
    assert quarantined["status"] == "quarantined"
    assert quarantined["scan"]["verdict"] == "infected"
    assert quarantined["scan"]["signature"] == "Eicar-Test-Signature"
    assert (quarantined["pages"], quarantined["words"], quarantined["passages"]) == (None, None, None)
    assert search(client, account, chatbot, "EICAR") == []
    content = client.get(f"{CHATBOTS}/{chatbot}/documents/{document['id']}/content", headers=account.headers)
    assert_problem(content, 409, "/problems/document-not-ready")
    summary = client.get(f"{CHATBOTS}/{chatbot}", headers=account.headers).json()["knowledge"]
    assert (summary["status"], summary["sources"], summary["documents"]) == ("error", 1, 0)


def test_a_pending_document_is_not_served_and_makes_the_knowledge_indexing(client, account, chatbot, store):
    document = uploaded(client, account, chatbot, "notes.md", b"# Notes\n\nSome notes.\n", "text/markdown")["document"]
    assert document["kind"] == "markdown"
    content = client.get(f"{CHATBOTS}/{chatbot}/documents/{document['id']}/content", headers=account.headers)
    assert_problem(content, 409, "/problems/document-not-ready")
    summary = client.get(f"{CHATBOTS}/{chatbot}", headers=account.headers).json()["knowledge"]
    assert summary["status"] == "indexing"


def test_a_renamed_executable_is_415_naming_both_types_and_nothing_is_stored(client, account, chatbot, store):
    response = upload(client, account, chatbot, "report.pdf", ELF, PDF_MEDIA_TYPE)
    assert_problem(response, 415, "/problems/document-type-mismatch")
    assert "application/x-" in response.json()["detail"] and ".pdf" in response.json()["detail"]
    assert store.files == {}
    listed = client.get(f"{CHATBOTS}/{chatbot}/documents", headers=account.headers).json()
    assert listed["items"] == []


def test_an_executable_without_a_claim_is_an_unsupported_type(client, account, chatbot, store):
    response = upload(client, account, chatbot, "program", ELF)
    assert_problem(response, 415, "/problems/unsupported-document-type")
    assert store.files == {}


def test_an_empty_file_is_422_and_nothing_is_stored(client, account, chatbot, store):
    response = upload(client, account, chatbot, "empty.txt", b"", "text/plain")
    assert_problem(response, 422, "/problems/empty-document")
    assert store.files == {}


def test_a_file_over_the_limit_is_413_and_nothing_is_stored(app, client, account, chatbot, store):
    context = app.app.extensions["charter"].jobs.context
    context["documents"] = dataclasses.replace(context["documents"], max_bytes=2048)
    response = upload(client, account, chatbot, "big.txt", b"word " * 500, "text/plain")
    assert_problem(response, 413, "/problems/payload-too-large")
    assert store.files == {}
    assert upload(client, account, chatbot, "small.txt", b"word " * 400, "text/plain").status_code == 202


def test_a_body_over_the_upload_route_limit_is_413_at_the_edge(app, client, account, chatbot, store):
    settings = app.app.extensions["charter"].settings
    data = b"a" * (settings.document_max_bytes + 64 * 1024 + 1)
    response = upload(client, account, chatbot, "huge.txt", data, "text/plain")
    assert_problem(response, 413, "/problems/payload-too-large")
    assert store.files == {}


def test_a_body_over_max_body_bytes_but_under_the_document_limit_is_accepted(app, client, account, chatbot, store):
    settings = app.app.extensions["charter"].settings
    data = b"lorem ipsum " * (settings.max_body_bytes // 12 + 10)
    assert settings.max_body_bytes < len(data) < settings.document_max_bytes
    assert upload(client, account, chatbot, "long.txt", data, "text/plain").status_code == 202


def test_a_truncated_pdf_fails_with_its_problem_never_a_500(app, client, account, chatbot, store):
    truncated = HANDBOOK[: len(HANDBOOK) // 3]
    document = uploaded(client, account, chatbot, "broken.pdf", truncated, PDF_MEDIA_TYPE)["document"]
    report = run_job(app, document["job_id"])
    assert report.outcome is job_services.Outcome.FAILED

    failed = document_of(client, account, chatbot, document["id"])
    assert failed["status"] == "failed"
    assert failed["error"]["type"] == "/problems/document-unreadable"
    assert failed["error"]["status"] == 422
    job = client.get(f"/api/v1/jobs/{document['job_id']}", headers=account.headers).json()
    assert (job["status"], job["error"]["type"]) == ("failed", "/problems/document-unreadable")
    assert job["attempts"] == 1  # not retried: the file will not change
    content = client.get(f"{CHATBOTS}/{chatbot}/documents/{document['id']}/content", headers=account.headers)
    assert_problem(content, 409, "/problems/document-not-ready")


def test_processing_again_changes_nothing(app, client, account, chatbot, store):
    document = uploaded(client, account, chatbot, "handbook.pdf", HANDBOOK, PDF_MEDIA_TYPE)["document"]
    run_job(app, document["job_id"])
    context = app.app.extensions["charter"]
    from persistence.unit_of_work import UnitOfWork

    report = document_services.process_document(
        unit_of_work=lambda: UnitOfWork(context.session_factory),
        clock=context.clock,
        config=document_services.config_of(context.jobs),
        document_id=uuid.UUID(document["id"]),
    )
    assert report.status == "ready"
    assert len(search(client, account, chatbot, "refunds")) == 1


def test_another_users_chatbot_documents_are_404(app, client, account, other_account, chatbot, store):
    document = uploaded(client, account, chatbot, "handbook.pdf", HANDBOOK, PDF_MEDIA_TYPE)["document"]
    base = f"{CHATBOTS}/{chatbot}/documents"
    headers = other_account.headers
    assert_problem(upload(client, other_account, chatbot, "x.txt", b"hello", "text/plain"), 404, NOT_FOUND)
    assert_problem(client.get(base, headers=headers), 404, NOT_FOUND)
    assert_problem(client.get(f"{base}/{document['id']}", headers=headers), 404, NOT_FOUND)
    assert_problem(client.get(f"{base}/{document['id']}/content", headers=headers), 404, NOT_FOUND)
    assert_problem(client.delete(f"{base}/{document['id']}", headers=headers), 404, NOT_FOUND)
    assert document_of(client, account, chatbot, document["id"])["id"] == document["id"]


def test_an_unknown_document_is_404(client, account, chatbot, store):
    response = client.get(f"{CHATBOTS}/{chatbot}/documents/{uuid.uuid4()}", headers=account.headers)
    assert_problem(response, 404, NOT_FOUND)


def test_deleting_removes_passages_row_and_the_file_only_when_unshared(app, client, account, chatbot, store):
    data = handbook()
    first = uploaded(client, account, chatbot, "handbook.pdf", data, PDF_MEDIA_TYPE)["document"]
    second = uploaded(client, account, chatbot, "copy.pdf", data, PDF_MEDIA_TYPE)["document"]
    assert first["sha256"] == second["sha256"]
    run_job(app, first["job_id"])
    run_job(app, second["job_id"])
    assert len(search(client, account, chatbot, "refunds")) == 2

    response = client.delete(f"{CHATBOTS}/{chatbot}/documents/{first['id']}", headers=account.headers)
    assert response.status_code == 204
    assert_problem(client.get(f"{CHATBOTS}/{chatbot}/documents/{first['id']}", headers=account.headers), 404, NOT_FOUND)
    [hit] = search(client, account, chatbot, "refunds")
    assert hit["source"]["id"] == second["id"]
    assert store.exists(first["sha256"])  # the other document still names it

    assert client.delete(f"{CHATBOTS}/{chatbot}/documents/{second['id']}", headers=account.headers).status_code == 204
    assert search(client, account, chatbot, "refunds") == []
    assert not store.exists(first["sha256"])
    summary = client.get(f"{CHATBOTS}/{chatbot}", headers=account.headers).json()["knowledge"]
    assert summary == {"sources": 0, "pages": 0, "documents": 0, "passages": 0, "status": "empty"}


def test_the_list_is_paginated_newest_first_and_filters_by_status(app, client, account, chatbot, store):
    made = [
        uploaded(client, account, chatbot, f"note-{i}.txt", f"Note number {i}.".encode(), "text/plain")["document"]
        for i in range(3)
    ]
    run_job(app, made[0]["job_id"])
    base = f"{CHATBOTS}/{chatbot}/documents"
    first = client.get(base, params={"limit": 2}, headers=account.headers).json()
    assert [item["id"] for item in first["items"]] == [made[2]["id"], made[1]["id"]]
    second = client.get(base, params={"limit": 2, "cursor": first["next_cursor"]}, headers=account.headers).json()
    assert [item["id"] for item in second["items"]] == [made[0]["id"]] and second["next_cursor"] is None
    ready = client.get(base, params={"status": "ready"}, headers=account.headers).json()
    assert [item["id"] for item in ready["items"]] == [made[0]["id"]]
    assert_problem(client.get(base, params={"status": "lost"}, headers=account.headers), 400, VALIDATION)


def test_an_upload_without_a_file_part_is_400_and_a_long_title_too(client, account, chatbot, store):
    response = client.post(
        f"{CHATBOTS}/{chatbot}/documents", files={"title": (None, "Only a title")}, headers=account.headers
    )
    assert_problem(response, 400, VALIDATION)
    response = upload(client, account, chatbot, "a.txt", b"hello", "text/plain", title="x" * 201)
    assert_problem(response, 400, VALIDATION)
    response = upload(client, account, chatbot, "a.txt", b"hello", "text/plain", title="line\nbreak")
    assert_problem(response, 400, VALIDATION)
    assert store.files == {}


def test_deleting_the_chatbot_deletes_its_documents_and_files(app, client, account, chatbot, store, database):
    document = uploaded(client, account, chatbot, "handbook.pdf", handbook(), PDF_MEDIA_TYPE)["document"]
    run_job(app, document["job_id"])
    deletion = client.delete(f"{CHATBOTS}/{chatbot}", headers=account.headers)
    assert deletion.status_code == 202
    assert run_job(app, deletion.json()["id"]).outcome is job_services.Outcome.SUCCEEDED
    from persistence.documents.models import Document

    assert database.read(lambda db: db.get(Document, uuid.UUID(document["id"]))) is None
    assert not store.exists(document["sha256"])


def test_the_data_export_lists_the_documents(client, account, chatbot, store):
    document = uploaded(client, account, chatbot, "handbook.pdf", HANDBOOK, PDF_MEDIA_TYPE)["document"]
    export = client.get("/api/v1/users/me/export", headers=account.headers)
    assert export.status_code == 200, export.text
    assert [item["id"] for item in export.json()["documents"]] == [document["id"]]


# --- the scanner and the policy, with a fake clamd --------------------------------------------


def configure(app, **changes) -> None:
    """Change the documents configuration the app's job engine carries (the `store` fixture
    puts the original back)."""
    context = app.app.extensions["charter"].jobs.context
    context["documents"] = dataclasses.replace(context["documents"], **changes)


def process_again(app, document_id: str) -> document_services.ProcessReport:
    context = app.app.extensions["charter"]
    from persistence.unit_of_work import UnitOfWork

    return document_services.process_document(
        unit_of_work=lambda: UnitOfWork(context.session_factory),
        clock=context.clock,
        config=document_services.config_of(context.jobs),
        document_id=uuid.UUID(document_id),
    )


def test_an_unreachable_clamd_leaves_the_document_scanning_and_the_job_is_retried(app, client, account, chatbot, store):
    configure(app, scanner=FakeVirusScanner(error=ConnectionRefusedError("refused")))
    document = uploaded(client, account, chatbot, "handbook.pdf", handbook(), PDF_MEDIA_TYPE)["document"]
    report = run_job(app, document["job_id"])
    assert report.outcome is job_services.Outcome.RETRYING
    assert document_of(client, account, chatbot, document["id"])["status"] == "scanning"
    job = client.get(f"/api/v1/jobs/{document['job_id']}", headers=account.headers).json()
    assert (job["status"], job["error"]["type"]) == ("queued", "/problems/job-failed")

    clamd = FakeVirusScanner()
    configure(app, scanner=clamd)
    assert process_again(app, document["id"]).status == "ready"  # the next attempt, after a dead worker too
    ready = document_of(client, account, chatbot, document["id"])
    assert ready["scan"]["engine"] == "charter+clamav" and len(clamd.scanned) == 1
    assert len(search(client, account, chatbot, "refunds")) == 1


def test_clamd_finding_a_signature_quarantines_the_document(app, client, account, chatbot, store):
    configure(app, scanner=FakeVirusScanner(ClamdOutcome("infected", signature="Win.Test.Marker")))
    document = uploaded(client, account, chatbot, "handbook.pdf", handbook(), PDF_MEDIA_TYPE)["document"]
    run_job(app, document["job_id"])
    quarantined = document_of(client, account, chatbot, document["id"])
    assert quarantined["status"] == "quarantined"
    assert quarantined["scan"] == {
        "verdict": "infected",
        "engine": "clamav",
        "signature": "Win.Test.Marker",
        "detail": None,
    }
    assert search(client, account, chatbot, "refunds") == []


@pytest.mark.parametrize(("block", "status"), [(True, "quarantined"), (False, "ready")])
def test_an_unscannable_document_follows_the_policy(app, client, account, chatbot, store, block, status):
    configure(
        app, scanner=FakeVirusScanner(ClamdOutcome("unscannable", detail="clamd: size limit")), block_unscannable=block
    )
    document = uploaded(client, account, chatbot, "handbook.pdf", handbook(), PDF_MEDIA_TYPE)["document"]
    run_job(app, document["job_id"])
    processed = document_of(client, account, chatbot, document["id"])
    assert (processed["status"], processed["scan"]["verdict"]) == (status, "unscannable")
    assert processed["scan"]["detail"] == "clamd: size limit"
    assert len(search(client, account, chatbot, "refunds")) == (0 if block else 1)


def test_a_document_deleted_before_its_job_runs_is_not_indexed(app, client, account, chatbot, store):
    document = uploaded(client, account, chatbot, "handbook.pdf", handbook(), PDF_MEDIA_TYPE)["document"]
    assert client.delete(f"{CHATBOTS}/{chatbot}/documents/{document['id']}", headers=account.headers).status_code == 204
    report = run_job(app, document["job_id"])
    assert report.outcome is job_services.Outcome.SUCCEEDED
    job = client.get(f"/api/v1/jobs/{document['job_id']}", headers=account.headers).json()
    assert job["result"]["status"] is None
    assert search(client, account, chatbot, "refunds") == []


def _pdf_with_javascript() -> bytes:
    action = b"<< /S /JavaScript /JS (app.alert\\(1\\)) >>"
    return build_pdf([["Open me"]], catalog_extra=b"/OpenAction 30 0 R", extra_objects={30: action})


@pytest.mark.parametrize(
    ("name", "make", "media_type", "signature"),
    [
        ("script.pdf", _pdf_with_javascript, PDF_MEDIA_TYPE, "Charter.PDF.JavaScript"),
        (
            "macro.docx",
            lambda: with_member(build_docx([("Heading", ["Paragraph."])]), "word/vbaProject.bin", vba_project()),
            DOCX_MEDIA_TYPE,
            "Charter.Office.Macro",
        ),
    ],
)
def test_active_content_is_quarantined_by_the_built_in_scan(
    app, client, account, chatbot, store, name, make, media_type, signature
):
    document = uploaded(client, account, chatbot, name, make(), media_type)["document"]
    run_job(app, document["job_id"])
    quarantined = document_of(client, account, chatbot, document["id"])
    assert quarantined["status"] == "quarantined"
    assert (quarantined["scan"]["verdict"], quarantined["scan"]["signature"]) == ("infected", signature)


def test_a_zip_bomb_is_refused_at_the_upload_as_no_accepted_type(client, account, chatbot, store):
    response = upload(client, account, chatbot, "bomb.zip", zip_bomb(8 * 1024 * 1024))
    assert_problem(response, 415, "/problems/unsupported-document-type")
    assert store.files == {}


def test_a_real_clamd_quarantines_what_only_its_database_knows(app, client, account, chatbot, store, clamd):
    configure(app, scanner=ClamdScanner(clamd.unix_url, timeout_seconds=10))
    data = b"Shipping notes for the warehouse team.\n\n" + CLAMD_MARKER + b"\n"
    document = uploaded(client, account, chatbot, "notes.txt", data, "text/plain")["document"]
    run_job(app, document["job_id"])
    quarantined = document_of(client, account, chatbot, document["id"])
    assert quarantined["status"] == "quarantined"
    assert quarantined["scan"]["engine"] == "clamav"
    assert quarantined["scan"]["signature"].startswith(CLAMD_MARKER_SIGNATURE)

    clean = uploaded(client, account, chatbot, "more.txt", b"Parcels leave every weekday.", "text/plain")["document"]
    run_job(app, clean["job_id"])
    assert document_of(client, account, chatbot, clean["id"])["scan"]["engine"] == "charter+clamav"


def test_a_document_whose_file_is_missing_fails_with_a_problem(app, client, account, chatbot, store):
    document = uploaded(client, account, chatbot, "handbook.pdf", handbook(), PDF_MEDIA_TYPE)["document"]
    store.delete(document["sha256"])
    assert run_job(app, document["job_id"]).outcome is job_services.Outcome.FAILED
    failed = document_of(client, account, chatbot, document["id"])
    assert (failed["status"], failed["error"]["type"]) == ("failed", "/problems/document-unreadable")
