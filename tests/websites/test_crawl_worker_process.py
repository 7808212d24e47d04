"""A crawl survives its worker's death, for real (issue 15: "resumable after a worker dies (pages
already fetched are not fetched again), and never stuck in running"): a real `charter worker`
crawls a slow site served here on 127.0.0.1 and is killed with SIGKILL while it waits for a page;
a second worker takes the job over once its lease has run out, and the crawl completes. The
site counts the requests for each path, so the test knows exactly what was fetched twice.

On SQLite and on PostgreSQL; every wait has a deadline; every process started is stopped."""

from __future__ import annotations

import collections
import contextlib
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from sqlalchemy import select

from persistence.database import make_engine, make_session_factory
from persistence.seed import seed
from persistence.unit_of_work import UnitOfWork
from persistence.websites.models import WebPage, Website
from server.worker import make_job_engine
from services import chatbots, websites
from services.audit import RequestMeta
from services.clock import SystemClock
from services.passwords import PasswordHasher
from tests.crawling.website import html
from tests.helpers import ROOT, make_settings, serving_on_loopback
from tests.processes import CHARTER, charter_environment, log_tail, stop_process
from tests.served import migrated_database_of_kind

PAGES = 10
"""Pages the home page links to (``/p1`` … ``/p10``): the site has 11."""
HELD = "/p5"
"""The page the first worker is left waiting for when it is killed."""
PAGE_DELAY_SECONDS = 0.1
"""Every page answers this late: a slow site, so a crawl is caught in the middle."""
LEASE_SECONDS = 2
DEADLINE_SECONDS = 60.0
WORDS = "is a page of the slow site with a paragraph long enough to be read as its main content by the extractor"


class SlowSite:
    """A site of `PAGES` + 1 pages whose answers take `PAGE_DELAY_SECONDS`; `requests` counts
    the requests per path; a request for `HELD` waits (30 s at most) until `release()`."""

    def __init__(self) -> None:
        self.port = 0
        self.requests: collections.Counter[str] = collections.Counter()
        self.lock = threading.Lock()
        self.held = threading.Event()
        self.released = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def counts(self) -> dict[str, int]:
        with self.lock:
            return dict(self.requests)

    def release(self) -> None:
        self.released.set()

    def body(self, path: str) -> bytes | None:
        if path == "/":
            links = "".join(f'<a href="/p{n}">page {n}</a> ' for n in range(1, PAGES + 1))
            return html("Home", f"<p>Home {WORDS}.</p>{links}")
        if path.startswith("/p") and path[2:].isdigit() and 1 <= int(path[2:]) <= PAGES:
            return html(f"Page {path[2:]}", f'<p>Page {path[2:]} {WORDS}, number {path[2:]}.</p><a href="/">home</a>')
        return None


@contextlib.contextmanager
def slow_site() -> Iterator[SlowSite]:
    site = SlowSite()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            with site.lock:
                site.requests[path] += 1
                first_of_held = path == HELD and site.requests[path] == 1
            if path == "/robots.txt":
                return self._answer(200, "text/plain", b"User-agent: *\nAllow: /\n")
            if first_of_held:  # the first worker waits here until it has been killed
                site.held.set()
                site.released.wait(timeout=30)
            time.sleep(PAGE_DELAY_SECONDS)
            body = site.body(path)
            if body is None:
                return self._answer(404, "text/plain", b"not found")
            return self._answer(200, "text/html; charset=utf-8", body)

        def _answer(self, status: int, media_type: str, body: bytes) -> None:
            with contextlib.suppress(OSError):  # the worker that asked may be dead
                self.send_response(status)
                self.send_header("Content-Type", media_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    with serving_on_loopback(Handler) as site.port:
        try:
            yield site
        finally:
            site.release()


class Crawl:
    """The database, a website of a chatbot queued for crawling on the SQLite job queue of
    `workdir/var`, and the `charter worker` processes the test starts."""

    def __init__(self, url: str, workdir: Path) -> None:
        self.url = url
        self.workdir = workdir
        self.settings = make_settings(url, workdir / "var", job_queue="sqlite", crawler_allow_private_addresses=True)
        self.db = make_engine(url, pool_size=2, max_overflow=2)
        self.factory = make_session_factory(self.db)
        self.processes: list[subprocess.Popen] = []

    def add_website(self, start_url: str) -> tuple[uuid.UUID, uuid.UUID]:
        """A user, a chatbot and its website (no sitemap), its crawl job queued; (website id, job id)."""
        engine, _queue = make_job_engine(self.settings)
        ((user_id, _email),) = seed(self.db, users=1, tasks_per_user=0, password_hash=PasswordHasher(4).hash("x"))
        clock = SystemClock()
        with UnitOfWork(self.factory) as uow:
            owner = uow.users.get(user_id)
            chatbot = chatbots.create_chatbot(
                uow=uow, clock=clock, caller=owner, data={"name": "Slow"}, meta=RequestMeta()
            )
            website, job = websites.create_website(
                uow=uow,
                clock=clock,
                engine=engine,
                caller=owner,
                chatbot_id=chatbot.id,
                data={"start_url": start_url, "max_pages": 50, "use_sitemap": False},
            )
            return website.id, job.id

    def start_worker(self) -> subprocess.Popen:
        if not CHARTER.exists():
            pytest.skip("the charter console script is not installed")
        environment = charter_environment(
            DATABASE_URL=self.url,
            VAR_DIR=str(self.workdir / "var"),
            JOB_QUEUE="sqlite",
            JOB_LEASE_SECONDS=str(LEASE_SECONDS),
            JOB_SWEEP_INTERVAL_SECONDS="0.5",
            CRAWLER_ALLOW_PRIVATE_ADDRESSES="true",
            CRAWLER_MIN_DELAY_SECONDS="0",
            CRAWLER_TIMEOUT_SECONDS="45",
            CRAWLER_PAGE_SECONDS="45",
            LOG_LEVEL="INFO",
            PYTHONPATH=str(ROOT),
        )
        log_path = self.workdir / f"worker-{len(self.processes)}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [str(CHARTER), "worker", "--threads", "1"],
                cwd=self.workdir,
                env=environment,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self.processes.append(process)
        return process

    def logs(self) -> str:
        return "\n".join(log_tail(path) for path in sorted(self.workdir.glob("worker-*.log")))

    def wait_for(self, condition: Callable[[], object], what: str, timeout: float = DEADLINE_SECONDS) -> object:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            time.sleep(0.1)
        pytest.fail(f"{what} did not happen within {timeout}s:\n{self.logs()}")

    def website(self, website_id: uuid.UUID) -> Website:
        with UnitOfWork(self.factory) as uow:
            found = uow.websites.get(website_id)
            assert found is not None
            uow.session.expunge(found)
            return found

    def recorded(self, website_id: uuid.UUID) -> dict[str, str]:
        """The pages recorded so far: path → status."""
        with self.db.connect() as connection:
            rows = connection.execute(select(WebPage.url, WebPage.status).where(WebPage.website_id == website_id)).all()
        return {"/" + url.split("/", 3)[3]: status for url, status in rows}

    def job(self, job_id: uuid.UUID):
        with UnitOfWork(self.factory) as uow:
            found = uow.jobs.get(job_id)
            uow.session.expunge(found)
            return found

    def close(self) -> None:
        for process in self.processes:
            stop_process(process)
        self.db.dispose()


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_a_sigkilled_crawl_worker_is_taken_over_and_fetches_no_recorded_page_again(database, tmp_path):
    with migrated_database_of_kind(database, tmp_path) as url, slow_site() as site:
        crawl = Crawl(url, tmp_path)
        try:
            website_id, job_id = crawl.add_website(site.url + "/")
            first = crawl.start_worker()
            # the first worker has recorded the home page and /p1 … /p4, and waits for /p5
            crawl.wait_for(lambda: site.held.is_set(), f"the request for {HELD}")
            before = crawl.wait_for(
                lambda: len(recorded := crawl.recorded(website_id)) == 5 and recorded, "five recorded pages"
            )
            first.kill()  # SIGKILL: no cleanup; the job's lease runs out, its huey message is gone
            first.wait(timeout=10)
            site.release()
            assert before == {"/": "indexed", **{f"/p{n}": "indexed" for n in range(1, 5)}}
            assert crawl.website(website_id).status == "running"  # what the dead worker left
            killed_counts = site.counts()

            crawl.start_worker()
            done = crawl.wait_for(
                lambda: (row := crawl.website(website_id)).status != "running" and row.finished_at and row,
                "the crawl's end",
            )
            counts = site.counts()
            job = crawl.job(job_id)
        finally:
            crawl.close()
    assert killed_counts == {"/robots.txt": 1, "/": 1, "/p1": 1, "/p2": 1, "/p3": 1, "/p4": 1, HELD: 1}
    # the second attempt asks for robots.txt again and for what was not recorded, once each:
    # the page the dead worker was waiting for is the only page asked for twice
    assert counts == {
        "/robots.txt": 2,
        "/": 1,
        **{f"/p{n}": 1 for n in range(1, PAGES + 1)},
        HELD: 2,
    }
    assert (done.status, done.stopped, done.pages_found, done.pages_indexed) == ("completed", "done", 11, 11)
    assert (job.status, job.attempts) == ("succeeded", 2)
