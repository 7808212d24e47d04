"""`include_subdomains` on website sources (issue 15: "same site only (no other hosts; subdomains
only if asked)"): the crawl scope's host rule, the field through the API (default false, stored,
answered), the crawl job honouring it, and migration 0011 filling it in for older rows.

127.0.0.1 has no subdomains without DNS, so the job's test crawls an in-memory site
(`FakeFetcher`, `FakeGuard`: no request leaves the process) on the reserved ``.test`` names."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import column as column_of
from sqlalchemy import insert, select, table

from adapters.web_fetch import FakeFetcher, FakePage
from adapters.webhook_http import FakeGuard
from persistence.chatbots.models import Chatbot
from persistence.database import make_engine, make_session_factory
from persistence.seed import seed
from persistence.unit_of_work import UnitOfWork
from persistence.websites.models import Website
from server.cli import alembic_config
from services.clock import SystemClock
from services.crawl_scope import CrawlScope
from tests.helpers import postgres_url_in_environment, temporary_postgres_database
from tests.websites.test_websites_api import add_website, new_chatbot, outcome, websites_path

SITE = "http://example.test"
DOCS = "http://docs.example.test"


def test_the_scope_takes_subdomains_of_the_start_host_only_when_asked():
    narrow = CrawlScope("http://www.example.test/")
    wide = CrawlScope("http://www.example.test/", include_subdomains=True)
    for scope in (narrow, wide):  # www and the bare host are one site either way
        assert scope.same_site("http://example.test/a") and scope.same_site("https://www.example.test/b")
        assert not scope.same_site("http://example.org/")
        assert not scope.same_site("http://notexample.test/")  # a suffix of the name is no subdomain
        assert not scope.same_site("http://example.test.evil.test/")
        assert not scope.same_site("http://docs.example.test:8080/")  # another port is another site
    assert not narrow.same_site("http://docs.example.test/")
    assert not narrow.same_site("http://api.v2.example.test/")
    assert wide.same_site("http://docs.example.test/") and wide.same_site("http://api.v2.example.test/")
    # the start host's own subdomain is no wider a site: its parent is another host
    assert not CrawlScope("http://docs.example.test/", include_subdomains=True).same_site("http://example.test/")


def test_the_field_defaults_to_false_and_is_stored_and_answered(client, account, crawler):
    chatbot_id = new_chatbot(client, account)
    plain = add_website(client, account, chatbot_id, "http://127.0.0.1:9/")
    wide = add_website(client, account, chatbot_id, "http://127.0.0.1:9/docs", include_subdomains=True)
    assert (plain["website"]["include_subdomains"], wide["website"]["include_subdomains"]) == (False, True)
    for added, expected in ((plain, False), (wide, True)):
        got = client.get(f"{websites_path(chatbot_id)}/{added['website']['id']}", headers=account.headers)
        assert got.json()["include_subdomains"] is expected
    listed = client.get(websites_path(chatbot_id), headers=account.headers).json()["items"]
    assert {item["id"]: item["include_subdomains"] for item in listed} == {
        plain["website"]["id"]: False,
        wide["website"]["id"]: True,
    }


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_a_field_that_is_no_boolean_is_400_and_creates_nothing(client, account, crawler, value):
    chatbot_id = new_chatbot(client, account)
    response = client.post(
        websites_path(chatbot_id),
        json={"start_url": "http://127.0.0.1:9/", "include_subdomains": value},
        headers=account.headers,
    )
    assert response.status_code == 400, response.text
    assert client.get(websites_path(chatbot_id), headers=account.headers).json()["items"] == []


def _page(title: str, links: tuple[str, ...] = ()) -> FakePage:
    anchors = "".join(f'<a href="{link}">{link}</a> ' for link in links)
    text = f"This is the page about {title}, with enough words to count as the main content of it."
    return FakePage(f"<html><head><title>{title}</title></head><body><nav>{anchors}</nav><p>{text}</p></body></html>")


@pytest.mark.parametrize(("include_subdomains", "docs_outcome"), [(False, ("skipped", "other_host")), (True, None)])
def test_the_crawl_job_follows_subdomain_links_only_when_asked(
    client, account, crawler, run_job, include_subdomains, docs_outcome
):
    site = {
        SITE + "/": _page("Home", ("/about", DOCS + "/guide", "http://example.org/elsewhere")),
        SITE + "/about": _page("About"),
        DOCS + "/guide": _page("Guide"),
    }
    fetchers: list[FakeFetcher] = []

    def make_fetcher() -> FakeFetcher:
        fetchers.append(FakeFetcher(dict(site)))
        return fetchers[-1]

    crawler.guard = FakeGuard()  # the .test names resolve nowhere: nothing is ever contacted
    crawler.make_fetcher = make_fetcher
    chatbot_id = new_chatbot(client, account)
    added = add_website(
        client, account, chatbot_id, SITE + "/", use_sitemap=False, include_subdomains=include_subdomains
    )
    run_job(added["job"]["id"])
    pages = outcome(client, account, chatbot_id, added["website"]["id"], "")
    requested = [url for url, _headers in fetchers[0].requests]
    assert pages == {
        SITE + "/": ("indexed", None),
        SITE + "/about": ("indexed", None),
        DOCS + "/guide": docs_outcome or ("indexed", None),
        "http://example.org/elsewhere": ("skipped", "other_host"),
    }
    assert (DOCS + "/guide" in requested) is include_subdomains
    assert "http://example.org/elsewhere" not in requested


# --- migration 0011 -------------------------------------------------------------------------------


@contextlib.contextmanager
def _database(kind: str, tmp_path: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'subdomains.db'}"
        return
    server_url = postgres_url_in_environment()
    if server_url is None:
        pytest.skip("DATABASE_URL does not name PostgreSQL")
    with temporary_postgres_database(server_url, prefix="charter_subdomains") as url:
        yield url


def _config(url: str):
    config = alembic_config(url)
    config.attributes["configure_logger"] = False
    return config


LATER_CHATBOT_COLUMNS = {"public_id"}
"""Columns of `chatbots` added after migration 0011 (0014's): absent at 0010."""


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_migration_0011_fills_the_setting_in_for_older_websites_and_its_downgrade_removes_it(kind, tmp_path):
    with _database(kind, tmp_path) as url:
        command.upgrade(_config(url), "0010")  # the schema is 0011's: the migration changes data only
        engine = make_engine(url, pool_size=1, max_overflow=0)
        try:
            ((user_id, _email),) = seed(engine, users=1, tasks_per_user=0, password_hash="x")
            factory = make_session_factory(engine)
            old = {"max_pages": 5, "max_depth": 1, "include_paths": [], "exclude_paths": [], "use_sitemap": True}
            now = SystemClock().now()
            chatbot_id = uuid.uuid4()
            # The chatbot as 0010's schema has it: written with 0010's columns only (the model's
            # later columns, such as 0014's public_id, are not there yet).
            chatbot_columns = [column for column in Chatbot.__table__.c if column.name not in LATER_CHATBOT_COLUMNS]
            chatbot_table = table("chatbots", *(column_of(column.name, column.type) for column in chatbot_columns))
            with engine.begin() as connection:
                connection.execute(
                    insert(chatbot_table).values(
                        id=chatbot_id,
                        owner_id=user_id,
                        name="Old",
                        instructions="",
                        welcome_message=None,
                        suggested_questions=[],
                        status="draft",
                        visibility="private",
                        allowed_origins=[],
                        passages_per_answer=5,
                        min_score=0.0,
                        version=1,
                        created_at=now,
                        updated_at=now,
                        deleting_since=None,
                    )
                )
            with UnitOfWork(factory) as uow:
                ids = [uuid.uuid4(), uuid.uuid4()]
                for website_id, settings in zip(ids, (old, {**old, "include_subdomains": True}), strict=True):
                    uow.websites.add(
                        Website(
                            id=website_id,
                            chatbot_id=chatbot_id,
                            owner_id=user_id,
                            start_url="http://example.test/",
                            settings=settings,
                            status="completed",
                            crawl_number=1,
                            pages_found=0,
                            pages_indexed=0,
                            pages_failed=0,
                            pages_skipped=0,
                            robots_blocked=[],
                            created_at=now,
                            updated_at=now,
                        )
                    )

            def stored() -> list[dict]:
                with engine.connect() as connection:
                    rows = dict(connection.execute(select(Website.id, Website.settings)).all())
                return [rows[website_id] for website_id in ids]

            command.upgrade(_config(url), "0011")
            assert stored() == [{**old, "include_subdomains": False}, {**old, "include_subdomains": True}]
            command.downgrade(_config(url), "0010")
            assert stored() == [old, old]
        finally:
            engine.dispose()
