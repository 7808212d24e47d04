"""How fast a chatbot's knowledge fills (issue 15: "`make bench`: pages crawled per second from a
local site, documents processed per minute").

Both measurements run the service's own job functions in this process, one job at a time, as
one worker thread would, on a temporary database (a SQLite file by default; a temporary
PostgreSQL database on the server of DATABASE_URL when it names one):

1. **Pages crawled per second.** A site of about `--pages` generated HTML pages (a home page,
   √N section pages, the rest under them; every page about `--words` words of text and links to
   its neighbours) is written to a temporary folder and served on 127.0.0.1 by a separate
   process (``python -m http.server``), so the site costs the crawler's process nothing. A
   website source is added to a chatbot through `services.websites.create_website` (no
   sitemap) and its `websites.crawl` job run with the wiring's real crawler
   (`server.worker.make_crawler_config`: httpx behind the SSRF guard, protego, trafilatura) with
   CRAWLER_ALLOW_PRIVATE_ADDRESSES on and CRAWLER_MIN_DELAY_SECONDS 0. pages/s = pages indexed /
   the job's wall time (robots.txt, fetch, extraction, chunking, each page's row and passages
   committed).
2. **Documents processed per minute.** `--documents` files made here, a quarter each plain text,
   Markdown, PDF (three pages) and DOCX (three headed sections), about `--words` words each, go
   through `services.documents.upload_document` (sniff, store content-addressed under a
   temporary VAR_DIR, the row, the job) and their `documents.process` job at once (the built-in
   structural scan, then clamd when CLAMD_URL is set; extraction; passages; the index).
   documents/min = documents ready / the wall time from the first upload to the last `ready`.

The run fails (nothing saved) unless every page is indexed and every document ready: a figure
that counted failures would measure nothing. Each phase is bounded by `--budget` seconds (the
crawl through CRAWLER_MAX_SECONDS, the documents by not starting another upload after it).
Writes bench/results/knowledge-ingest-<database>-<date>.json and a section in bench/RESULTS.md.

Usage: ``python -m bench.knowledge_ingest [--pages 500] [--documents 200] [--words 400]
[--budget 300] [--no-save]`` (``DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test`` for
PostgreSQL).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import math
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from bench.harness import free_port, save_results
from bench.knowledge_search import passage_texts, temporary_database
from persistence.accounts.models import User
from persistence.database import make_engine, make_session_factory
from persistence.seed import seed
from persistence.unit_of_work import UnitOfWork
from server.settings import Settings
from server.worker import make_job_engine
from services import chatbots, documents, subscriptions, websites
from services import jobs as job_services
from services.audit import RequestMeta
from services.clock import SystemClock
from services.passwords import PasswordHasher
from tests.documents.samples import build_docx, build_pdf

BENCH_PLAN = "business_yearly"
"""The plan the bench user is on: it measures the work, not the quotas (a free plan allows 100
messages and 100 crawled pages a month; this one 600,000 of each a year)."""

KINDS = ("text", "markdown", "pdf", "docx")


# --- the site -----------------------------------------------------------------------------------


def _page(title: str, body: str, links: list[str]) -> str:
    anchors = "\n".join(f'<li><a href="{link}">{link}</a></li>' for link in links)
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title></head><body>"
        f"<header><nav><a href='/'>Home</a></nav></header><main><article><h1>{title}</h1>"
        f"<p>{body}</p></article><ul>{anchors}</ul></main><footer>Bench site</footer></body></html>"
    )


def write_site(folder: Path, *, pages: int, words: int) -> int:
    """A site of about `pages` pages in `folder`: ``/`` links to √N sections ``/s<i>/``, each
    section to its pages ``/s<i>/p<j>.html`` (which link back and to their next sibling), and a
    robots.txt that allows everything. Returns how many pages it holds."""
    sections = max(1, round(math.sqrt(pages)))
    per_section = max(1, (pages - 1 - sections) // sections)
    texts = passage_texts(1 + sections * (per_section + 1), words, seed_value=7)
    (folder / "robots.txt").write_text("User-agent: *\nAllow: /\n")
    (folder / "index.html").write_text(_page("Home", next(texts), [f"/s{i}/" for i in range(sections)]))
    count = 1
    for i in range(sections):
        section = folder / f"s{i}"
        section.mkdir()
        children = [f"/s{i}/p{j}.html" for j in range(per_section)]
        (section / "index.html").write_text(_page(f"Section {i}", next(texts), children))
        count += 1
        for j in range(len(children)):
            sibling = children[(j + 1) % len(children)]
            (section / f"p{j}.html").write_text(_page(f"Page {i}.{j}", next(texts), ["/", f"/s{i}/", sibling]))
            count += 1
    return count


@contextlib.contextmanager
def serving_folder(folder: Path) -> Iterator[str]:
    """`python -m http.server` serving `folder` on a free port of 127.0.0.1 in a process of its
    own; yields its base URL, stops the process on exit. Raises SystemExit when it does not
    answer within 15 s."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(folder)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                with urllib.request.urlopen(f"{base}/robots.txt", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("the bench site did not start") from None
                time.sleep(0.1)
        yield base
    finally:
        server.terminate()
        server.wait(timeout=10)


# --- the documents ------------------------------------------------------------------------------


def make_documents(count: int, words: int) -> list[tuple[str, str, bytes]]:
    """`count` documents (kind, file name, bytes), the kinds in turn, each about `words` words in
    three parts (PDF pages, DOCX sections, Markdown headings, text paragraphs)."""
    texts = passage_texts(count * 3, max(1, words // 3), seed_value=11)
    made: list[tuple[str, str, bytes]] = []
    for number in range(count):
        kind = KINDS[number % len(KINDS)]
        parts = [next(texts) for _ in range(3)]
        if kind == "text":
            data = "\n\n".join(parts).encode()
        elif kind == "markdown":
            data = "\n\n".join(f"## Part {i + 1}\n\n{part}" for i, part in enumerate(parts)).encode()
        elif kind == "pdf":
            # one line per dozen words: what a page of a real PDF holds
            data = build_pdf(
                [[" ".join(part.split()[i : i + 12]) for i in range(0, len(part.split()), 12)] for part in parts]
            )
        else:
            data = build_docx([(f"Part {i + 1}", [part]) for i, part in enumerate(parts)])
        suffix = {"text": "txt", "markdown": "md", "pdf": "pdf", "docx": "docx"}[kind]
        made.append((kind, f"bench-{number}.{suffix}", data))
    return made


# --- the measurements ---------------------------------------------------------------------------


class Bench:
    """One user with one chatbot on the database `url`, and the wiring's job engine over settings
    for the bench (VAR_DIR in `var_dir`, the crawler allowed onto 127.0.0.1 without delay, the
    SQLite job queue, which no worker reads: jobs are run here)."""

    def __init__(self, url: str, var_dir: Path, *, budget: float) -> None:
        self.settings = Settings(
            _env_file=None,
            env="test",
            database_url=url,
            var_dir=var_dir,
            jwt_secret=secrets.token_urlsafe(48),
            log_level="WARNING",
            job_queue="sqlite",
            crawler_allow_private_addresses=True,
            crawler_min_delay_seconds=0,
            crawler_max_seconds=budget,
        )
        self.db = make_engine(url)
        self.factory = make_session_factory(self.db)
        self.clock = SystemClock()
        self.jobs, _queue = make_job_engine(self.settings)
        ((user_id, _email),) = seed(
            self.db, users=1, tasks_per_user=0, password_hash=PasswordHasher(4).hash("bench passphrase"), seed_value=1
        )
        self.user_id = user_id
        with self.unit_of_work() as uow:
            user = self.user(uow)
            subscriptions.current_subscription(
                uow, owner_id=user.id, clock=self.clock, lock=True
            ).plan_code = BENCH_PLAN
            self.chatbot_id = chatbots.create_chatbot(
                uow=uow, clock=self.clock, caller=self.user(uow), data={"name": "Bench"}, meta=RequestMeta()
            ).id

    def unit_of_work(self) -> UnitOfWork:
        """A new unit of work on the bench's database."""
        return UnitOfWork(self.factory)

    def user(self, uow: UnitOfWork) -> User:
        """The bench's user, in `uow`."""
        found = uow.users.get(self.user_id)
        assert found is not None
        return found

    def run_job(self, job_id: uuid.UUID) -> job_services.RunReport:
        """Run the job now, as a worker thread would."""
        return job_services.run(
            engine=self.jobs, unit_of_work=self.unit_of_work, clock=self.clock, job_id=job_id, worker_id="bench"
        )

    def crawl(self, base_url: str, *, pages: int) -> dict:
        """Crawl the site at `base_url` (`pages` pages) once; its figures."""
        with self.unit_of_work() as uow:
            website, job = websites.create_website(
                uow=uow,
                clock=self.clock,
                engine=self.jobs,
                caller=self.user(uow),
                chatbot_id=self.chatbot_id,
                data={"start_url": base_url + "/", "max_pages": pages, "max_depth": 3, "use_sitemap": False},
            )
            website_id, job_id = website.id, job.id
        started = time.monotonic()
        report = self.run_job(job_id)
        seconds = time.monotonic() - started
        with self.unit_of_work() as uow:
            row = uow.websites.get(website_id)
            assert row is not None
            indexed, found, status = row.pages_indexed, row.pages_found, row.status
        if report.outcome != job_services.Outcome.SUCCEEDED or indexed != pages:
            raise SystemExit(
                f"the crawl ended {status} ({report.outcome}) with {indexed} of {pages} pages indexed "
                f"({found} found): the measurement is void"
            )
        return {"pages": indexed, "seconds": seconds, "pages_per_second": indexed / seconds}

    def process_documents(self, made: list[tuple[str, str, bytes]], *, budget: float) -> dict:
        """Upload and process each of `made` in turn until `budget` seconds have passed; figures."""
        config = documents.config_of(self.jobs)
        per_kind: dict[str, list[float]] = {kind: [] for kind in KINDS}
        started = time.monotonic()
        for kind, name, data in made:
            if time.monotonic() - started > budget:
                break
            one = time.monotonic()
            with self.unit_of_work() as uow:
                document, job = documents.upload_document(
                    uow=uow,
                    clock=self.clock,
                    engine=self.jobs,
                    config=config,
                    caller=self.user(uow),
                    chatbot_id=self.chatbot_id,
                    stream=io.BytesIO(data),
                    filename=name,
                    declared_type=None,
                )
                document_id, job_id = document.id, job.id
            report = self.run_job(job_id)
            with self.unit_of_work() as uow:
                row = uow.documents.get(document_id, chatbot_id=self.chatbot_id)
                status = row.status if row is not None else None
            if report.outcome != job_services.Outcome.SUCCEEDED or status != "ready":
                raise SystemExit(f"{name} ended {status} ({report.outcome}): the measurement is void")
            per_kind[kind].append(time.monotonic() - one)
        seconds = time.monotonic() - started
        done = sum(len(times) for times in per_kind.values())
        return {
            "documents": done,
            "seconds": seconds,
            "documents_per_minute": done * 60 / seconds,
            "ms_per_document": {kind: statistics.median(times) * 1000 for kind, times in per_kind.items() if times},
            "scan": "built-in + clamd" if config.scanner is not None else "built-in",
        }

    def close(self) -> None:
        """Release the database connections."""
        self.db.dispose()


def timed(what: str, action: Callable[[], dict]) -> dict:
    """`action()`, saying on stderr what runs."""
    print(f"{what}…", file=sys.stderr, flush=True)
    return action()


def main() -> int:
    """CLI; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=500)
    parser.add_argument("--documents", type=int, default=200)
    parser.add_argument("--words", type=int, default=400)
    parser.add_argument("--budget", type=float, default=300.0, help="seconds each phase may take at most")
    parser.add_argument("--no-save", action="store_true", help="print the section only (a trial run)")
    args = parser.parse_args()
    server_url = os.environ.get("DATABASE_URL", "")
    database = "PostgreSQL" if server_url.startswith("postgresql") else "SQLite"
    with temporary_database(server_url) as url, tempfile.TemporaryDirectory(prefix="charter-ingest-") as folder:
        root = Path(folder)
        (root / "site").mkdir()
        pages = write_site(root / "site", pages=args.pages, words=args.words)
        made = make_documents(args.documents, args.words)
        bench = Bench(url, root / "var", budget=args.budget)
        try:
            with serving_folder(root / "site") as base_url:
                crawl = timed(f"crawling {pages} pages", lambda: bench.crawl(base_url, pages=pages))
            processed = timed(
                f"processing {len(made)} documents", lambda: bench.process_documents(made, budget=args.budget)
            )
        finally:
            bench.close()
    stamp = dt.datetime.now(dt.UTC)
    kinds = ", ".join(f"{kind} {ms:.0f}" for kind, ms in processed["ms_per_document"].items())
    text = "\n".join(
        [
            f"## Knowledge ingestion ({database}) — {stamp:%Y-%m-%d %H:%M} UTC",
            "",
            f"`{'DATABASE_URL=postgresql+psycopg://… ' if database == 'PostgreSQL' else ''}python -m "
            f"bench.knowledge_ingest --pages {args.pages} --documents {args.documents} --words {args.words} "
            f"--budget {args.budget:g}`: the job functions run one at a time in the bench's process (one "
            f"worker thread), {database} on the same {os.cpu_count()}-core machine (1-minute load average "
            f"{os.getloadavg()[0]:.1f}).",
            "",
            "| measurement | count | seconds | rate |",
            "|---|---:|---:|---:|",
            f"| crawl of a local site (http.server on 127.0.0.1, no delay, ~{args.words} words a page) "
            f"| {crawl['pages']} pages | {crawl['seconds']:.1f} | **{crawl['pages_per_second']:.1f} pages/s** |",
            f"| documents: upload → scan ({processed['scan']}) → extract → index; a quarter each text, "
            f"Markdown, PDF, DOCX | {processed['documents']} documents | {processed['seconds']:.1f} "
            f"| **{processed['documents_per_minute']:.0f} documents/min** |",
            "",
            f"Median ms per document, upload to `ready`: {kinds}.",
        ]
    )
    print(text)
    if args.no_save:
        return 0
    save_results(
        f"knowledge-ingest-{database.lower()}-{stamp:%Y-%m-%d-%H%M}",
        {"date": stamp.isoformat(), "args": vars(args), "crawl": crawl, "documents": processed},
        text,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
