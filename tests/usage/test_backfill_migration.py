"""Migration 0017 counts what existed before metering began (chatbots not being deleted, their
documents and bytes, API keys neither revoked nor expired), on SQLite and on PostgreSQL: an
account's data is made through the API on a fresh database, the migration is taken back (its
downgrade drops the all-time counters) and applied again, and the counters it rebuilds from the
data are the ones the areas had kept."""

from __future__ import annotations

import uuid

import pytest
from alembic import command
from sqlalchemy import select
from starlette.testclient import TestClient

from persistence.billing.models import UsageCounter
from server.app import create_app
from server.cli import alembic_config
from services.usage import ALL_TIME
from tests.helpers import make_settings, register_and_login
from tests.served import migrated_database_of_kind


def _counters(session_factory, owner: uuid.UUID) -> dict[str, int]:
    with session_factory() as db:
        rows = db.scalars(
            select(UsageCounter).where(UsageCounter.owner_id == owner, UsageCounter.period_start == ALL_TIME)
        )
        return {row.meter: row.used for row in rows}


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_the_backfill_rebuilds_the_counters_of_what_exists(kind, tmp_path, restore_logging):
    with migrated_database_of_kind(kind, tmp_path) as url:
        app = create_app(make_settings(url, tmp_path))
        context = app.app.extensions["charter"]
        try:
            with TestClient(app) as client:
                account = register_and_login(client)
                bots = [client.post("/api/v1/chatbots", json={"name": f"B{n}"}, headers=account.headers) for n in "12"]
                kept, gone = (bot.json()["id"] for bot in bots)
                for chatbot, text in ((kept, b"Kept notes.\n"), (gone, b"Gone with its chatbot.\n")):
                    uploaded = client.post(
                        f"/api/v1/chatbots/{chatbot}/documents",
                        files={"file": ("notes.txt", text, "text/plain")},
                        headers=account.headers,
                    )
                    assert uploaded.status_code == 202, uploaded.text
                assert client.delete(f"/api/v1/chatbots/{gone}", headers=account.headers).status_code == 202
                keys = [
                    client.post("/api/v1/api-keys", json={"name": n, "scopes": ["chat"]}, headers=account.headers)
                    for n in "ab"
                ]
                revoked = client.delete(f"/api/v1/api-keys/{keys[0].json()['id']}", headers=account.headers)
                assert revoked.status_code == 204
            owner = uuid.UUID(account.id)
            kept_by_the_areas = _counters(context.session_factory, owner)
            assert kept_by_the_areas == {
                "chatbots": 1,
                "documents": 1,
                "storage_bytes": len(b"Kept notes.\n"),
                "api_keys": 1,
            }

            command.downgrade(alembic_config(url), "0016")
            assert _counters(context.session_factory, owner) == {}
            command.upgrade(alembic_config(url), "head")
            assert _counters(context.session_factory, owner) == kept_by_the_areas
        finally:
            context.engine.dispose()
