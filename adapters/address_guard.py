"""The SSRF guard: which addresses the server may connect to on a user's behalf, shared by every
adapter that calls a URL a user gave (outbound webhooks, `adapters/webhook_http.py`; the website
crawler, `adapters/web_fetch.py`).

The rule (API_STYLE, Webhooks: "loopback, private, link-local, multicast and reserved addresses
are refused after resolution and on every redirect"; issue 15, "SSRF guard (the same component as
webhooks')"; OWASP SSRF Prevention Cheat Sheet): the host is resolved and the URL refused when
any address it resolves to is not a public unicast address: loopback, private (RFC 1918,
RFC 4193), link-local (incl. 169.254.169.254, the cloud metadata address), multicast, reserved,
unspecified, shared (RFC 6598) and the like, IPv4 and IPv6 alike, an IPv4-mapped IPv6 address
judged as the IPv4 address it maps. Numeric hosts are read the way the C library reads them
(``0x7f000001``, ``2130706433``, ``0177.0.0.1`` are all 127.0.0.1), so a spelling cannot slip past.

Checking a URL before a request is not enough: a name can resolve to a public address when
checked and to a private one a moment later (DNS rebinding). `GuardedTransport` therefore
resolves and checks inside the connection itself, through a network backend of httpcore, and
connects only to the addresses it vetted. It is built from public API only: httpcore documents
its network backends and ``ConnectionPool(network_backend=...)`` (encode/httpcore#699), and httpx
documents ``httpx.BaseTransport`` for custom transports; httpx's own `HTTPTransport` takes no
backend (encode/httpx#3749 proposes one, open), so the transport here is the small adapter
between the two that `HTTPTransport` itself is.

`allow_private` turns the address rule off (WEBHOOK_ALLOW_PRIVATE_ADDRESSES,
CRAWLER_ALLOW_PRIVATE_ADDRESSES: tests that serve on 127.0.0.1).
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import ssl
from collections.abc import Callable, Iterable, Iterator
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
        allow_private: accept every address (WEBHOOK_ALLOW_PRIVATE_ADDRESSES,
            CRAWLER_ALLOW_PRIVATE_ADDRESSES; tests only).
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


class RefusedConnection(httpcore.ConnectError):
    """The guarded backend refused to connect (the message names the rule). httpx reports it as
    an `httpx.ConnectError` whose ``__cause__`` is this, so a caller can tell a refusal from a
    network failure (`is_refusal`)."""


class GuardedBackend(httpcore.SyncBackend):
    """httpcore's synchronous network backend, connecting only to addresses the guard vetted, so
    the check and the connection see the same resolution (no DNS rebinding window).

    Args:
        guard: the guard that resolves and vets each host when a connection opens.
    """

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
        """Resolve `host`, vet every address, and connect to the first that answers.

        Raises:
            RefusedConnection: the guard refused the host (an `httpcore.ConnectError`).
            httpcore.ConnectError: no vetted address answered.
        """
        try:
            addresses = self.guard.addresses(host, port)
        except RefusedAddress as error:
            raise RefusedConnection(str(error)) from error
        last: Exception | None = None
        for address in addresses:
            try:
                return super().connect_tcp(address, port, timeout, local_address, socket_options)
            except httpcore.ConnectError as error:
                last = error
        raise last or httpcore.ConnectError(f"no address of {host!r} answered")

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        """Never: a guarded client talks TCP to vetted addresses only."""
        raise RefusedConnection("unix sockets are not reachable through the guard")


_EXCEPTIONS: tuple[tuple[type[Exception], type[httpx.HTTPError]], ...] = (
    # Most specific first: httpcore's hierarchy mirrors httpx's (httpx/_transports/default.py).
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
)


@contextlib.contextmanager
def _httpx_errors() -> Iterator[None]:
    """Re-raise httpcore's exceptions as httpx's, the original kept as ``__cause__``."""
    try:
        yield
    except Exception as error:
        for theirs, ours in _EXCEPTIONS:
            if isinstance(error, theirs):
                raise ours(str(error)) from error
        raise


class _ResponseStream(httpx.SyncByteStream):
    def __init__(self, stream: Iterable[bytes]) -> None:
        self._stream = stream

    def __iter__(self) -> Iterator[bytes]:
        with _httpx_errors():
            yield from self._stream

    def close(self) -> None:
        close = getattr(self._stream, "close", None)
        if close is not None:
            close()


class GuardedTransport(httpx.BaseTransport):
    """An httpx transport whose every connection goes through the guard (`GuardedBackend`):
    HTTP/1.1, no proxy, no retries, certificates verified against certifi's store.

    Args:
        guard: the SSRF guard applied when each connection opens.
        max_connections: the pool's size (one per host is the crawler's politeness anyway).
        ssl_context: a TLS context (default: httpx's, verifying certificates).
    """

    def __init__(
        self, guard: AddressGuard, *, max_connections: int = 10, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self.guard = guard
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context or httpx.create_ssl_context(),
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=5.0,
            http1=True,
            http2=False,
            retries=0,
            network_backend=GuardedBackend(guard),
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send `request` through the guarded pool (httpx's transport API).

        Raises:
            httpx.ConnectError: the guard refused the host (``__cause__`` a `RefusedConnection`)
                or nothing answered; other `httpx.TransportError`s as httpx raises them.
        """
        if not isinstance(request.stream, httpx.SyncByteStream):  # pragma: no cover - sync clients only
            raise TypeError("GuardedTransport serves synchronous clients only")
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _httpx_errors():
            response = self._pool.handle_request(core_request)
        if not isinstance(response.stream, Iterable):  # pragma: no cover - httpcore's sync pool streams bytes
            raise TypeError("unexpected response stream")
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseStream(response.stream),
            extensions=response.extensions,
        )

    def close(self) -> None:
        """Close every pooled connection."""
        self._pool.close()


def is_refusal(error: BaseException) -> bool:
    """Whether `error` (an httpx error) is the guard's refusal rather than a network failure."""
    seen: BaseException | None = error
    for _ in range(5):
        if seen is None:
            return False
        if isinstance(seen, RefusedConnection | RefusedAddress):
            return True
        seen = seen.__cause__
    return False
