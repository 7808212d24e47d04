"""The crawler's fetcher (adapters/web_fetch.py) against a server on 127.0.0.1: conditional
requests, caps (declared and streamed, gzip included), kinds, a trickling server, redirects and
the guard's check at connection time (DNS rebinding)."""

from __future__ import annotations

import contextlib
import gzip
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler

from adapters.address_guard import AddressGuard
from adapters.web_fetch import HttpxFetcher
from tests.helpers import serving_on_loopback

Route = Callable[[dict[str, str]], tuple[int, dict[str, str], bytes | Iterator[bytes]]]


@contextlib.contextmanager
def server(routes: dict[str, Route]) -> Iterator[tuple[str, list[tuple[str, dict[str, str]]]]]:
    seen: list[tuple[str, dict[str, str]]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            headers = {k.lower(): v for k, v in self.headers.items()}
            seen.append((self.path, headers))
            route = routes.get(self.path, lambda _: (404, {}, b"no"))
            status, answer_headers, body = route(headers)
            self.send_response(status)
            for name, value in answer_headers.items():
                self.send_header(name, value)
            if isinstance(body, bytes) and "Content-Length" not in answer_headers:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            with contextlib.suppress(OSError):
                for chunk in [body] if isinstance(body, bytes) else body:
                    self.wfile.write(chunk)
                    self.wfile.flush()

        def log_message(self, *args: object) -> None:
            pass

    with serving_on_loopback(Handler) as port:
        yield f"http://127.0.0.1:{port}", seen


HTML = {"Content-Type": "text/html"}


def fetcher(**options) -> HttpxFetcher:
    return HttpxFetcher(AddressGuard(allow_private=True), info_url="https://charter.example/bot", **options)


def test_conditional_requests_get_not_modified():
    def page(headers):
        if headers.get("if-none-match") == '"v1"':
            return 304, {"ETag": '"v1"'}, b""
        return 200, {**HTML, "ETag": '"v1"', "Last-Modified": "Tue, 01 Dec 2026 10:00:00 GMT"}, b"<html>hi</html>"

    with server({"/p": page}) as (base, seen):
        client = fetcher()
        first = client.fetch_page(base + "/p")
        again = client.fetch_page(base + "/p", etag=first.etag, last_modified=first.last_modified)
        client.close()
    assert (first.outcome, first.kind, first.body, first.etag) == ("ok", "html", b"<html>hi</html>", '"v1"')
    assert (again.outcome, again.status_code) == ("not_modified", 304)
    assert seen[1][1]["if-none-match"] == '"v1"'
    assert seen[1][1]["if-modified-since"] == "Tue, 01 Dec 2026 10:00:00 GMT"


def test_caps_declared_streamed_and_compressed():
    big = b"<html>" + b"a" * 5000 + b"</html>"

    def streamed(_):
        return 200, HTML, iter([big[:1000]] * 10)

    def bomb(_):
        return 200, {**HTML, "Content-Encoding": "gzip"}, gzip.compress(b"<html>" + b"0" * 1_000_000)

    routes = {
        "/declared": lambda _: (200, HTML, big),
        "/streamed": streamed,
        "/bomb": bomb,
        "/ok": lambda _: (200, HTML, big[:900]),
    }
    with server(routes) as (base, _):
        client = fetcher(max_html_bytes=2048)
        results = {path: client.fetch_page(base + path) for path in routes}
        client.close()
    assert [(results[p].outcome, results[p].skip_reason) for p in ("/declared", "/streamed", "/bomb")] == [
        ("skipped", "size")
    ] * 3
    assert results["/ok"].outcome == "ok"


def test_compressed_bodies_are_decoded_a_bounded_amount_at_a_time():
    import zlib

    page = b"<html><body>" + b"compressed words " * 50 + b"</body></html>"
    bomb = gzip.compress(b"<html>" + b"\0" * 50_000_000, compresslevel=9)  # 50 MB in about 50 KB
    routes = {
        "/gzip": lambda _: (200, {**HTML, "Content-Encoding": "gzip"}, gzip.compress(page)),
        "/deflate": lambda _: (200, {**HTML, "Content-Encoding": "deflate"}, zlib.compress(page)),
        "/raw-deflate": lambda _: (200, {**HTML, "Content-Encoding": "deflate"}, zlib.compress(page, wbits=-15)),
        "/brotli": lambda _: (200, {**HTML, "Content-Encoding": "br"}, b"\x8b\x00"),
        "/bomb": lambda _: (200, {**HTML, "Content-Encoding": "gzip"}, bomb),
    }
    with server(routes) as (base, seen):
        client = fetcher(max_html_bytes=100_000)
        results = {path: client.fetch_page(base + path) for path in routes}
        client.close()
    assert seen[0][1]["accept-encoding"] == "gzip, deflate"
    assert [results[p].body for p in ("/gzip", "/deflate", "/raw-deflate")] == [page] * 3
    assert results["/brotli"].outcome == "failed" and "unsupported content encoding" in results["/brotli"].error
    assert (results["/bomb"].outcome, results["/bomb"].skip_reason) == ("skipped", "size")


def test_only_html_and_pdf_pages_and_sniffing_when_the_type_is_missing():
    routes = {
        "/json": lambda _: (200, {"Content-Type": "application/json"}, b"{}"),
        "/image": lambda _: (200, {"Content-Type": "image/png"}, b"\x89PNG"),
        "/untyped-pdf": lambda _: (200, {"Content-Type": "application/octet-stream"}, b"%PDF-1.4 ..."),
        "/xhtml": lambda _: (200, {"Content-Type": "application/xhtml+xml; charset=utf-8"}, b"<html/>"),
        "/untyped-html": lambda _: (200, {}, b"<!DOCTYPE html><html><body>" + b"x" * 100 + b"</body></html>"),
        "/untyped-zip": lambda _: (200, {}, b"PK\x03\x04" + b"\0" * 100),
    }
    with server(routes) as (base, _):
        client = fetcher()
        kinds = {
            path: (client.fetch_page(base + path).skip_reason, client.fetch_page(base + path).kind) for path in routes
        }
        file = client.fetch_file(base + "/json", max_bytes=10)
        client.close()
    assert kinds == {
        "/json": ("type", None),
        "/image": ("type", None),
        "/untyped-pdf": (None, "pdf"),
        "/xhtml": (None, "html"),
        "/untyped-html": (None, "html"),
        "/untyped-zip": ("type", None),
    }
    assert (file.outcome, file.body) == ("ok", b"{}")  # files (robots.txt, sitemaps) have no type rule


def test_a_trickling_server_is_cut_off_by_the_total_time():
    def trickle(_):
        def chunks():
            for _ in range(40):
                time.sleep(0.1)
                yield b"<p>x</p>"

        return 200, HTML, chunks()

    with server({"/trickle": trickle}) as (base, _):
        client = fetcher(timeout_seconds=1, total_seconds=0.5)
        started = time.monotonic()
        result = client.fetch_page(base + "/trickle")
        client.close()
    assert result.outcome == "failed" and result.error.startswith("timeout")
    assert time.monotonic() - started < 2


def test_redirects_hop_by_hop_with_the_hop_check():
    routes = {
        "/a": lambda _: (301, {"Location": "/b"}, b""),
        "/b": lambda _: (302, {"Location": "/c#frag"}, b""),
        "/c": lambda _: (200, HTML, b"<html>c</html>"),
        "/chain": lambda _: (302, {"Location": "/chain2"}, b""),
        "/chain2": lambda _: (302, {"Location": "/chain3"}, b""),
        "/chain3": lambda _: (302, {"Location": "/c"}, b""),
    }
    with server(routes) as (base, seen):
        client = fetcher(max_redirects=2)
        followed = client.fetch_page(base + "/a")
        refused = client.fetch_page(base + "/a", hop_check=lambda url: "robots" if url.endswith("/c") else None)
        too_many = client.fetch_page(base + "/chain")
        client.close()
    assert (followed.outcome, followed.final_url, followed.redirects) == ("ok", base + "/c", (base + "/b", base + "/c"))
    assert (refused.outcome, refused.skip_reason, refused.final_url) == ("skipped", "robots", base + "/c")
    assert too_many.outcome == "failed" and "more than 2 redirects" in too_many.error
    assert [path for path, _ in seen].count("/c") == 1  # the refused hop was never requested


def test_the_guard_checks_again_when_connecting_so_rebinding_is_an_ssrf_skip():
    with server({"/p": lambda _: (200, HTML, b"<html>p</html>")}) as (base, seen):
        port = base.rsplit(":", 1)[1]
        answers = iter([["93.184.215.14"], ["127.0.0.1"]])  # public when checked, loopback when connecting
        client = HttpxFetcher(AddressGuard(resolver=lambda host, _: next(answers)), info_url="https://x.example/")
        result = client.fetch_page(f"http://rebind.example:{port}/p")
        client.close()
    assert (result.outcome, result.skip_reason) == ("skipped", "ssrf") and "loopback" in result.error
    assert seen == []


def test_nothing_listening_is_a_failure_not_an_exception():
    client = fetcher(timeout_seconds=1)
    result = client.fetch_page("http://127.0.0.1:1/")
    client.close()
    assert result.outcome == "failed" and "ConnectError" in result.error
