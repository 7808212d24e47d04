"""Outgoing mail, the adapters of the `services.notifications.Mailer` port: SMTP (smtplib),
delivered by a background thread so a request never waits on, or reveals by its timing, a mail
server; a log-only mailer for development without SMTP_HOST; an in-memory fake for tests.

Resilience (`adapters.resilience`, the ``smtp`` breaker):

* **Timeouts**: `timeout` seconds to connect and for each SMTP command (a server that accepts
  the connection and never greets fails after that long).
* **Retries**: only the connection (connect, EHLO, STARTTLS, login), at most `connect_attempts`
  attempts, when it is refused, reset or times out: nothing has been sent, so repeating it is
  safe. The message itself is never re-sent here (a server that drops the connection after
  DATA may have accepted it): the job's retry policy decides (`reminders.email`).
* **Breaker**: a server that cannot be reached, times out, drops the connection or answers 4xx
  counts as a failure; a 5xx rejection (a refused recipient, bad credentials) does not (the
  server is up). While open, `deliver` raises `DependencyUnavailable` (a ConnectionError)
  without contacting the server.
* **Fallback**: a mail job fails its attempt and is retried later with backoff (the message
  stays queued as the job); a password-reset mail sent in the background is logged as
  ``mail_failed`` (the user can ask again).
"""

from __future__ import annotations

import smtplib
import socket
import ssl
from concurrent.futures import ThreadPoolExecutor
from email.message import EmailMessage
from email.utils import make_msgid

import structlog

from adapters.resilience import Breaker

log = structlog.get_logger(__name__)


class SmtpMailer:
    """Sends mail through one SMTP server.

    Args:
        host, port: the server.
        security: ``starttls`` (upgrade on port 587), ``tls`` (implicit TLS, port 465) or ``none``.
        username, password: login, when the server wants one.
        sender: the From address.
        timeout: seconds for the connection and each command.
        connect_attempts: attempts at connecting (1: no retry; module docstring).
        breaker: the process's ``smtp`` breaker (`adapters.resilience.join`); None: its own.
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
        connect_attempts: int = 2,
        breaker: Breaker | None = None,
    ) -> None:
        self.host, self.port, self.security = host, port, security
        self.username, self.password = username, password
        self.sender, self.timeout = sender, timeout
        self.connect_attempts = connect_attempts
        self.breaker = breaker or Breaker("smtp")
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="charter-mail")

    def send(self, message: EmailMessage) -> None:
        """Queue `message`; delivery failures are logged (without the message body)."""
        self._stamp(message)
        self._executor.submit(self._deliver, message)

    def deliver(self, message: EmailMessage) -> None:
        """Send `message` now, in the caller's thread (a job: its retries handle a failure).

        Raises:
            adapters.resilience.DependencyUnavailable: the ``smtp`` breaker is open (not contacted).
            OSError, smtplib.SMTPException: the server could not be reached or refused it.
        """
        self._stamp(message)
        client = self.breaker.call(
            self._connect,
            counts=_server_failure,
            retry_on=_not_sent_yet,
            attempts=self.connect_attempts,
            wait_initial=0.2,
            wait_max=2.0,
            success_counts=False,  # recorded once the message is accepted
        )
        with client:
            try:
                client.send_message(message)
            except OSError as error:  # smtplib.SMTPException is an OSError
                if _server_failure(error):
                    self.breaker.failed(error)
                raise
        self.breaker.succeeded()
        log.info("mail_sent", subject=str(message["Subject"]), recipient_domain=_domain(message))

    def _connect(self) -> smtplib.SMTP:
        """A connection ready to send: connected, greeted, upgraded (STARTTLS) and logged in."""
        context = ssl.create_default_context()
        if self.security == "tls":
            client: smtplib.SMTP = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=context)
        else:
            client = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        try:
            if self.security == "starttls":
                client.starttls(context=context)
            if self.username:
                client.login(self.username, self.password or "")
        except BaseException:
            client.close()
            raise
        return client

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


def _server_failure(error: Exception) -> bool:
    """Whether `error` says the mail server is failing (counted by the breaker): unreachable,
    timed out, dropped, or a 4xx (transient) answer; a 5xx rejection is the message's fault."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        return False
    if isinstance(error, smtplib.SMTPResponseException):
        return not 500 <= error.smtp_code < 600
    return isinstance(error, OSError)


def _not_sent_yet(error: Exception) -> bool:
    """Whether a connection attempt may be repeated: refused, reset, dropped or timed out."""
    return isinstance(
        error,
        ConnectionRefusedError
        | ConnectionResetError
        | socket.timeout
        | smtplib.SMTPConnectError
        | smtplib.SMTPServerDisconnected,
    )


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
