"""The `websites.crawl` job's life: cancelled mid-crawl it ends `cancelled` (and so does a
queued one cancelled before it ran); a worker that dies mid-crawl leaves the job to the sweep,
and the next run resumes without fetching again the pages already recorded; the SSRF guard
refuses every loopback spelling at creation with the setting off (the session app's default),
and the setting is what lets the crawler reach 127.0.0.1; deleting the chatbot removes its
websites, pages and passages. Every site is served on 127.0.0.1 by the test."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from persistence.jobs.models import Job
from persistence.knowledge.models import Passage
from persistence.unit_of_work import UnitOfWork
from persistence.websites.models import WebPage, Website
from server.worker import make_crawler_config
from services import jobs as job_services
from services.clock import FrozenClock
from tests.helpers import assert_problem, collect_pages
from tests.websites.conftest import crawler_settings
from tests.websites.site import changing_site
from tests.websites.test_websites_api import CHATBOTS, add_website, new_chatbot, outcome, websites_path

UNSAFE = "/problems/unsafe-crawl-url"


def job_of(client, account, job_id: str) -> dict:
    return client.get(f"/api/v1/jobs/{job_id}", headers=account.headers).json()


def test_a_crawl_cancelled_while_it_runs_ends_cancelled_and_fetches_nothing_more(
    client, account, crawler, run_job, app, database
):
    chatbot_id = new_chatbot(client, account)
    context = app.app.extensions["charter"]
    with changing_site() as site:
        added = add_website(client, account, chatbot_id, site.url + "/", use_sitemap=False)
        job_id = added["job"]["id"]

        def cancel_on_a(path: str) -> None:  # the owner cancels the job while /a is being fetched
            if path == "/a":
                user = database.user(account.id)
                with UnitOfWork(context.session_factory) as uow:
                    job_services.cancel(uow=uow, clock=context.clock, caller=user, job_id=uuid.UUID(job_id))

        site.on_request = cancel_on_a
        report = run_job(job_id)
        requested = site.paths()
    assert report.outcome == job_services.Outcome.CANCELLED, report
    assert requested == ["/robots.txt", "/", "/a"]  # asked before each request: nothing after /a
    path = f"{websites_path(chatbot_id)}/{added['website']['id']}"
    got = client.get(path, headers=account.headers).json()
    assert (got["status"], got["stopped"], got["pages_indexed"]) == ("cancelled", "cancelled", 2)
    assert got["finished_at"] is not None
    assert job_of(client, account, job_id)["status"] == "cancelled"
    # what it had indexed stays searchable; a recrawl may be asked for again
    hits = client.get(f"{CHATBOTS}/{chatbot_id}/search", params={"q": "aardvarks"}, headers=account.headers)
    assert len(hits.json()["items"]) == 1
    assert client.post(f"{path}/recrawl", headers=account.headers).status_code == 202


def test_a_queued_crawl_cancelled_before_it_ran_is_shown_cancelled(client, account, crawler):
    chatbot_id = new_chatbot(client, account)
    added = add_website(client, account, chatbot_id, "http://127.0.0.1:9/")
    cancelled = client.post(f"/api/v1/jobs/{added['job']['id']}/cancel", headers=account.headers)
    assert cancelled.status_code == 200, cancelled.text
    path = f"{websites_path(chatbot_id)}/{added['website']['id']}"
    assert client.get(path, headers=account.headers).json()["status"] == "cancelled"
    listed = client.get(websites_path(chatbot_id), headers=account.headers).json()["items"]
    assert [item["status"] for item in listed] == ["cancelled"]
    summary = client.get(f"{CHATBOTS}/{chatbot_id}", headers=account.headers).json()["knowledge"]
    assert (summary["sources"], summary["status"]) == (1, "empty")  # not "indexing": its job has ended
    assert client.post(f"{path}/recrawl", headers=account.headers).status_code == 202


class WorkerDied(BaseException):
    """What a SIGKILL looks like from inside: nothing of the job's code runs after it."""


def test_a_crawl_whose_worker_died_resumes_without_fetching_recorded_pages_again(
    client, account, crawler, run_job, app
):
    chatbot_id = new_chatbot(client, account)
    context = app.app.extensions["charter"]
    with changing_site() as site:
        added = add_website(client, account, chatbot_id, site.url + "/", use_sitemap=False)
        job_id = added["job"]["id"]

        original = crawler.make_fetcher

        def dying_fetcher():  # the worker "dies" as it is about to ask for /b
            fetcher = original()
            fetch_page = fetcher.fetch_page

            def fetch(url, **kwargs):
                if url.endswith("/b"):
                    raise WorkerDied
                return fetch_page(url, **kwargs)

            fetcher.fetch_page = fetch
            return fetcher

        crawler.make_fetcher = dying_fetcher
        with pytest.raises(WorkerDied):
            run_job(job_id, worker_id="doomed")
        first = site.paths()
        path = f"{websites_path(chatbot_id)}/{added['website']['id']}"
        assert client.get(path, headers=account.headers).json()["status"] == "running"
        recorded = {
            page["url"].removeprefix(site.url)
            for page in collect_pages(client, f"{path}/pages", headers=account.headers)
        }
        assert {"/", "/a"} <= recorded and "/b" not in recorded

        # the lease runs out; the sweep queues the job again; another worker resumes it
        with UnitOfWork(context.session_factory) as uow:
            uow.session.execute(
                update(Job)
                .where(Job.id == uuid.UUID(job_id))
                .values(lease_expires_at=context.clock.now() - timedelta(seconds=1))
            )
        job_services.sweep(
            unit_of_work=lambda: UnitOfWork(context.session_factory), clock=context.clock, engine=context.jobs
        )
        crawler.make_fetcher = original
        site.requests.clear()
        report = run_job(job_id, worker_id="survivor")
        second = site.paths()
    assert report.outcome == job_services.Outcome.SUCCEEDED, report
    assert first == ["/robots.txt", "/", "/a"]
    assert "/" not in second and "/a" not in second  # recorded before the death: not fetched again
    assert set(second) == {"/robots.txt", "/b", "/c"}
    assert outcome(client, account, chatbot_id, added["website"]["id"], site.url) == {
        "/": ("indexed", None),
        "/a": ("indexed", None),
        "/b": ("indexed", None),
        "/c": ("indexed", None),
        "/private/notes": ("skipped", "robots"),
    }
    got = client.get(path, headers=account.headers).json()
    assert (got["status"], got["pages_found"], got["pages_indexed"]) == ("completed", 5, 4)
    assert job_of(client, account, job_id)["attempts"] == 2


@pytest.mark.parametrize(
    ("url", "rule"),
    [
        ("http://127.0.0.1/", "loopback"),
        ("http://localhost:8000/docs/", "loopback"),
        ("http://[::1]/", "loopback"),
        ("http://0x7f000001/", "loopback"),
        ("http://2130706433/", "loopback"),
        ("http://[::ffff:127.0.0.1]/", "loopback"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://10.0.0.1/", "private"),
    ],
)
def test_with_the_setting_off_the_ssrf_guard_refuses_the_start_url_with_a_422_and_creates_nothing(
    client, account, url, rule
):
    chatbot_id = new_chatbot(client, account)  # the session app: CRAWLER_ALLOW_PRIVATE_ADDRESSES unset
    response = client.post(websites_path(chatbot_id), json={"start_url": url}, headers=account.headers)
    problem = assert_problem(response, 422, UNSAFE)
    assert rule in problem["detail"]
    assert problem["errors"][0]["pointer"] == "/start_url"
    assert client.get(websites_path(chatbot_id), headers=account.headers).json()["items"] == []


def test_the_setting_is_what_lets_the_crawler_reach_loopback(settings):
    assert make_crawler_config(settings).guard.check("http://127.0.0.1/") is not None
    assert make_crawler_config(crawler_settings(settings)).guard.check("http://127.0.0.1/") is None


def test_deleting_the_chatbot_removes_its_websites_pages_and_passages(client, account, crawler, run_job, database):
    chatbot_id = new_chatbot(client, account)
    with changing_site() as site:
        added = add_website(client, account, chatbot_id, site.url + "/", use_sitemap=False)
        run_job(added["job"]["id"])
    website_id = uuid.UUID(added["website"]["id"])

    def counts():
        return database.read(
            lambda db: (
                db.scalar(select(func.count()).select_from(Website).where(Website.id == website_id)),
                db.scalar(select(func.count()).select_from(WebPage).where(WebPage.website_id == website_id)),
                db.scalar(select(func.count()).select_from(Passage).where(Passage.chatbot_id == uuid.UUID(chatbot_id))),
            )
        )

    assert counts()[0] == 1 and counts()[1] == 5 and counts()[2] >= 4
    deletion = client.delete(f"{CHATBOTS}/{chatbot_id}", headers=account.headers)
    assert deletion.status_code == 202
    assert run_job(deletion.json()["id"]).outcome == job_services.Outcome.SUCCEEDED
    assert counts() == (0, 0, 0)


def test_a_crawl_that_keeps_failing_is_queued_between_attempts_and_ends_failed(client, account, crawler, app):
    chatbot_id = new_chatbot(client, account)
    context = app.app.extensions["charter"]

    def broken_fetcher():
        raise RuntimeError("the fetcher is broken")

    crawler.make_fetcher = broken_fetcher
    added = add_website(client, account, chatbot_id, "http://127.0.0.1:9/")
    path = f"{websites_path(chatbot_id)}/{added['website']['id']}"
    start = context.clock.now()
    reports = []
    for attempt in range(3):  # each retry is due after its backoff: run it with a clock past that
        clock = FrozenClock(start + timedelta(hours=attempt))
        reports.append(
            job_services.run(
                engine=context.jobs,
                unit_of_work=lambda: UnitOfWork(context.session_factory),
                clock=clock,
                job_id=uuid.UUID(added["job"]["id"]),
                worker_id="test",
            ).outcome
        )
        got = client.get(path, headers=account.headers).json()
        if attempt < 2:
            assert (got["status"], got["finished_at"]) == ("queued", None)
            assert "RuntimeError" in got["error"] and "tried again" in got["error"]
    assert reports == [job_services.Outcome.RETRYING, job_services.Outcome.RETRYING, job_services.Outcome.FAILED]
    assert (got["status"], got["finished_at"] is not None) == ("failed", True)
    assert "RuntimeError" in got["error"] and "tried again" not in got["error"]
    assert job_of(client, account, added["job"]["id"])["status"] == "failed"
    summary = client.get(f"{CHATBOTS}/{chatbot_id}", headers=account.headers).json()["knowledge"]
    assert summary["status"] == "error"


def test_a_website_whose_job_ended_without_it_is_shown_with_the_jobs_outcome(client, account, crawler, app):
    chatbot_id = new_chatbot(client, account)
    context = app.app.extensions["charter"]
    added = add_website(client, account, chatbot_id, "http://127.0.0.1:9/")
    with UnitOfWork(context.session_factory) as uow:  # as the sweep ends a dead worker's last attempt
        uow.session.execute(
            update(Job)
            .where(Job.id == uuid.UUID(added["job"]["id"]))
            .values(status="failed", finished_at=context.clock.now())
        )
        uow.session.execute(
            update(Website).where(Website.id == uuid.UUID(added["website"]["id"])).values(status="running")
        )
    path = f"{websites_path(chatbot_id)}/{added['website']['id']}"
    assert client.get(path, headers=account.headers).json()["status"] == "failed"
    assert client.post(f"{path}/recrawl", headers=account.headers).status_code == 202


def test_a_recrawl_that_walks_the_whole_site_drops_the_pages_it_no_longer_reaches(client, account, crawler, run_job):
    chatbot_id = new_chatbot(client, account)
    with changing_site() as site:
        added = add_website(client, account, chatbot_id, site.url + "/", use_sitemap=False)
        run_job(added["job"]["id"])
        title, text, _links = site.pages["/"]
        site.pages["/"] = (title, text, ["/a", "/b"])  # /c is no longer linked
        path = f"{websites_path(chatbot_id)}/{added['website']['id']}"
        again = client.post(f"{path}/recrawl", headers=account.headers).json()
        run_job(again["job"]["id"])
    assert set(outcome(client, account, chatbot_id, added["website"]["id"], site.url)) == {"/", "/a", "/b"}
    hits = client.get(f"{CHATBOTS}/{chatbot_id}/search", params={"q": "chameleons"}, headers=account.headers)
    assert hits.json()["items"] == []
    got = client.get(path, headers=account.headers).json()
    assert (got["status"], got["stopped"], got["pages_found"]) == ("completed", "done", 3)
