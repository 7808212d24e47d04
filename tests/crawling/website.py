"""A small website on 127.0.0.1 for the crawler's tests: a threaded http.server on a free port
that serves a fixed set of paths and records every request (path and headers). Stopped when the
block ends; every handler is bounded in time (the slow page sleeps `SLOW_SECONDS`)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

from tests.crawling.pdfs import make_pdf
from tests.helpers import serving_on_loopback

SLOW_SECONDS = 1.5
HUGE_BYTES = 5 * 1024 * 1024


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    at: float


@dataclass
class Website:
    port: int = 0
    requests: list[Request] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def paths(self) -> list[str]:
        return [request.path for request in self.requests]


def html(title: str, body: str, head: str = "") -> bytes:
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title>{head}</head>"
        f"<body><main><h1>{title}</h1>{body}</main></body></html>"
    ).encode()


def pages(base: str) -> dict[str, tuple[int, dict[str, str], bytes | Callable[[], Iterator[bytes]]]]:
    """path → (status, headers, body or a generator of chunks)."""
    text = "<p>{} is a page of the test site with a paragraph long enough to be read as its main content.</p>"
    page = {"Content-Type": "text/html; charset=utf-8"}
    return {
        "/robots.txt": (
            200,
            {"Content-Type": "text/plain"},
            f"User-agent: *\nDisallow: /private/\nCrawl-delay: 1\nSitemap: {base}/sitemap.xml\n".encode(),
        ),
        "/sitemap.xml": (
            200,
            {"Content-Type": "application/xml"},
            (
                '<?xml version="1.0" encoding="UTF-8"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
                f"<url><loc>{base}/</loc></url><url><loc>{base}/orphan</loc></url></urlset>"
            ).encode(),
        ),
        "/": (
            200,
            page,
            html(
                "Home",
                text.format("Home")
                + "".join(
                    f'<a href="{href}">{href}</a> '
                    for href in (
                        "/about",
                        "/about?utm_source=newsletter#team",
                        "/docs/",
                        "/private/secret",
                        "http://elsewhere.invalid/page",
                        "/away",
                        "/hidden",
                        "/loop-a",
                        "/huge",
                        "/print",
                        "/data.zip",
                        "/manual.pdf",
                        "/slow",
                    )
                ),
            ),
        ),
        "/about": (200, page, html("About", text.format("About") + '<a href="/">Home</a>')),
        "/docs/": (200, page, html("Docs", text.format("Docs") + '<a href="setup">Setup</a>')),
        "/docs/setup": (200, page, html("Setup", text.format("Setup"))),
        "/orphan": (200, page, html("Orphan", text.format("Orphan, listed by the sitemap only,"))),
        "/private/secret": (200, page, html("Secret", text.format("Secret"))),
        "/away": (302, {"Location": "http://elsewhere.invalid/landing"}, b""),
        "/hidden": (200, page, html("Hidden", text.format("Hidden"), head='<meta name="robots" content="noindex">')),
        "/loop-a": (302, {"Location": "/loop-b"}, b""),
        "/loop-b": (302, {"Location": f"{base}/loop-a"}, b""),
        "/huge": (200, page, _huge),  # no Content-Length: the cap is met while streaming
        "/print": (200, page, html("About (print)", text.format("About"), head='<link rel="canonical" href="/about">')),
        "/data.zip": (200, {"Content-Type": "application/zip"}, b"PK\x03\x04" + b"\0" * 100),
        "/manual.pdf": (
            200,
            {"Content-Type": "application/pdf"},
            make_pdf("Install the widget", "Use the widget", title="Widget manual"),
        ),
        "/slow": (200, page, _slow),
    }


def _huge() -> Iterator[bytes]:
    yield b"<!doctype html><html><head><title>Huge</title></head><body><p>"
    chunk = b"words " * 10_000
    for _ in range(HUGE_BYTES // len(chunk) + 1):
        yield chunk
    yield b"</p></body></html>"


def _slow() -> Iterator[bytes]:
    time.sleep(SLOW_SECONDS)
    yield html("Slow", "<p>Too late.</p>")


@contextlib.contextmanager
def serving() -> Iterator[Website]:
    """The website, running (stopped when the block ends)."""
    site = Website()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            site.requests.append(Request(self.path, {k.lower(): v for k, v in self.headers.items()}, time.monotonic()))
            status, headers, body = pages(site.url).get(
                self.path.split("?", 1)[0], (404, {"Content-Type": "text/plain"}, b"not found")
            )
            chunks = body() if callable(body) else iter([body])
            first = next(chunks, b"")  # the slow page sleeps here, before its headers
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            if not callable(body):
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            with contextlib.suppress(OSError):  # the crawler hangs up on the huge page
                self.wfile.write(first)
                for chunk in chunks:
                    self.wfile.write(chunk)

        def log_message(self, *args: object) -> None:
            pass

    with serving_on_loopback(Handler) as site.port:
        yield site
