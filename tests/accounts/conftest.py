"""Helpers for the account tests: apps with settings of their own on the session's database,
a real SMTP server on loopback that collects mail, and direct reads of the stored rows."""

from __future__ import annotations

import contextlib
import email
import email.policy
import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select
from starlette.testclient import TestClient

from persistence.accounts.models import User
from server.app import create_app
from tests.conftest import PASSWORD, TEST_SECRET, ContractClient, make_settings
from tests.processes import free_port

MAIL_FROM = "Charter Tests <no-reply@charter.test>"
RESET_URL = "https://app.example/reset?token={token}"
RESET_LINK = re.compile(r"https://app\.example/reset\?token=([A-Za-z0-9_-]+)")
MAIL_WAIT_SECONDS = 5.0
STRONG_PASSWORD = "velvet cactus orbit lantern"
OTHER_STRONG_PASSWORD = "marmalade quietly juggles thunder"
CHROME_ON_MAC = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"
)

NO_ROUTE_LIMITS: dict[str, Any] = {
    # UNREACHABLE_LIMITS (tests.conftest) leaves these at their defaults, e.g. 3 reset mails an hour.
    "rate_limit_password_reset": "1000000/minute",
    "rate_limit_password_reset_account": "1000000/minute",
    "rate_limit_password_change": "1000000/minute",
}


def session_id_of(access_token: str) -> str:
    """The session (`sid`) an access token names."""
    return jwt.decode(access_token, TEST_SECRET, algorithms=["HS256"], audience="charter-api")["sid"]


def bearer(access_token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {access_token}"}


def unique_email(prefix: str = "acct") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}@example.com"


@dataclass
class Login:
    """One session's tokens."""

    access_token: str
    refresh_token: str

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.access_token)

    @property
    def session_id(self) -> str:
        return session_id_of(self.access_token)


def register(
    client: ContractClient, email: str, password: str = PASSWORD, display_name: str = "Test User"
) -> dict[str, Any]:
    response = client.post(
        "/api/v1/auth/register", json={"email": email, "password": password, "display_name": display_name}
    )
    assert response.status_code == 201, response.text
    return response.json()


def login(client: ContractClient, email: str, password: str = PASSWORD, **kwargs: Any) -> Login:
    response = client.post("/api/v1/auth/login", json={"email": email, "password": password}, **kwargs)
    assert response.status_code == 200, response.text
    body = response.json()
    return Login(body["access_token"], body["refresh_token"])


def session_factory(app: Any) -> Any:
    """The app's own SQLAlchemy session factory (same database as every app of the session)."""
    return app.app.extensions["charter"].session_factory


def stored_password_hash(app: Any, user_id: str) -> str:
    with session_factory(app)() as db:
        return db.scalars(select(User.password_hash).where(User.id == uuid.UUID(user_id))).one()


@contextlib.contextmanager
def app_client(database_url: str, var_dir: Path, openapi: Any, **overrides: Any) -> Iterator[tuple[Any, Any]]:
    """An app of its own (settings `overrides`) on the session's database, with a contract client."""
    app = create_app(make_settings(database_url, var_dir, **{**NO_ROUTE_LIMITS, **overrides}))
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield app, ContractClient(test_client, openapi)


class MailBox:
    """An aiosmtpd handler that keeps every message it is given."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._messages: list[tuple[Any, EmailMessage]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.original_content or envelope.content, policy=email.policy.default)
        with self._lock:
            self._messages.append((envelope, message))
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[tuple[Any, EmailMessage]]:
        """Every (envelope, message) delivered to `address` so far."""
        with self._lock:
            return [(env, msg) for env, msg in self._messages if address in env.rcpt_tos]

    def wait_for(self, address: str, count: int = 1, timeout: float = MAIL_WAIT_SECONDS) -> list[EmailMessage]:
        """The messages for `address`, once there are `count` of them (bounded wait)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.to(address)
            if len(found) >= count:
                return [message for _, message in found]
            time.sleep(0.02)
        pytest.fail(f"{count} mail(s) for {address} did not arrive within {timeout}s (got {len(self.to(address))})")


@dataclass
class SmtpServer:
    port: int
    mailbox: MailBox

    @property
    def settings(self) -> dict[str, Any]:
        """App settings that send mail to this server."""
        return {
            "smtp_host": "127.0.0.1",
            "smtp_port": self.port,
            "smtp_security": "none",
            "smtp_timeout_seconds": 5.0,
            "mail_from": MAIL_FROM,
            "password_reset_url": RESET_URL,
        }


@pytest.fixture(scope="module")
def smtp_server() -> Iterator[SmtpServer]:
    """A real SMTP server on 127.0.0.1 (aiosmtpd), stopped at the end of the module."""
    mailbox = MailBox()
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port, ready_timeout=5.0)
    controller.start()
    try:
        yield SmtpServer(port, mailbox)
    finally:
        controller.stop()


def body_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return part.get_content()


def reset_token_from(message: EmailMessage) -> str:
    match = RESET_LINK.search(body_of(message))
    assert match, body_of(message)
    return match.group(1)


def ask_reset_token(client: ContractClient, smtp: SmtpServer, email_address: str) -> str:
    """Ask for a reset mail and read the token from the link in it (the newest mail)."""
    already = len(smtp.mailbox.to(email_address))
    response = client.post("/api/v1/auth/password-reset", json={"email": email_address})
    assert response.status_code == 202, response.text
    messages = smtp.mailbox.wait_for(email_address, already + 1)
    return reset_token_from(messages[-1])
