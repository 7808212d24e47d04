"""Fixtures and helpers of the account tests only: the route limits their own apps lift, a
real SMTP server on loopback that collects mail, and the stored password hash. Accounts, logins
and apps of their own come from tests/helpers.py."""

from __future__ import annotations

import email
import email.policy
import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from persistence.accounts.models import User
from tests.helpers import ContractClient, session_factory
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
    # For the account tests' apps, `app_client(..., **NO_ROUTE_LIMITS)`: UNREACHABLE_LIMITS
    # (tests.helpers) leaves these at their defaults, e.g. 3 reset mails an hour.
    "rate_limit_password_reset": "1000000/minute",
    "rate_limit_password_reset_account": "1000000/minute",
    "rate_limit_password_change": "1000000/minute",
}


def stored_password_hash(app: Any, user_id: str) -> str:
    """The password hash stored for the user (read through the app's own session factory)."""
    with session_factory(app)() as db:
        return db.scalars(select(User.password_hash).where(User.id == uuid.UUID(user_id))).one()


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
    """The SMTP server of `smtp_server`: its port on 127.0.0.1 and the mail it has received."""

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
    """The plain-text body of `message` (asserts it has one)."""
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return part.get_content()


def reset_token_from(message: EmailMessage) -> str:
    """The token in the reset link of `message` (asserts there is a link)."""
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
