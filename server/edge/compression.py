"""Response compression: gzip for text answers of 1 KiB or more, when the client accepts it.

The work is starlette's `GZipMiddleware` responder (one compressor per answer, large chunks
compressed in a worker thread, `Vary: Accept-Encoding`, `Content-Length` rewritten, 206 and
answers already carrying `Content-Encoding` left alone). This layer decides *what* may be
compressed, more narrowly than starlette's deny-list:

- only the media types in `COMPRESSIBLE` (JSON, problem+json, YAML, HTML, plain text: the
  contract, the reference page, /metrics); everything else, including what is compressed
  already (images, archives, PDF) and any type added later, goes out as it is;
- never an event stream (`text/event-stream`): each event must reach the client when it is
  written, not when a compressor's buffer fills (API_STYLE "Streams"); nor an answer with
  `Cache-Control: no-transform` (RFC 9111 section 5.2.2.6);
- never an answer carrying an `ETag`. Our ETags are strong (`"3"`, the resource's version) and
  the contract fixes their form (`^"[0-9]+"$`); RFC 9110 section 8.8.3 gives a strong validator
  to one representation only, and a gzip body is another representation. Weakening the tag
  (`W/"3"`, nginx's way) would break `If-Match`, which compares strongly (every conditional
  write would fail with 412); suffixing it (`"3-gzip"`, Apache's way) breaks the contract's
  pattern. Versioned single resources are small anyway; the large answers (lists, the
  contract) carry no ETag;
- `Accept-Encoding` is parsed (RFC 9110 section 12.5.3): `gzip;q=0` refuses gzip, `*` accepts it;
- a HEAD answer is never compressed (it has no body); it carries `Vary: Accept-Encoding`
  like the GET would when that is compressible, but the identity `Content-Length`.

brotli is not offered: the one ASGI middleware for it (`brotli-asgi` 1.7) has no content-type
filter (it would compress event streams), does not skip 206 answers, compresses in the event
loop whatever the size, and matches `br` as a substring of `Accept-Encoding`; wrapping it as
we wrap starlette's would mean re-doing most of it. README "Compression".
"""

from __future__ import annotations

from starlette.datastructures import Headers, MutableHeaders
from starlette.middleware.gzip import GZipResponder
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MINIMUM_BYTES = 1024
"""Answers shorter than this go out as they are: the gzip header and the CPU are not worth it."""

COMPRESS_LEVEL = 6
"""zlib's default: within a few percent of level 9's size at a fraction of its time (bench/compression.py)."""

COMPRESSIBLE = frozenset(
    {
        "application/json",
        "application/problem+json",
        "application/yaml",
        "text/html",
        "text/plain",
        "application/openmetrics-text",
    }
)
"""The media types that may be compressed (plus any `application/*+json`)."""


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether an `Accept-Encoding` value accepts gzip (RFC 9110 section 12.5.3): `gzip` (or
    `x-gzip`) with a weight above 0, or else `*` with a weight above 0."""
    weights: dict[str, float] = {}
    for item in accept_encoding.split(","):
        coding, _, parameters = item.partition(";")
        coding = coding.strip().lower()
        if not coding:
            continue
        weight = 1.0
        for parameter in parameters.split(";"):
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    weight = float(value.strip())
                except ValueError:
                    weight = 0.0
        weights[coding] = max(weight, weights.get(coding, 0.0))
    for name in ("gzip", "x-gzip"):
        if name in weights:
            return weights[name] > 0
    return weights.get("*", 0.0) > 0


def compressible(headers: Headers) -> bool:
    """Whether an answer with these headers may be compressed (see the module documentation)."""
    media_type = headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type not in COMPRESSIBLE and not (media_type.startswith("application/") and media_type.endswith("+json")):
        return False
    if "etag" in headers or "content-encoding" in headers:
        return False
    return "no-transform" not in headers.get("cache-control", "").lower()


class _Responder(GZipResponder):
    """starlette's gzip responder, for the answers `compressible` allows; the others pass
    through untouched."""

    passthrough = False

    async def send_with_compression(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.passthrough = not compressible(Headers(raw=message.get("headers", [])))
        if self.passthrough:
            await self.send(message)
            return
        await super().send_with_compression(message)


class CompressionMiddleware:
    """ASGI middleware: gzip for the answers the module documentation describes.

    Args:
        app: the next ASGI app.
        minimum_size: the smallest body compressed, in bytes.
        level: zlib's compression level (1 fastest … 9 smallest).
    """

    def __init__(self, app: ASGIApp, *, minimum_size: int = MINIMUM_BYTES, level: int = COMPRESS_LEVEL) -> None:
        self.app = app
        self.minimum_size = minimum_size
        self.level = level

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        accept = ""
        for name, value in scope["headers"]:
            if name == b"accept-encoding":
                accept = f"{accept},{value.decode('latin-1')}" if accept else value.decode("latin-1")
        if scope["method"] == "HEAD":
            await self.app(scope, receive, _vary_if_compressible(send))
            return
        if not accept or not accepts_gzip(accept):
            # No gzip for this client; a compressible answer still varies by Accept-Encoding.
            await self.app(scope, receive, _vary_if_compressible(send, minimum_size=self.minimum_size))
            return
        responder = _Responder(self.app, self.minimum_size, compresslevel=self.level)
        await responder(scope, receive, send)


def _vary_if_compressible(send: Send, *, minimum_size: int = 0) -> Send:
    """`send`, adding `Vary: Accept-Encoding` to an answer that another client would have got
    compressed: compressible, and (when its `Content-Length` says) at least `minimum_size`."""

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = Headers(raw=message.get("headers", []))
            length = headers.get("content-length")
            big_enough = length is None or not length.isdigit() or int(length) >= minimum_size
            if big_enough and compressible(headers):
                message["headers"] = list(message.get("headers", []))
                MutableHeaders(raw=message["headers"]).add_vary_header("Accept-Encoding")
        await send(message)

    return sending
