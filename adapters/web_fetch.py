"""Fetching web pages for the crawler (issue 15, "Website sources: a crawler that behaves"): the
adapter of the `services.crawling.PageFetcher` port, and an in-memory fake of it.

`HttpxFetcher` GETs through `adapters.address_guard.GuardedTransport` (the SSRF guard checks
every connection, so every redirect hop too) and:

* sends our user agent, ``CharterBot/<version> (+<info URL>)`` (`user_agent`), the product token
  that robots.txt groups name (RFC 9309 section 2.2.1);
* follows redirects itself, hop by hop (at most `max_redirects`): each target is normalised,
  checked by the guard and by the caller's `hop_check` (other host, robots.txt), and a target
  seen before in the same chain is a redirect loop;
* accepts HTML (``text/html``, ``application/xhtml+xml``) and PDF (``application/pdf``) pages
  only, judged from the Content-Type before the body is read (a missing or
  ``application/octet-stream`` type is sniffed from the first bytes); anything else is a
  ``type`` skip;
* caps the body while streaming: past the cap (or a Content-Length above it) the connection is
  closed and the page is a ``size`` skip; the cap counts decoded bytes, so a compressed bomb stops
  there too;
* bounds each request in time: httpx's connect/read/write/pool timeouts, and a total time for
  the whole answer (a server trickling bytes cannot hold a worker);
* makes conditional requests (RFC 9110 section 13: ``If-None-Match`` with the stored ETag,
  ``If-Modified-Since`` with the stored Last-Modified); a 304 is ``not_modified``.

It never raises for what a site does: every answer, refusal and network failure is a
`FetchResult`.

Resilience (`adapters.resilience`, the ``web_fetch`` breaker family: one breaker per site,
``scheme://host:port``):

* **Timeouts**: as above (per request, and a total per answer).
* **Retries**: a GET whose connection failed (refused, reset, connect timeout: nothing was
  answered) is tried again once (`connect_attempts`) after a short backoff; GET is safe to
  repeat. A read timeout or an HTTP error status is not retried (the crawl's pacing continues).
* **Breaker**: a connection failure or timeout counts as the site's failure, any HTTP answer as
  a success. While a site's breaker is open its pages fail at once (``circuit open``) without a
  request.
* **Fallback**: the page is recorded as ``failed`` with the error and the crawl goes on with the
  next page (`services.crawling`).
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from importlib.metadata import PackageNotFoundError, version
from urllib.parse import urljoin, urlsplit

import httpx

from adapters.address_guard import AddressGuard, GuardedTransport, is_refusal
from adapters.resilience import BreakerFamily, DependencyUnavailable

HopCheck = Callable[[str], str | None]
"""Whether a redirect target may be followed: None, or the skip reason (``other_host``,
``robots``) that stops the fetch there."""

AGENT_NAME = "CharterBot"
"""Our crawler's product token: the User-Agent's first word, and the name robots.txt groups
address it by (RFC 9309 section 2.2.1)."""
HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
PDF_TYPES = frozenset({"application/pdf", "application/x-pdf"})
SNIFFED_TYPES = frozenset({None, "application/octet-stream", "binary/octet-stream"})
"""Declared types (None: none declared) under which a page's kind is read from its first bytes."""
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_ENCODINGS = frozenset({"identity", "gzip", "x-gzip", "deflate"})
"""Content-Encodings we ask for and read (`_Inflater` bounds each): not br or zstd, which httpx
would decode whole."""


class _Inflater:
    """Decodes a body's Content-Encoding a bounded amount at a time: `feed` never returns more
    than one byte past the room left, whatever the compression ratio (zlib's ``max_length``).

    Args:
        encoding: ``identity``, ``gzip``/``x-gzip`` or ``deflate`` (zlib-wrapped or raw, both
            seen in the wild).
    """

    def __init__(self, encoding: str) -> None:
        self.encoding = encoding
        self._inflate: zlib._Decompress | None = None

    def feed(self, data: bytes, room: int) -> bytes:
        """The decoded bytes of `data`, at most ``room + 1`` of them (one past the room says
        "over the cap"; the rest is dropped)."""
        if self.encoding == "identity":
            return data[: max(room, 0) + 1]
        if self._inflate is None:
            if self.encoding == "deflate":
                zlib_header = len(data) >= 2 and data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0
                self._inflate = zlib.decompressobj(zlib.MAX_WBITS if zlib_header else -zlib.MAX_WBITS)
            else:
                self._inflate = zlib.decompressobj(zlib.MAX_WBITS | 16)
        out = bytearray()
        try:
            while data and len(out) <= room:
                out += self._inflate.decompress(data, room + 1 - len(out))
                data = self._inflate.unconsumed_tail
        except zlib.error:
            return bytes(out)  # a corrupt stream ends the body where it breaks
        return bytes(out)


def charter_version() -> str:
    """The installed version of Charter (``0.0.0`` when it is not installed as a package)."""
    try:
        return version("charter")
    except PackageNotFoundError:  # pragma: no cover - always installed (pip install -e .)
        return "0.0.0"


def user_agent(info_url: str) -> str:
    """Our crawler's User-Agent: ``CharterBot/<version> (+<info_url>)``, the form search engines
    use (a product token, then a URL where site owners read what the bot does).

    Args:
        info_url: an absolute URL of the page that documents the crawler.
    """
    return f"{AGENT_NAME}/{charter_version()} (+{info_url})"


@dataclass(frozen=True)
class FetchResult:
    """What fetching one URL got.

    Attributes:
        url: the URL asked for.
        final_url: the URL that answered (after redirects), or the redirect target that stopped it.
        outcome: ``ok`` (a body of an accepted kind), ``not_modified`` (304 to a conditional
            request), ``skipped`` (see `skip_reason`) or ``failed`` (see `status_code`, `error`).
        status_code: the last HTTP status received, None when no answer came.
        kind: ``html`` or ``pdf`` for a page (`fetch_page`), None otherwise.
        content_type: the answer's media type, lower-case, without parameters.
        body: the (decoded) body of an ``ok`` answer, empty otherwise.
        etag: the answer's ETag header, for the next conditional request.
        last_modified: the answer's Last-Modified header, likewise.
        x_robots_tag: the answer's X-Robots-Tag header (``noindex``, ``nofollow``, …), if any.
        skip_reason: ``ssrf``, ``other_host``, ``robots``, ``type`` or ``size`` when skipped.
        error: what went wrong, in words (failed, and skipped ones' details).
        redirects: the redirect targets followed, in order.
        truncated: the body was cut at the cap (`fetch_file` with ``truncate=True``).
    """

    url: str
    final_url: str
    outcome: str
    status_code: int | None = None
    kind: str | None = None
    content_type: str | None = None
    body: bytes = b""
    etag: str | None = None
    last_modified: str | None = None
    x_robots_tag: str | None = None
    skip_reason: str | None = None
    error: str | None = None
    redirects: tuple[str, ...] = ()
    truncated: bool = False


def _media_type(value: str | None) -> str | None:
    if not value:
        return None
    return value.split(";", 1)[0].strip().lower() or None


def _page_kind(media_type: str | None, first_bytes: bytes) -> str | None:
    """``html``, ``pdf`` or None, from the declared type (sniffing only a missing or generic one)."""
    if media_type in HTML_TYPES:
        return "html"
    if media_type in PDF_TYPES:
        return "pdf"
    if media_type in (None, "application/octet-stream", "binary/octet-stream"):
        head = first_bytes.lstrip()[:64].lower()
        if head.startswith(b"%pdf-"):
            return "pdf"
        if head.startswith((b"<!doctype html", b"<html")):
            return "html"
    return None


def _redirect_target(current: str, location: str) -> str | None:
    """The absolute http(s) URL a Location names, without its fragment, or None."""
    try:
        target = urljoin(current, location.strip())
        parts = urlsplit(target)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return parts._replace(fragment="").geturl()


class HttpxFetcher:
    """The crawler's HTTP client (module docstring).

    Args:
        guard: the SSRF guard applied to every connection (so every redirect hop).
        info_url: the page documenting the crawler, named in the User-Agent (`user_agent`).
        timeout_seconds: httpx's connect, read, write and pool timeout for each request.
        total_seconds: the most one request may take, headers and body (a trickling server).
        max_redirects: redirect hops followed at most before the fetch fails.
        max_html_bytes: an HTML page's cap (decoded bytes).
        max_pdf_bytes: a PDF's cap.
        connect_attempts: attempts at a request whose connection failed (1: no retry).
        breakers: the process's ``web_fetch`` family (`adapters.resilience.join_family`); None:
            its own.
    """

    def __init__(
        self,
        guard: AddressGuard,
        *,
        info_url: str,
        timeout_seconds: float = 10.0,
        total_seconds: float = 30.0,
        max_redirects: int = 10,
        max_html_bytes: int = 2 * 1024 * 1024,
        max_pdf_bytes: int = 20 * 1024 * 1024,
        connect_attempts: int = 2,
        breakers: BreakerFamily | None = None,
    ) -> None:
        self.guard = guard
        self.connect_attempts = connect_attempts
        self.breakers = breakers or BreakerFamily("web_fetch")
        self.user_agent = user_agent(info_url)
        self.total_seconds = total_seconds
        self.max_redirects = max_redirects
        self.max_bytes = {"html": max_html_bytes, "pdf": max_pdf_bytes}
        self.client = httpx.Client(
            transport=GuardedTransport(guard),
            timeout=httpx.Timeout(timeout_seconds),
            follow_redirects=False,
            trust_env=False,
            headers={"User-Agent": self.user_agent, "Accept-Encoding": "gzip, deflate"},
        )

    def fetch_page(
        self,
        url: str,
        *,
        etag: str | None = None,
        last_modified: str | None = None,
        hop_check: HopCheck | None = None,
    ) -> FetchResult:
        """GET a page (HTML or PDF), following redirects (module docstring).

        Args:
            url: an absolute http(s) URL.
            etag: the ETag stored from the last fetch (sent as If-None-Match).
            last_modified: the Last-Modified stored from the last fetch (If-Modified-Since).
            hop_check: judges each redirect target (None: every target the guard accepts).

        Returns:
            A `FetchResult`; never raises for the site's behaviour.
        """
        headers = {"Accept": "text/html,application/xhtml+xml,application/pdf;q=0.9,*/*;q=0.1"}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        return self._fetch(url, headers=headers, hop_check=hop_check, page=True, max_bytes=0, truncate=False)

    def fetch_file(
        self, url: str, *, max_bytes: int, hop_check: HopCheck | None = None, truncate: bool = False
    ) -> FetchResult:
        """GET a file of any type (robots.txt, a sitemap), following redirects.

        Args:
            url: an absolute http(s) URL.
            max_bytes: the cap on the decoded body.
            hop_check: judges each redirect target (None: every target the guard accepts).
            truncate: past the cap, keep the first `max_bytes` (``ok``, `truncated` set) instead
                of a ``size`` skip (robots.txt: RFC 9309 section 2.5 parses the first 500 KiB).
        """
        return self._fetch(url, headers={}, hop_check=hop_check, page=False, max_bytes=max_bytes, truncate=truncate)

    def _fetch(
        self,
        url: str,
        *,
        headers: Mapping[str, str],
        hop_check: HopCheck | None,
        page: bool,
        max_bytes: int,
        truncate: bool,
    ) -> FetchResult:
        current = url
        chain = [url]
        redirects: list[str] = []
        for _hop in range(self.max_redirects + 1):
            refused = self.guard.check(current)
            if refused is not None:
                return FetchResult(
                    url, current, "skipped", skip_reason="ssrf", error=refused, redirects=tuple(redirects)
                )
            answer = self._one(url, current, headers=headers, page=page, max_bytes=max_bytes, truncate=truncate)
            if isinstance(answer, FetchResult):
                return _with_redirects(answer, redirects)
            status, location = answer
            target = _redirect_target(current, location) if location else None
            if target is None:
                return FetchResult(
                    url,
                    current,
                    "failed",
                    status,
                    error="a redirect without a usable Location",
                    redirects=tuple(redirects),
                )
            if target in chain:
                return FetchResult(url, target, "failed", status, error="redirect loop", redirects=(*redirects, target))
            redirects.append(target)
            chain.append(target)
            if hop_check is not None:
                reason = hop_check(target)
                if reason is not None:
                    detail = f"redirected to {target}"
                    return FetchResult(
                        url, target, "skipped", status, skip_reason=reason, error=detail, redirects=tuple(redirects)
                    )
            current = target
        return FetchResult(
            url, current, "failed", error=f"more than {self.max_redirects} redirects", redirects=tuple(redirects)
        )

    def _one(
        self, url: str, current: str, *, headers: Mapping[str, str], page: bool, max_bytes: int, truncate: bool
    ) -> FetchResult | tuple[int, str | None]:
        """One request through the site's breaker, once more when its connection failed."""
        breaker = self.breakers.for_url(current)
        answer: FetchResult | tuple[int, str | None] = FetchResult(url, current, "failed")
        for attempt in range(max(1, self.connect_attempts)):
            try:
                breaker.admit()
            except DependencyUnavailable:
                return FetchResult(url, current, "failed", error="circuit open: the site failed repeatedly")
            if attempt:
                time.sleep(0.2 * attempt)
            answer, failure = self._request(
                url, current, headers=headers, page=page, max_bytes=max_bytes, truncate=truncate
            )
            if failure is None:
                breaker.succeeded()
                return answer
            breaker.failed(failure)
            if not isinstance(failure, httpx.ConnectError | httpx.ConnectTimeout):
                return answer
        return answer

    def _request(
        self, url: str, current: str, *, headers: Mapping[str, str], page: bool, max_bytes: int, truncate: bool
    ) -> tuple[FetchResult | tuple[int, str | None], httpx.HTTPError | None]:
        """One request: a final `FetchResult`, or (status, Location) of a redirect to follow; and
        the network failure that ended it, if any (the guard's refusal is none)."""
        started = time.monotonic()
        try:
            with self.client.stream("GET", current, headers=dict(headers)) as response:
                status = response.status_code
                if status in REDIRECT_STATUSES:
                    return (status, response.headers.get("location")), None
                answered = FetchResult(
                    url,
                    current,
                    "ok",
                    status,
                    content_type=_media_type(response.headers.get("content-type")),
                    etag=response.headers.get("etag"),
                    last_modified=response.headers.get("last-modified"),
                    x_robots_tag=response.headers.get("x-robots-tag"),
                )
                if status == 304:
                    return replace(answered, outcome="not_modified"), None
                if not 200 <= status < 300:
                    return replace(answered, outcome="failed", error=f"HTTP {status}"), None
                body = self._body(answered, response, started, page=page, max_bytes=max_bytes, truncate=truncate)
                return body, None
        except httpx.HTTPError as error:
            if is_refusal(error):
                return FetchResult(url, current, "skipped", skip_reason="ssrf", error=str(error)[:500]), None
            kind = "timeout" if isinstance(error, httpx.TimeoutException) else type(error).__name__
            return FetchResult(url, current, "failed", error=f"{kind}: {error}"[:500]), error

    def _body(
        self,
        answered: FetchResult,
        response: httpx.Response,
        started: float,
        *,
        page: bool,
        max_bytes: int,
        truncate: bool,
    ) -> FetchResult:
        """Read an answer's body under the caps: a page's kind is decided from its declared type
        before any byte is read (from the first bytes only when the type is missing or generic),
        and decompression stops at the cap (`_Inflater`), so neither a huge body nor a
        compression bomb is ever held whole."""
        encoding = response.headers.get("content-encoding", "identity").strip().lower() or "identity"
        if encoding not in _ENCODINGS:
            return replace(answered, outcome="failed", error=f"unsupported content encoding {encoding!r}")
        cap = max_bytes
        kind: str | None = None
        if page:
            if answered.content_type not in SNIFFED_TYPES:
                kind = _page_kind(answered.content_type, b"")
                if kind is None:
                    return replace(
                        answered, outcome="skipped", skip_reason="type", error=f"content type {answered.content_type}"
                    )
                cap = self.max_bytes[kind]
            else:
                cap = max(self.max_bytes.values())
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > cap and not truncate and encoding == "identity":
            return replace(
                answered, outcome="skipped", kind=kind, skip_reason="size", error=f"Content-Length {declared} > {cap}"
            )
        inflater = _Inflater(encoding)
        body = bytearray()
        for chunk in response.iter_raw():
            if time.monotonic() - started > self.total_seconds:
                return replace(answered, outcome="failed", error=f"timeout: more than {self.total_seconds:g} s")
            body += inflater.feed(chunk, cap - len(body))
            if page and kind is None and len(body) >= 64:
                kind = _page_kind(answered.content_type, bytes(body[:64]))
                if kind is None:
                    return replace(answered, outcome="skipped", skip_reason="type", error="neither HTML nor PDF")
                cap = self.max_bytes[kind]
            if len(body) > cap:
                break
        if page and kind is None:
            kind = _page_kind(answered.content_type, bytes(body))
            if kind is None:
                return replace(answered, outcome="skipped", skip_reason="type", error="neither HTML nor PDF")
            cap = self.max_bytes[kind]
        answered = replace(answered, kind=kind)
        if len(body) > cap:
            if truncate:
                return replace(answered, body=bytes(body[:cap]), truncated=True)
            return replace(answered, outcome="skipped", skip_reason="size", error=f"more than {cap} bytes")
        return replace(answered, body=bytes(body))

    def close(self) -> None:
        """Close the connection pool."""
        self.client.close()


def _with_redirects(result: FetchResult, redirects: list[str]) -> FetchResult:
    return replace(result, redirects=tuple(redirects)) if redirects else result


# --- the fake -----------------------------------------------------------------------------


@dataclass(frozen=True)
class FakePage:
    """One URL of a `FakeFetcher`'s site: what it answers.

    Attributes:
        body: the body (str is encoded as UTF-8).
        status: the HTTP status.
        content_type: the media type answered.
        location: a redirect's target (with a 3xx `status`).
        etag: the ETag answered; a request whose If-None-Match equals it gets 304.
        last_modified: the Last-Modified answered.
        x_robots_tag: the X-Robots-Tag answered.
    """

    body: bytes | str = b""
    status: int = 200
    content_type: str = "text/html"
    location: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    x_robots_tag: str | None = None


@dataclass
class FakeFetcher:
    """An in-memory `PageFetcher` for tests: answers from `site` (URL → `FakePage`; an unknown
    URL answers 404), follows redirects with the same rules as `HttpxFetcher` (loops, hop
    checks, at most `max_redirects`), applies the same kinds and caps, refuses the URLs in
    `refused` as the guard would (``ssrf``), and records every request in `requests`.
    """

    site: dict[str, FakePage]
    refused: set[str] = field(default_factory=set)
    max_redirects: int = 10
    max_page_bytes: int = 2 * 1024 * 1024
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def fetch_page(
        self,
        url: str,
        *,
        etag: str | None = None,
        last_modified: str | None = None,
        hop_check: HopCheck | None = None,
    ) -> FetchResult:
        headers = {k: v for k, v in (("If-None-Match", etag), ("If-Modified-Since", last_modified)) if v}
        return self._fetch(url, headers, hop_check, page=True, max_bytes=self.max_page_bytes, truncate=False)

    def fetch_file(
        self, url: str, *, max_bytes: int, hop_check: HopCheck | None = None, truncate: bool = False
    ) -> FetchResult:
        return self._fetch(url, {}, hop_check, page=False, max_bytes=max_bytes, truncate=truncate)

    def _fetch(
        self,
        url: str,
        headers: dict[str, str],
        hop_check: HopCheck | None,
        *,
        page: bool,
        max_bytes: int,
        truncate: bool,
    ) -> FetchResult:
        current, chain = url, [url]
        redirects: list[str] = []
        for _hop in range(self.max_redirects + 1):
            if current in self.refused:
                return FetchResult(
                    url, current, "skipped", skip_reason="ssrf", error="refused", redirects=tuple(redirects)
                )
            self.requests.append((current, dict(headers)))
            answer = self.site.get(current, FakePage(b"not found", status=404, content_type="text/plain"))
            if answer.status in REDIRECT_STATUSES and answer.location:
                target = urljoin(current, answer.location)
                if target in chain:
                    return FetchResult(
                        url, target, "failed", answer.status, error="redirect loop", redirects=tuple(redirects)
                    )
                redirects.append(target)
                chain.append(target)
                reason = hop_check(target) if hop_check is not None else None
                if reason is not None:
                    return FetchResult(
                        url, target, "skipped", answer.status, skip_reason=reason, redirects=tuple(redirects)
                    )
                current = target
                continue
            body = answer.body.encode() if isinstance(answer.body, str) else answer.body
            answered = FetchResult(
                url,
                current,
                "ok",
                answer.status,
                content_type=answer.content_type,
                etag=answer.etag,
                last_modified=answer.last_modified,
                x_robots_tag=answer.x_robots_tag,
                redirects=tuple(redirects),
            )
            if answer.etag and headers.get("If-None-Match") == answer.etag:
                return replace(answered, outcome="not_modified", status_code=304)
            if not 200 <= answer.status < 300:
                return replace(answered, outcome="failed", error=f"HTTP {answer.status}")
            if page:
                kind = _page_kind(answer.content_type, body)
                if kind is None:
                    return replace(answered, outcome="skipped", skip_reason="type")
                answered = replace(answered, kind=kind)
            if len(body) > max_bytes:
                if truncate:
                    return replace(answered, body=body[:max_bytes], truncated=True)
                return replace(answered, outcome="skipped", skip_reason="size")
            return replace(answered, body=body)
        return FetchResult(
            url, current, "failed", error=f"more than {self.max_redirects} redirects", redirects=tuple(redirects)
        )
