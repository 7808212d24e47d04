"""A second small website on 127.0.0.1 for the websites area's tests, one whose pages can change
between crawls: each page answers with an ETag (a hash of its body) and 304 to an
If-None-Match naming it (RFC 9110 section 13.1.2), so recrawls are conditional for real. Every
request is recorded (path and headers); `on_request` lets a test act when a path is asked for
(cancel the job, stop the "worker"). Stopped when the block ends; handlers are bounded in time."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

from tests.crawling.website import Request, html
from tests.helpers import serving_on_loopback

ROBOTS = b"User-agent: *\nDisallow: /private/\n"


@dataclass
class ChangingSite:
    port: int = 0
    pages: dict[str, tuple[str, str, list[str]]] = field(default_factory=dict)
    """path -> (title, text, links)."""
    requests: list[Request] = field(default_factory=list)
    on_request: Callable[[str], None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def paths(self) -> list[str]:
        return [request.path for request in self.requests]

    def body(self, path: str) -> bytes:
        title, text, links = self.pages[path]
        anchors = "".join(f'<a href="{link}">{link}</a> ' for link in links)
        return html(title, f"<p>{text}</p>{anchors}")


def docs_site() -> dict[str, tuple[str, str, list[str]]]:
    """Four linked pages and a disallowed one."""
    words = "is a page of the changing site with a paragraph long enough to be read as its main content"
    return {
        "/": ("Home", f"Home {words}.", ["/a", "/b", "/c", "/private/notes"]),
        "/a": ("Alpha", f"Alpha {words}, about aardvarks.", ["/"]),
        "/b": ("Bravo", f"Bravo {words}, about badgers.", ["/"]),
        "/c": ("Charlie", f"Charlie {words}, about chameleons.", ["/"]),
        "/private/notes": ("Notes", f"Notes {words}.", []),
    }


@contextlib.contextmanager
def changing_site(pages: dict[str, tuple[str, str, list[str]]] | None = None) -> Iterator[ChangingSite]:
    """The site, running (stopped when the block ends)."""
    site = ChangingSite(pages=dict(pages if pages is not None else docs_site()))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            import time

            path = self.path.split("?", 1)[0]
            site.requests.append(Request(path, {k.lower(): v for k, v in self.headers.items()}, time.monotonic()))
            if site.on_request is not None:
                site.on_request(path)
            if path == "/robots.txt":
                self._answer(200, {"Content-Type": "text/plain"}, ROBOTS)
            elif path in site.pages:
                body = site.body(path)
                etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
                if self.headers.get("If-None-Match") == etag:
                    self._answer(304, {"ETag": etag}, b"")
                else:
                    self._answer(200, {"Content-Type": "text/html; charset=utf-8", "ETag": etag}, body)
            else:
                self._answer(404, {"Content-Type": "text/plain"}, b"not found")

        def _answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            with contextlib.suppress(OSError):
                self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    with serving_on_loopback(Handler) as site.port:
        yield site
