"""Fixtures of the backup tests: a source database of each kind filled through the API with data
from every area (accounts, tasks with tags and reminders, webhooks, API keys, chatbots,
uploaded documents with their files and passages, conversations with answers, jobs, audit
events), fresh targets to restore into, and the backup configuration the CLI would build.

SQLite always; PostgreSQL only when DATABASE_URL names it (as the rest of the suite), each
database created here (``charter_backup_<random>``) and dropped afterwards."""

from __future__ import annotations

import contextlib
import dataclasses
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from openapi_core import OpenAPI
from starlette.testclient import TestClient

from persistence.unit_of_work import UnitOfWork
from server.app import create_app
from server.settings import Settings
from server.worker import make_backup_config
from services import backups, reminders
from services import jobs as job_services
from services.clock import FrozenClock
from tests.helpers import (
    ContractClient,
    create_admin_and_login,
    create_task,
    make_settings,
    migrated_database,
    postgres_url_in_environment,
    register_and_login,
    run_job,
    temporary_postgres_database,
)
from tests.webhooks.test_ssrf_guard import fake_resolver

KINDS = [
    "sqlite",
    pytest.param(
        "postgresql",
        marks=pytest.mark.skipif(
            postgres_url_in_environment() is None, reason="PostgreSQL runs only when DATABASE_URL names it"
        ),
    ),
]
MANUALS = {
    "returns.md": b"# Returns\n\nRefunds reach your card within fourteen days of the parcel arriving back.\n",
    "pallets.md": b"# Pallets\n\nPallets ship by freight forwarder and arrive within nine working days.\n",
    "notes.txt": b"Opening hours are nine to five on weekdays, and ten to two on Saturdays.\n",
}


@dataclasses.dataclass
class Source:
    """A filled database of `kind` and the app serving it."""

    kind: str
    url: str
    settings: Settings
    app: Any
    client: ContractClient

    @property
    def state(self) -> Any:
        return self.app.app.extensions["charter"]


def _ok(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


def fill(source: Source) -> None:
    """Data of every area through the API (each answer checked against the contract), and the
    documents' jobs run as a worker would."""
    client = source.client
    create_admin_and_login(source.app, client)
    for person in range(2):
        account = register_and_login(client)
        for number in range(5):
            task = create_task(client, account, title=f"task {number} of {person}", tags=["home", f"p{person}"])
        reminder = _ok(
            client.post(
                f"{account.tasks_path}/{task['id']}/reminders",
                json={"remind_at": "2099-01-01T09:00:00Z", "channels": ["in_app"]},
                headers=account.headers,
            ),
            201,
        )
        later = FrozenClock(datetime(2099, 1, 1, 9, 0, 1, tzinfo=UTC))
        with UnitOfWork(source.state.session_factory) as uow:  # fired as the worker would: a notification
            assert reminders.fire(uow=uow, clock=later, engine=None, reminder_id=uuid.UUID(reminder["id"]))
        _ok(
            client.post(
                "/api/v1/webhook-endpoints",
                json={"url": "https://hooks.example.com/charter", "events": ["task.created"]},
                headers=account.headers,
            ),
            201,
        )
        create_task(client, account, title="after the webhook")  # a delivery and its job
        _ok(client.post("/api/v1/api-keys", json={"name": "CI", "scopes": ["chat"]}, headers=account.headers), 201)
        chatbot = _ok(client.post("/api/v1/chatbots", json={"name": f"Shop {person}"}, headers=account.headers), 201)
        base = f"/api/v1/chatbots/{chatbot['id']}"
        for name, data in MANUALS.items():
            media_type = "text/markdown" if name.endswith(".md") else "text/plain"
            started = _ok(
                client.post(
                    f"{base}/documents",
                    files={"file": (name, data + f"Shop {person}.\n".encode(), media_type)},
                    data={"title": name},
                    headers=account.headers,
                ),
                202,
            )
            report = run_job(source.app, started["job"]["id"], "backup-fill")
            assert report.outcome == job_services.Outcome.SUCCEEDED, report
        _ok(
            client.post(f"{base}/websites", json={"start_url": "http://127.0.0.1:9/"}, headers=account.headers),
            202,
        )  # its crawl stays queued
        active = _ok(
            client.patch(base, json={"status": "active", "visibility": "public"}, headers=account.headers), 200
        )
        _ok(client.post(f"/api/v1/public/chatbots/{active['public_id']}/conversations"), 201)  # a visitor's
        conversation = _ok(client.post(f"{base}/conversations", json={}, headers=account.headers), 201)
        _ok(
            client.post(
                f"/api/v1/conversations/{conversation['id']}/messages",
                json={"content": "How long do refunds take?"},
                headers=account.headers,
            ),
            201,
        )


@contextlib.contextmanager
def filled_source(kind: str, workdir: Path, openapi: OpenAPI) -> Iterator[Source]:
    server = postgres_url_in_environment() if kind == "postgresql" else None
    with migrated_database(server, sqlite_dir=workdir, prefix="charter_backup") as url:
        settings = make_settings(url, workdir / "var", crawler_allow_private_addresses=True)
        app = create_app(settings)
        try:
            app.app.extensions["charter"].webhooks.guard.resolver = fake_resolver
            with TestClient(app, raise_server_exceptions=False) as test_client:
                source = Source(kind, url, settings, app, ContractClient(test_client, openapi))
                fill(source)
                yield source
        finally:
            app.app.extensions["charter"].engine.dispose()


@pytest.fixture(scope="module", params=KINDS)
def source(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, openapi: OpenAPI):
    """A database of each kind filled with every area's data (one per module and kind)."""
    with filled_source(request.param, tmp_path_factory.mktemp(f"source-{request.param}"), openapi) as filled:
        yield filled


@contextlib.contextmanager
def empty_target(kind: str, workdir: Path, *, migrated: bool = False) -> Iterator[Settings]:
    """Settings naming a new empty database of `kind` (PostgreSQL: ``charter_backup_<random>``,
    dropped afterwards) and a new VAR_DIR; `migrated` runs the migrations first."""
    from server.cli import migrate

    var = workdir / "var"
    if kind == "sqlite":
        url = f"sqlite:///{workdir / 'restored.db'}"
        if migrated:
            migrate(url)
        yield make_settings(url, var)
        return
    server = postgres_url_in_environment()
    assert server is not None
    with temporary_postgres_database(server, prefix="charter_backup") as url:
        if migrated:
            migrate(url)
        yield make_settings(url, var)


@contextlib.contextmanager
def backup_config(settings: Settings, **changes: Any) -> Iterator[backups.BackupConfig]:
    """The configuration `charter backup`/`restore` build for `settings`; its engine disposed after."""
    config = dataclasses.replace(make_backup_config(settings), **changes)
    try:
        yield config
    finally:
        config.inventory.engine.dispose()  # type: ignore[attr-defined]
