"""Stored files that nothing names do not stay forever (issue 15, documents): the hourly
maintenance job deletes stored files older than the grace period (1 hour) that no document
names — a file whose upload transaction failed, the file of a document removed by a cascade —
and temporary files of uploads whose writer died; a file some document names, and a young
one, are kept. The app's store is swapped for a folder of the test's own, so counts are exact."""

from __future__ import annotations

import dataclasses
import io
import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import delete

from adapters.file_storage import LocalFileStore
from persistence.chatbots.models import Chatbot
from persistence.unit_of_work import UnitOfWork
from services import documents as document_services
from services import jobs as job_services
from services.clock import FrozenClock
from services.maintenance import FILE_GRACE_SECONDS, sweep_unreferenced_files
from tests.documents.test_documents_api import CHATBOTS, run_job, uploaded

HOUR = 3600.0


def text() -> bytes:
    """Text no other test stored (the session's database is shared, and a document of another
    test naming the same bytes would name the same file)."""
    return f"Refunds are paid within fourteen days of the return reaching warehouse {uuid.uuid4()}.\n".encode()


@pytest.fixture
def store(app, tmp_path: Path) -> Iterator[LocalFileStore]:
    """The app's document store swapped for a folder of this test's own."""
    context = app.app.extensions["charter"].jobs.context
    original = context["documents"]
    local = LocalFileStore(tmp_path / "documents")
    context["documents"] = dataclasses.replace(original, store=local)
    yield local
    context["documents"] = original


@pytest.fixture
def chatbot(client, account) -> str:
    response = client.post(CHATBOTS, json={"name": "Docs bot"}, headers=account.headers)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def unit_of_work(app):
    factory = app.app.extensions["charter"].session_factory
    return lambda: UnitOfWork(factory)


def aged(path: Path, seconds_ago: float, now: float) -> None:
    os.utime(path, (now - seconds_ago, now - seconds_ago))


def temporary_upload(store: LocalFileStore) -> Path:
    """A half-written upload, as a writer that died leaves it."""
    fd, name = tempfile.mkstemp(dir=store.root / ".incoming", prefix="upload-")
    os.write(fd, b"half of a file")
    os.close(fd)
    return Path(name)


def keys(store: LocalFileStore) -> set[str]:
    return {key for key, _modified in store.entries()}


def test_the_grace_period_is_an_hour():
    assert FILE_GRACE_SECONDS == HOUR


def test_an_old_file_no_document_names_goes_a_named_one_and_a_young_one_stay(app, client, account, chatbot, store):
    named = uploaded(client, account, chatbot, "refunds.txt", text(), "text/plain")["document"]["sha256"]
    orphan = store.put([b"an orphan: " + text()]).key
    young = store.put([b"a young orphan: " + text()]).key
    stale, fresh = temporary_upload(store), temporary_upload(store)
    now = time.time()
    for key in (named, orphan):
        aged(store.path(key), 2 * HOUR, now)
    aged(store.path(young), 10 * 60, now)
    aged(stale, 2 * HOUR, now)
    aged(fresh, 10 * 60, now)
    clock = FrozenClock(datetime.fromtimestamp(now, UTC))

    swept = sweep_unreferenced_files(unit_of_work=unit_of_work(app), clock=clock, store=store)

    assert swept == {"unreferenced_files": 1, "incoming_files": 1}
    assert keys(store) == {named, young}
    assert (stale.exists(), fresh.exists()) == (False, True)
    assert sweep_unreferenced_files(unit_of_work=unit_of_work(app), clock=clock, store=store) == {
        "unreferenced_files": 0,
        "incoming_files": 0,
    }


def test_the_file_of_an_upload_whose_transaction_failed_goes_after_the_grace_period(
    app, client, account, chatbot, store, database
):
    context = app.app.extensions["charter"]
    config = document_services.config_of(context.jobs)
    with pytest.raises(RuntimeError), unit_of_work(app)() as uow:
        document, _job = document_services.upload_document(
            uow=uow,
            clock=context.clock,
            engine=context.jobs,
            config=config,
            caller=database.user(account.id),
            chatbot_id=uuid.UUID(chatbot),
            stream=io.BytesIO(text()),
            filename="refunds.txt",
            declared_type="text/plain",
        )
        raise RuntimeError("the database went away before the commit")
    assert keys(store) == {document.sha256}  # stored, but no row names it
    stored_at = store.modified_at(document.sha256)
    assert stored_at is not None

    within = FrozenClock(datetime.fromtimestamp(stored_at + HOUR - 60, UTC))
    assert sweep_unreferenced_files(unit_of_work=unit_of_work(app), clock=within, store=store) == {
        "unreferenced_files": 0,
        "incoming_files": 0,
    }
    past = FrozenClock(datetime.fromtimestamp(stored_at + HOUR + 60, UTC))
    assert sweep_unreferenced_files(unit_of_work=unit_of_work(app), clock=past, store=store) == {
        "unreferenced_files": 1,
        "incoming_files": 0,
    }
    assert keys(store) == set()


def test_the_hourly_maintenance_job_sweeps_the_files_a_cascade_left(app, client, account, chatbot, store):
    kept_chatbot = client.post(CHATBOTS, json={"name": "Kept"}, headers=account.headers).json()["id"]
    gone = uploaded(client, account, chatbot, "gone.txt", text(), "text/plain")["document"]["sha256"]
    kept = uploaded(client, account, kept_chatbot, "kept.md", b"# Kept\n\n" + text(), "text/markdown")["document"]
    # the database's cascade (as an account's deletion does) removes the rows, not the files
    with unit_of_work(app)() as uow:
        uow.session.execute(delete(Chatbot).where(Chatbot.id == uuid.UUID(chatbot)))
    for key in (gone, kept["sha256"]):
        os.utime(store.path(key), (0, 0))  # stored long ago, whatever the app's clock says
    context = app.app.extensions["charter"]
    with unit_of_work(app)() as uow:
        job = job_services.enqueue(
            uow=uow, clock=context.clock, engine=context.jobs, kind="maintenance.purge_expired", owner_id=None
        )
        job_id = str(job.id)

    report = run_job(app, job_id)

    assert report.outcome == job_services.Outcome.SUCCEEDED, report
    with unit_of_work(app)() as uow:
        result = uow.jobs.get(uuid.UUID(job_id)).result
    assert (result["unreferenced_files"], result["incoming_files"]) == (1, 0)
    assert keys(store) == {kept["sha256"]}
