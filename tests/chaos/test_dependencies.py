"""Outside dependencies refusing and hanging (issue 18, "Resilience"): SMTP, the answer provider,
clamd, webhook receivers and crawled sites, each behind a `tests.chaos.faults.FlakyPort` on
127.0.0.1 that refuses, then hangs, then forwards to a real local server.

Proved for each: its calls fail within their timeouts (never hang a thread), its circuit
breaker opens after BREAKER_FAILURES failures and then fails fast without contacting it, the
readiness probe answers 200 `degraded` naming it and `/metrics` shows its gauge at 2, its
fallback applies (extractive answer, held document, failed page or delivery attempt), and after
the reset time one trial call closes the breaker again: everything recovers without a restart.
Per-target families (webhook receivers, crawled sites) open per target and never degrade
readiness.
"""

from __future__ import annotations

import io
import smtplib
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from email.message import EmailMessage

import pytest
from aiosmtpd.controller import Controller

from adapters import resilience
from adapters.resilience import DependencyUnavailable
from adapters.web_fetch import HttpxFetcher
from adapters.webhook_http import HttpxSender
from server.worker import make_conversation_config, make_document_config, make_mailer
from services import knowledge
from services.document_scan import ScannerUnavailable, scan_document
from tests.accounts.conftest import MailBox
from tests.chaos.faults import FlakyPort, flaky_port, wait_until
from tests.conversations.conftest import RETURNS_PAGE, index
from tests.conversations.test_conversations_api import ask, make_chatbot, start
from tests.helpers import make_settings
from tests.llm_double import FakeLLM
from tests.processes import free_port

RESET_SECONDS = 1.0
FAILURES = 2
TIMEOUT_SECONDS = 0.5


def readiness(client) -> dict:
    response = client.get("/api/v1/health/ready")
    assert response.status_code == 200, response.text
    return response.json()


def breaker_gauge(client, dependency: str) -> float | None:
    response = client.get("/metrics")
    assert response.status_code == 200
    prefix = f'charter_dependency_breaker_state{{dependency="{dependency}"}} '
    for line in response.text.splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix) :])
    return None


def assert_degraded_by(client, dependency: str, state: str = "open") -> None:
    ready = readiness(client)
    assert ready["status"] == "degraded", ready
    assert ready["breakers"][dependency] == state
    assert breaker_gauge(client, dependency) == {"open": 2.0, "half_open": 1.0}[state]


def assert_recovered(client, dependency: str) -> None:
    ready = readiness(client)
    assert ready["status"] == "ready", ready
    assert ready["breakers"][dependency] == "closed"
    assert breaker_gauge(client, dependency) == 0.0


def elapsed(call) -> tuple[float, BaseException | None]:
    started = time.monotonic()
    try:
        call()
    except Exception as error:
        return time.monotonic() - started, error
    return time.monotonic() - started, None


# --- SMTP ----------------------------------------------------------------------------------


@pytest.fixture
def smtp_server() -> Iterator[tuple[int, MailBox]]:
    mailbox = MailBox()
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port, ready_timeout=5.0)
    controller.start()
    try:
        yield port, mailbox
    finally:
        controller.stop()


def mail_to(address: str) -> EmailMessage:
    message = EmailMessage()
    message["To"] = address
    message["Subject"] = "Reminder"
    message.set_content("Water the plants.")
    return message


def test_smtp_refusing_then_hanging_opens_its_breaker_and_it_recovers(client, tmp_path, smtp_server):
    smtp_port, mailbox = smtp_server
    with flaky_port() as smtp:
        mailer = make_mailer(
            make_settings(
                "sqlite://",
                tmp_path,
                smtp_host="127.0.0.1",
                smtp_port=smtp.port,
                smtp_security="none",
                smtp_timeout_seconds=TIMEOUT_SECONDS,
                breaker_failures=FAILURES,
                breaker_reset_seconds=RESET_SECONDS,
            )
        )
        assert readiness(client)["breakers"]["smtp"] == "closed"

        # Refused: the connection is tried twice (nothing was sent), both failures count: open.
        took, error = elapsed(lambda: mailer.deliver(mail_to("a@example.com")))
        assert isinstance(error, ConnectionRefusedError)
        assert took < 5
        assert_degraded_by(client, "smtp")
        # Open: fails at once without connecting (a mail job's attempt fails and is retried later).
        smtp.hang()
        took, error = elapsed(lambda: mailer.deliver(mail_to("a@example.com")))
        assert isinstance(error, DependencyUnavailable) and isinstance(error, OSError)
        assert took < 0.1 and smtp.connections == 0

        # Hung (accepts, never greets): after the reset time one trial, cut by the timeout.
        wait_until(lambda: readiness(client)["breakers"]["smtp"] == "half_open", "smtp half-open", timeout=5)
        assert_degraded_by(client, "smtp", "half_open")
        took, error = elapsed(lambda: mailer.deliver(mail_to("a@example.com")))
        assert isinstance(error, TimeoutError | smtplib.SMTPServerDisconnected), error
        assert took < TIMEOUT_SECONDS * 2 + 1  # one trial only: the breaker opened again at once
        assert smtp.connections == 1
        assert_degraded_by(client, "smtp")

        # The server is back: the next trial closes the breaker; nothing was restarted.
        smtp.forward(smtp_port)
        wait_until(lambda: readiness(client)["breakers"]["smtp"] == "half_open", "smtp half-open", timeout=5)
        mailer.deliver(mail_to("b@example.com"))
        assert len(mailbox.to("b@example.com")) == 1
        assert not mailbox.to("a@example.com")
        assert_recovered(client, "smtp")


def test_a_rejected_recipient_does_not_count_against_the_server(tmp_path):
    class Refusing:
        async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
            return "550 no such user"

    port = free_port()
    controller = Controller(Refusing(), hostname="127.0.0.1", port=port, ready_timeout=5.0)
    controller.start()
    try:
        mailer = make_mailer(
            make_settings(
                "sqlite://",
                tmp_path,
                smtp_host="127.0.0.1",
                smtp_port=port,
                smtp_security="none",
                breaker_failures=1,
            )
        )
        for _ in range(3):
            with pytest.raises(smtplib.SMTPRecipientsRefused):
                mailer.deliver(mail_to("nobody@example.com"))
        assert mailer.breaker.state == "closed"  # the server answered: it is up
    finally:
        controller.stop()


# --- the answer provider -------------------------------------------------------------------


@pytest.fixture
def llm() -> Iterator[FakeLLM]:
    with FakeLLM() as fake:
        yield fake


@pytest.fixture
def flaky_llm(app, llm: FakeLLM, tmp_path) -> Iterator[tuple[FlakyPort, FakeLLM]]:
    """The session app answering with ANSWER_PROVIDER=openai through a flaky port in front of the
    fake OpenAI-compatible server: 1 attempt, a 0.5 s idle timeout, the breaker opening after
    2 failures for 1 s. Put back afterwards."""
    with flaky_port() as port:
        settings = make_settings(
            "sqlite://",
            tmp_path,
            answer_provider="openai",
            llm_base_url=f"http://127.0.0.1:{port.port}/v1",
            llm_api_key=llm.api_key,
            llm_model="fake-model-1",
            llm_connect_timeout_seconds=TIMEOUT_SECONDS,
            llm_timeout_seconds=TIMEOUT_SECONDS,
            llm_max_seconds=5,
            llm_retry_attempts=1,
            llm_breaker_failures=FAILURES,
            llm_breaker_reset_seconds=RESET_SECONDS,
        )
        config = make_conversation_config(settings)
        context = app.app.extensions["charter"].jobs.context
        original = context["conversations"]
        context["conversations"] = config
        try:
            yield port, llm
        finally:
            context["conversations"] = original
            config.provider.chat.close()  # type: ignore[attr-defined]


def test_the_answer_provider_refusing_and_hanging_falls_back_and_recovers(client, account, new_uow, flaky_llm):
    port, llm = flaky_llm
    chatbot_id = make_chatbot(client, account)
    source = knowledge.KnowledgeSource("web_page", uuid.uuid4(), title="Returns", url="https://shop.example/returns")
    index(new_uow, uuid.UUID(chatbot_id), source, RETURNS_PAGE)
    conversation_id = start(client, account, chatbot_id)["id"]

    def answer() -> dict:
        response = ask(client, account, conversation_id, "When are refunds paid?")
        assert response.status_code == 201, response.text  # never a 500: the extractive answer
        return response.json()

    # Refused twice: extractive answers with fallback: true; the breaker opens.
    for _ in range(FAILURES):
        assert answer()["fallback"] is True
    assert_degraded_by(client, "answer_provider")
    port.hang()
    took = time.monotonic()
    assert answer()["fallback"] is True  # failed fast: the breaker is open
    assert time.monotonic() - took < 2 and port.connections == 0

    # Hung: the trial after the reset time is cut by the idle timeout, and falls back.
    wait_until(lambda: readiness(client)["breakers"]["answer_provider"] == "half_open", "half-open", timeout=5)
    took = time.monotonic()
    assert answer()["fallback"] is True
    assert time.monotonic() - took < TIMEOUT_SECONDS * 2 + 2
    assert port.connections == 1
    assert_degraded_by(client, "answer_provider")

    # Back: the next trial answers from the model and closes the breaker.
    port.forward(int(llm.base_url.rsplit(":", 1)[1].split("/")[0]))
    wait_until(lambda: readiness(client)["breakers"]["answer_provider"] == "half_open", "half-open", timeout=5)
    recovered = answer()
    assert (recovered["provider"], recovered["fallback"]) == ("openai", False)
    assert llm.request_count == 1
    assert_recovered(client, "answer_provider")


# --- clamd ---------------------------------------------------------------------------------


@pytest.fixture
def fake_clamd() -> Iterator[int]:
    """A clamd double on 127.0.0.1 speaking INSTREAM: reads the chunks and answers ``stream: OK``."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    stop = threading.Event()

    def serve_one(connection: socket.socket) -> None:
        with connection:
            connection.settimeout(5)
            data = b""
            while not data.endswith(b"\0\0\0\0"):
                chunk = connection.recv(65536)
                if not chunk:
                    return
                data += chunk
            connection.sendall(b"stream: OK\0")

    def accept() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=serve_one, args=(connection,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        listener.close()
        thread.join(timeout=5)


def test_clamd_refusing_and_hanging_holds_documents_and_recovers(client, tmp_path, fake_clamd):
    with flaky_port() as clamd:
        config = make_document_config(
            make_settings(
                "sqlite://",
                tmp_path,
                clamd_url=f"tcp://127.0.0.1:{clamd.port}",
                breaker_failures=FAILURES,
                breaker_reset_seconds=RESET_SECONDS,
            )
        )
        config.scanner.timeout_seconds = TIMEOUT_SECONDS  # type: ignore[union-attr]

        def scan() -> object:
            stream = io.BytesIO(b"plain text, nothing to see")
            return scan_document(stream=stream, scanner=config.scanner, limits=config.scan_limits)

        # Refused: the document job's scan raises ScannerUnavailable (the job is retried, the
        # document stays held in `scanning`); the breaker opens.
        with pytest.raises(ScannerUnavailable):
            scan()
        assert_degraded_by(client, "clamd")
        clamd.hang()
        took, error = elapsed(scan)
        assert isinstance(error, ScannerUnavailable) and took < 0.1 and clamd.connections == 0

        wait_until(lambda: readiness(client)["breakers"]["clamd"] == "half_open", "half-open", timeout=5)
        took, error = elapsed(scan)
        assert isinstance(error, ScannerUnavailable)
        assert took < TIMEOUT_SECONDS * 2 + 1
        assert_degraded_by(client, "clamd")

        clamd.forward(fake_clamd)
        wait_until(lambda: readiness(client)["breakers"]["clamd"] == "half_open", "half-open", timeout=5)
        assert scan().verdict.value == "clean"  # type: ignore[attr-defined]
        assert_recovered(client, "clamd")


# --- per-target families: webhook receivers and crawled sites -------------------------------


def test_a_failing_webhook_receiver_opens_only_its_own_breaker(client):
    from adapters.address_guard import AddressGuard

    family = resilience.join_family("webhook_delivery", failures=FAILURES, reset_seconds=60)
    sender = HttpxSender(AddressGuard(allow_private=True), timeout_seconds=TIMEOUT_SECONDS, breakers=family)
    refusing = f"http://127.0.0.1:{free_port()}/hook"
    try:
        for _ in range(FAILURES):
            assert sender.send(refusing, headers={}, body=b"{}").error  # a failed attempt: retried by schedule
        shortcut = sender.send(refusing, headers={}, body=b"{}")
        assert shortcut.status_code is None and shortcut.error.startswith("circuit open")
        assert family.open_targets() == [refusing.rsplit("/", 1)[0]]
        ready = readiness(client)
        assert ready["status"] == "ready"  # another customer's receiver is not this instance's fault
        assert ready["breakers"]["webhook_delivery"] == "partly_open"
        assert breaker_gauge(client, "webhook_delivery") == 1.0
    finally:
        sender.close()


def test_a_site_that_stops_answering_fails_its_pages_fast_and_the_crawl_goes_on(client):
    from adapters.address_guard import AddressGuard

    family = resilience.join_family("web_fetch", failures=FAILURES, reset_seconds=60)
    fetcher = HttpxFetcher(
        AddressGuard(allow_private=True), info_url="https://charter.example/bot", timeout_seconds=0.5, breakers=family
    )
    with flaky_port() as site:
        site.hang()
        try:
            first = fetcher.fetch_page(f"http://127.0.0.1:{site.port}/a")
            assert first.outcome == "failed" and first.error.startswith("timeout")
            second = fetcher.fetch_page(f"http://127.0.0.1:{site.port}/b")
            assert second.outcome == "failed"
            took = time.monotonic()
            third = fetcher.fetch_page(f"http://127.0.0.1:{site.port}/c")
            assert (third.outcome, third.error) == ("failed", "circuit open: the site failed repeatedly")
            assert time.monotonic() - took < 0.1
            assert site.connections == 2
            assert readiness(client)["breakers"]["web_fetch"] == "partly_open"
        finally:
            fetcher.close()
