"""Calling URLs on a user's behalf (outbound webhooks): the SSRF guard and the HTTP sender, the
adapters of the `services.webhooks.UrlGuard` and `WebhookSender` ports, and in-memory fakes.

The guard (API_STYLE, Webhooks: "loopback, private, link-local, multicast and reserved
addresses are refused after resolution and on every redirect"; OWASP SSRF Prevention Cheat
Sheet) resolves the host and refuses the URL when any address it resolves to is not a public
unicast address: loopback, private (RFC 1918, RFC 4193), link-local (incl. 169.254.169.254, the
cloud metadata address), multicast, reserved, unspecified, shared (RFC 6598) and the like, IPv4
and IPv6 alike, an IPv4-mapped IPv6 address judged as the IPv4 address it maps. Numeric hosts are
read the way the C library reads them (``0x7f000001``, ``2130706433``, ``0177.0.0.1`` are all
127.0.0.1), so a spelling cannot slip past. The sender follows no redirect (a 3xx is an answer
like any other) and connects only to the addresses the guard vetted: it resolves and checks in
the connection itself (a network backend of httpcore), so a name that resolves to a public
address when checked and to a private one a moment later (DNS rebinding) is still refused.
`allow_private` (WEBHOOK_ALLOW_PRIVATE_ADDRESSES, for tests) turns the address rule off.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

Resolver = Callable[[str, int], list[str]]
"""Resolves a host name and port to IP address strings (raises OSError when it cannot)."""

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def system_resolver(host: str, port: int) -> list[str]:
    """The operating system's resolver (getaddrinfo), TCP addresses only, in its order."""
    return list(dict.fromkeys(str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)))


class RefusedAddress(OSError):
    """The guard refused to connect; the message names the rule."""


def address_rule(address: IPAddress) -> str | None:
    """The rule that refuses `address` (e.g. ``loopback``), or None for a public unicast address.

    An IPv4-mapped IPv6 address (``::ffff:127.0.0.1``) is judged as the IPv4 address it maps."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    for rule, refused in (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("reserved", address.is_reserved),
        ("private", address.is_private),
    ):
        if refused:
            return rule
    if not address.is_global:  # shared address space (100.64/10), documentation ranges, 6to4 of those …
        return "not globally routable"
    return None


def numeric_host(host: str) -> IPAddress | None:
    """The address a numeric host names, read as the C library would (``inet_aton`` accepts
    ``0x7f000001``, ``2130706433``, ``127.1``), or None for a name."""
    candidate = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return ipaddress.ip_address(candidate.split("%", 1)[0])
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(candidate))
    except OSError:
        return None


def _shown(host: str) -> str:
    """The host as a refusal names it: quoted, at most 100 characters."""
    return repr(host if len(host) <= 100 else host[:99] + "…")


class AddressGuard:
    """The SSRF guard.

    Args:
        allow_private: accept every address (WEBHOOK_ALLOW_PRIVATE_ADDRESSES; tests only).
        resolver: how names are resolved (a test passes a fake; never the network in tests).
    """

    def __init__(self, *, allow_private: bool = False, resolver: Resolver = system_resolver) -> None:
        self.allow_private = allow_private
        self.resolver = resolver

    def addresses(self, host: str, port: int) -> list[str]:
        """The vetted addresses to connect to for `host`: every address it resolves to.

        Raises:
            RefusedAddress: the host does not resolve, or one of its addresses is refused (all are
                checked: a name with a public and a private address is refused).
        """
        literal = numeric_host(host)
        if literal is not None:
            found = [literal]
        else:
            try:
                found = [ipaddress.ip_address(text.split("%", 1)[0]) for text in self.resolver(host, port)]
            except (OSError, UnicodeError, ValueError) as error:
                raise RefusedAddress(f"the host {_shown(host)} does not resolve") from error
            if not found:
                raise RefusedAddress(f"the host {_shown(host)} does not resolve")
        if not self.allow_private:
            for address in found:
                rule = address_rule(address)
                if rule is not None:
                    raise RefusedAddress(f"the host {_shown(host)} resolves to a {rule} address ({address})")
        return [str(address) for address in found]

    def check(self, url: str) -> str | None:
        """Why `url` may not be called (the rule, in words), or None when it may: an http or
        https URL with a host whose every address passes (`addresses`)."""
        try:
            parts = urlsplit(url)
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError as error:
            return f"the URL is malformed ({error})"
        if parts.scheme not in ("http", "https"):
            return "only http and https URLs can be called"
        if not parts.hostname:
            return "the URL has no host"
        try:
            self.addresses(parts.hostname, port)
        except RefusedAddress as error:
            return str(error)
        return None


class _GuardedBackend(httpcore.SyncBackend):
    """httpcore's network backend, connecting only to addresses the guard vetted (so the check
    and the connection see the same resolution)."""

    def __init__(self, guard: AddressGuard) -> None:
        self.guard = guard

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            addresses = self.guard.addresses(host, port)
        except RefusedAddress as error:
            raise httpcore.ConnectError(str(error)) from error
        last: Exception | None = None
        for address in addresses:
            try:
                return super().connect_tcp(address, port, timeout, local_address, socket_options)
            except httpcore.ConnectError as error:
                last = error
        raise last or httpcore.ConnectError(f"no address of {host!r} answered")


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
    """

    def __init__(self, guard: AddressGuard, *, timeout_seconds: float = 10.0, max_response_bytes: int = 65536) -> None:
        self.guard = guard
        self.max_response_bytes = max_response_bytes
        transport = httpx.HTTPTransport(retries=0)
        # httpx builds its httpcore pool with the stock backend; ours vets every connection
        # (`_pool._network_backend` is private to httpx 0.28 / httpcore 1.0: tests hold it).
        transport._pool._network_backend = _GuardedBackend(guard)
        self.client = httpx.Client(
            transport=transport,
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
        try:
            with self.client.stream("POST", url, headers=headers, content=body) as response:
                read = 0
                for chunk in response.iter_raw():
                    read += len(chunk)
                    if read >= self.max_response_bytes:
                        break
                status = response.status_code
        except httpx.HTTPError as error:
            return SendResult(None, _elapsed_ms(started), f"{type(error).__name__}: {error}"[:500])
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
