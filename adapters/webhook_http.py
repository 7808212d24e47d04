"""Calling URLs on a user's behalf (outbound webhooks): the HTTP sender, the adapter of the
`services.webhooks.WebhookSender` port, and in-memory fakes of it and of the `UrlGuard` port.

The SSRF guard itself lives in `adapters/address_guard.py`, shared with the crawler; its names are
re-exported here for the code that imported them from this module. The sender follows no
redirect (a 3xx is an answer like any other) and connects through `GuardedTransport`, which
resolves and checks in the connection itself, so a name that resolves to a public address when
checked and to a private one a moment later (DNS rebinding) is still refused.

Resilience (`adapters.resilience`, the ``webhook_delivery`` breaker family: one breaker per
receiver, ``scheme://host:port``, so one broken receiver stops nobody else's webhooks):

* **Timeouts**: `timeout_seconds` to connect, write, and for each read; at most
  `max_response_bytes` of the answer read.
* **Retries**: none here. A POST is not repeated inside an attempt: the delivery schedule
  (`services.webhooks`) retries with backoff, and receivers deduplicate by ``webhook-id``.
* **Breaker**: no answer (refused, timed out, dropped) or a 5xx counts as the receiver's failure;
  2xx-4xx as a success (it answered). While a receiver's breaker is open, `send` answers a
  failed `SendResult` at once (``circuit open``) without connecting.
* **Fallback**: that attempt counts as failed, and the delivery is retried by its schedule, then
  dead-lettered (``failed``) after the last attempt, as for any other failure.
"""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass

import httpx

from adapters.address_guard import (
    AddressGuard,
    GuardedTransport,
    IPAddress,
    RefusedAddress,
    Resolver,
    address_rule,
    is_refusal,
    numeric_host,
    system_resolver,
)
from adapters.resilience import BreakerFamily, DependencyUnavailable

__all__ = [
    "AddressGuard",
    "FakeGuard",
    "FakeSender",
    "HttpxSender",
    "IPAddress",
    "RefusedAddress",
    "Resolver",
    "SendResult",
    "address_rule",
    "numeric_host",
    "system_resolver",
]


@dataclass(frozen=True)
class SendResult:
    """What one delivery attempt got: the receiver's status (None when no answer came), how long
    it took (ms), and the error in words when no answer came."""

    status_code: int | None
    duration_ms: int
    error: str | None = None


class HttpxSender:
    """POSTs webhook bodies with httpx: no redirects, no proxies from the environment, a timeout
    for connecting, writing and each read, and at most `max_response_bytes` of the answer read.

    Args:
        guard: the SSRF guard, applied to every connection.
        timeout_seconds: connect, read, write and pool timeout.
        max_response_bytes: the most of the answer's body read before the connection is closed.
        ssl_context: how `https` receivers are verified (default: httpx's, certifi's roots and
            the host name; a test passes one trusting its own CA).
        breakers: the process's ``webhook_delivery`` family (`adapters.resilience.join_family`);
            None: its own.
    """

    def __init__(
        self,
        guard: AddressGuard,
        *,
        timeout_seconds: float = 10.0,
        max_response_bytes: int = 65536,
        ssl_context: ssl.SSLContext | None = None,
        breakers: BreakerFamily | None = None,
    ) -> None:
        self.guard = guard
        self.breakers = breakers or BreakerFamily("webhook_delivery")
        self.max_response_bytes = max_response_bytes
        self.client = httpx.Client(
            transport=GuardedTransport(guard, ssl_context=ssl_context),
            timeout=httpx.Timeout(timeout_seconds),
            follow_redirects=False,
            trust_env=False,
        )

    def send(self, url: str, *, headers: dict[str, str], body: bytes) -> SendResult:
        """POST `body` to `url`. Never raises for the receiver's behaviour: a refusal by the
        guard, a timeout or a connection error is a result with `error` set."""
        started = time.monotonic()
        refused = self.guard.check(url)
        if refused is not None:
            return SendResult(None, 0, f"refused: {refused}")
        breaker = self.breakers.for_url(url)
        try:
            breaker.admit()
        except DependencyUnavailable:
            return SendResult(None, 0, "circuit open: the receiver failed repeatedly; not contacted")
        try:
            with self.client.stream("POST", url, headers=headers, content=body) as response:
                read = 0
                for chunk in response.iter_raw():
                    read += len(chunk)
                    if read >= self.max_response_bytes:
                        break
                status = response.status_code
        except httpx.HTTPError as error:
            if not is_refusal(error):  # the guard's refusal is ours, not the receiver's failure
                breaker.failed(error)
            return SendResult(None, _elapsed_ms(started), f"{type(error).__name__}: {error}"[:500])
        if status >= 500:
            breaker.failed(RuntimeError(f"HTTP {status}"))
        else:
            breaker.succeeded()
        return SendResult(status, _elapsed_ms(started))

    def close(self) -> None:
        """Close the connection pool."""
        self.client.close()


def _elapsed_ms(started: float) -> int:
    return max(0, round((time.monotonic() - started) * 1000))


class FakeGuard:
    """An in-memory `UrlGuard` for tests: refuses the URLs in `refused` (URL → reason)."""

    def __init__(self, refused: dict[str, str] | None = None) -> None:
        self.refused = dict(refused or {})

    def check(self, url: str) -> str | None:
        return self.refused.get(url)


@dataclass
class FakeSender:
    """An in-memory `WebhookSender` for tests: records each request and answers from `answers`
    (a status code, or a `SendResult`), the last one repeated; 200 when empty."""

    answers: list[int | SendResult]
    sent: list[tuple[str, dict[str, str], bytes]]

    def __init__(self, *answers: int | SendResult) -> None:
        self.answers = list(answers)
        self.sent = []

    def send(self, url: str, *, headers: dict[str, str], body: bytes) -> SendResult:
        self.sent.append((url, dict(headers), body))
        answer = (self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]) if self.answers else 200
        return answer if isinstance(answer, SendResult) else SendResult(answer, 5)
