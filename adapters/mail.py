"""Outgoing mail, the adapters of the `services.notifications.Mailer` port: SMTP (smtplib),
delivered by a background thread so a request never waits on, or reveals by its timing, a mail
server; a log-only mailer for development without SMTP_HOST; an in-memory fake for tests."""

from __future__ import annotations

import smtplib
import ssl
from concurrent.futures import ThreadPoolExecutor
from email.message import EmailMessage
from email.utils import make_msgid

import structlog

log = structlog.get_logger(__name__)


class SmtpMailer:
    """Sends mail through one SMTP server.

    Args:
        host, port: the server.
        security: ``starttls`` (upgrade on port 587), ``tls`` (implicit TLS, port 465) or ``none``.
        username, password: login, when the server wants one.
        sender: the From address.
        timeout: seconds for the connection and each command.
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        security: str,
        username: str | None,
        password: str | None,
        sender: str,
        timeout: float,
    ) -> None:
        self.host, self.port, self.security = host, port, security
        self.username, self.password = username, password
        self.sender, self.timeout = sender, timeout
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="charter-mail")

    def send(self, message: EmailMessage) -> None:
        """Queue `message`; delivery failures are logged (without the message body)."""
        self._stamp(message)
        self._executor.submit(self._deliver, message)

    def deliver(self, message: EmailMessage) -> None:
        """Send `message` now, in the caller's thread (a job: its retries handle a failure).

        Raises:
            OSError, smtplib.SMTPException: the server could not be reached or refused it.
        """
        self._stamp(message)
        context = ssl.create_default_context()
        if self.security == "tls":
            client: smtplib.SMTP = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=context)
        else:
            client = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        with client:
            if self.security == "starttls":
                client.starttls(context=context)
            if self.username:
                client.login(self.username, self.password or "")
            client.send_message(message)
        log.info("mail_sent", subject=str(message["Subject"]), recipient_domain=_domain(message))

    def _stamp(self, message: EmailMessage) -> None:
        if "From" not in message:
            message["From"] = self.sender
        if "Message-ID" not in message:
            message["Message-ID"] = make_msgid(domain="charter.local")

    def _deliver(self, message: EmailMessage) -> None:
        recipient_domain = _domain(message)
        try:
            self.deliver(message)
        except (OSError, smtplib.SMTPException) as error:
            log.error(
                "mail_failed",
                subject=str(message["Subject"]),
                recipient_domain=recipient_domain,
                error=type(error).__name__,
            )

    def close(self) -> None:
        """Wait for queued mail to be delivered (or fail)."""
        self._executor.shutdown(wait=True)


def _domain(message: EmailMessage) -> str:
    return str(message["To"]).rsplit("@", 1)[-1]


class LogMailer:
    """For development without SMTP_HOST: logs that a mail was not sent, never its content
    (it would hold a reset link)."""

    def send(self, message: EmailMessage) -> None:
        log.warning("mail_not_sent", subject=str(message["Subject"]), reason="SMTP_HOST is not set")

    def deliver(self, message: EmailMessage) -> None:
        """The same as `send`: nothing is sent, so nothing can fail."""
        self.send(message)


class MemoryMailer:
    """The in-memory fake of `services.notifications.Mailer`, for service tests: keeps every
    message it is given, in order, in `sent`."""

    def __init__(self) -> None:
        self.sent: list[EmailMessage] = []

    def send(self, message: EmailMessage) -> None:
        """Keep `message`."""
        self.sent.append(message)

    def deliver(self, message: EmailMessage) -> None:
        """Keep `message` (as `send`)."""
        self.sent.append(message)
