"""GET /api/v1/admin/backups through the app (the `client` fixture checks every answer against
the contract): administrators see BACKUP_DIR's archives newest first, page by page, each with
its manifest's figures and a `valid` flag; a broken archive is listed as not valid, saying why;
files not named like an archive are not listed; others get 403, the anonymous 401."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta

import pytest

from services import backups
from services.clock import FrozenClock
from tests.backups.conftest import backup_config
from tests.helpers import FORBIDDEN, UNAUTHORIZED, VALIDATION, assert_problem, collect_pages, pages

PATH = "/api/v1/admin/backups"


@pytest.fixture
def archives(app) -> list[str]:
    """Three archives of the session's database a day apart, then a truncated copy named like a
    fourth, and a stray file; BACKUP_DIR emptied first and afterwards. Their names, newest first."""
    settings = app.app.extensions["charter"].settings
    directory = settings.backup_directory
    shutil.rmtree(directory, ignore_errors=True)
    clock = FrozenClock(datetime(2026, 11, 28, 3, 0, tzinfo=UTC))
    names = []
    with backup_config(settings) as config:
        for _ in range(3):
            names.append(backups.create_backup(config=config, clock=clock).path.name)
            clock.advance(days=1)
    broken = directory / backups.archive_name(clock.now())
    whole = (directory / names[-1]).read_bytes()
    broken.write_bytes(whole[: len(whole) // 2])
    (directory / "notes.txt").write_text("not an archive")
    yield [broken.name, *reversed(names)]
    shutil.rmtree(directory, ignore_errors=True)


def test_an_administrator_lists_the_archives_newest_first(client, admin, archives, app):
    listed = collect_pages(client, PATH, headers=admin.headers, params={"limit": 2})
    assert [item["name"] for item in listed] == archives
    broken, newest = listed[0], listed[1]
    assert broken["valid"] is False and "truncated" in broken["problem"]
    assert (broken["database_kind"], broken["schema_revision"], broken["table_rows_total"]) == (None, None, None)
    assert broken["created_at"] == "2026-12-01T03:00:00.000000Z"  # from its name
    kind = "sqlite" if app.app.extensions["charter"].settings.is_sqlite else "postgresql"
    for item in listed[1:]:
        assert item["valid"] is True and item["problem"] is None
        assert item["database_kind"] == kind
        assert item["schema_revision"] and item["table_rows_total"] > 0
        assert item["size_bytes"] > 0
    assert newest["created_at"] == "2026-11-30T03:00:00.000000Z"
    assert len(list(pages(client, PATH, headers=admin.headers, params={"limit": 2}))) == 2


def test_others_are_refused(client, account, archives):
    assert_problem(client.get(PATH, headers=account.headers), 403, FORBIDDEN)
    assert_problem(client.get(PATH), 401, UNAUTHORIZED)


def test_a_made_up_cursor_is_a_validation_problem(client, admin, archives):
    assert_problem(client.get(PATH, headers=admin.headers, params={"cursor": "bm90LWEtY3Vyc29y"}), 400, VALIDATION)


def test_an_empty_or_missing_folder_lists_nothing(client, admin, app):
    shutil.rmtree(app.app.extensions["charter"].settings.backup_directory, ignore_errors=True)
    body = client.get(PATH, headers=admin.headers).json()
    assert body == {"items": [], "next_cursor": None}


def test_the_name_time_and_the_manifest_time_agree():
    at = datetime(2026, 12, 2, 3, 0, 5, 123456, tzinfo=UTC)
    name = backups.archive_name(at)
    assert backups.ARCHIVE_NAME.fullmatch(name)
    assert name.startswith("charter-backup-20261202T030005Z-")
    assert at - timedelta(seconds=1) < datetime.strptime(name[15:31], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC) <= at
