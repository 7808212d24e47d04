"""A webhook receiver on 127.0.0.1 for the tests: a threaded http.server that records every
request (path, headers, body) and answers each with the next status of its script (the last one
repeated), optionally with a redirect or a large body."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

from tests.helpers import serving_on_loopback


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    statuses: list[int]
    body: bytes = b"ok"
    location: str | None = None
    received: list[Received] = field(default_factory=list)
    port: int = 0
    tls: bool = False

    @property
    def url(self) -> str:
        if self.tls:
            return f"https://localhost:{self.port}/hook"  # the name its certificate is for
        return f"http://127.0.0.1:{self.port}/hook"

    def next_status(self) -> int:
        return self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]


@contextlib.contextmanager
def receiving(
    *statuses: int, body: bytes = b"ok", location: str | None = None, tls: ssl.SSLContext | None = None
) -> Iterator[Receiver]:
    """A running receiver (stopped when the block ends); with `tls`, a server context, it speaks
    HTTPS as ``localhost``."""
    receiver = Receiver(list(statuses or (200,)), body=body, location=location, tls=tls is not None)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            data = self.rfile.read(length)
            receiver.received.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, data))
            self.send_response(receiver.next_status())
            if receiver.location:
                self.send_header("Location", receiver.location)
            self.send_header("Content-Length", str(len(receiver.body)))
            self.end_headers()
            with contextlib.suppress(OSError):
                self.wfile.write(receiver.body)

        def log_message(self, *args: object) -> None:
            pass

    with serving_on_loopback(Handler, tls=tls) as receiver.port:
        yield receiver
