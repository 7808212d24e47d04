"""The Redoc reference page at /api/v1/docs: served from the file `make docs` builds, with a
CSP that allows exactly its own inline scripts, read again after a rebuild, and a 404 problem
that says how to build it when it has not been built."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from server.contract import RouteTable
from server.edge.access_log import AccessLog
from server.edge.docs import REFERENCE_PAGE, ReferencePageMiddleware
from server.edge.middleware import EdgeMiddleware
from tests.helpers import assert_problem

PAGE = """<!DOCTYPE html><html><head><title>Reference</title><script>var mode = "light";</script>
<style>body { margin: 0 }</style></head><body><div id="redoc"></div>
<script type="module">hydrate({"openapi": "3.0.3"});</script></body></html>"""


def _sha256(script: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"


def _directives(csp: str) -> dict[str, list[str]]:
    return {name: values for name, *values in (part.split() for part in csp.split(";"))}


def _client(html_file: Path) -> TestClient:
    """The page middleware behind the request id and the security headers (as in the app), in
    front of an app that answers 418 to anything."""
    downstream = Starlette(
        routes=[
            Route(
                "/{path:path}",
                lambda request: PlainTextResponse("downstream", 418),
                methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"],
            )
        ]
    )
    page = ReferencePageMiddleware(downstream, path="/api/v1/docs", html_file=html_file)
    app = EdgeMiddleware(page, access_log=AccessLog(routes=RouteTable({})))
    return TestClient(app)


def test_the_built_page_is_served_with_a_policy_for_its_own_scripts(tmp_path):
    html_file = tmp_path / "index.html"
    html_file.write_text(PAGE)
    with _client(html_file) as client:
        response = client.get("/api/v1/docs")
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/html; charset=utf-8"
        assert response.text == PAGE
        csp = response.headers.get_list("content-security-policy")
        assert len(csp) == 1  # the page's own policy, not the API's default one as well
        directives = _directives(csp[0])
        assert directives["default-src"] == ["'none'"]
        assert sorted(directives["script-src"]) == sorted(
            [_sha256('var mode = "light";'), _sha256('hydrate({"openapi": "3.0.3"});')]
        )
        assert directives["connect-src"] == ["'self'"]
        assert directives["frame-ancestors"] == ["'none'"]
        assert response.headers["x-frame-options"] == "DENY"  # every other security header too
        assert response.headers["x-content-type-options"] == "nosniff"

        assert client.get("/api/v1/docs/").text == PAGE
        head = client.head("/api/v1/docs")
        assert head.status_code == 200
        assert head.content == b""
        assert int(head.headers["content-length"]) == len(PAGE.encode())


def test_a_rebuilt_page_is_served_without_a_restart(tmp_path):
    html_file = tmp_path / "index.html"
    html_file.write_text(PAGE)
    with _client(html_file) as client:
        first = client.get("/api/v1/docs")
        rebuilt = PAGE.replace('var mode = "light";', 'var mode = "dark";')
        html_file.write_text(rebuilt)
        stat = html_file.stat()
        os.utime(html_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
        second = client.get("/api/v1/docs")
    assert first.text == PAGE
    assert second.text == rebuilt
    assert _sha256('var mode = "dark";') in second.headers["content-security-policy"]
    assert _sha256('var mode = "light";') not in second.headers["content-security-policy"]


def test_before_make_docs_the_path_answers_a_problem_saying_how_to_build_it(tmp_path):
    with _client(tmp_path / "missing.html") as client:
        response = client.get("/api/v1/docs")
    body = assert_problem(response, 404, "/problems/not-found")
    assert "make docs" in body["detail"]
    assert "/api/v1/ui/" in body["detail"]
    assert body["instance"] == "/api/v1/docs"
    assert "default-src 'none'" in response.headers["content-security-policy"]


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/api/v1/docs"), ("GET", "/api/v1/docsx"), ("GET", "/api/v1/ui/")],
)
def test_other_requests_pass_through(tmp_path, method, path):
    html_file = tmp_path / "index.html"
    html_file.write_text(PAGE)
    with _client(html_file) as client:
        response = client.request(method, path)
    assert response.status_code == 418
    assert response.text == "downstream"


def test_the_app_serves_the_page_that_make_docs_built(client):
    response = client.get("/api/v1/docs", validate=False)
    if not REFERENCE_PAGE.exists():
        assert_problem(response, 404, "/problems/not-found")
        return
    assert response.status_code == 200
    assert response.content == REFERENCE_PAGE.read_bytes()
    assert "'unsafe-inline'" not in _directives(response.headers["content-security-policy"])["script-src"]


def test_the_swagger_ui_layer_hands_other_paths_on_without_routing():
    import asyncio

    from server.edge.docs import SwaggerUIOnItsPath

    seen = []

    async def next_app(scope, receive, send):
        seen.append(scope)

    async def no_routing(scope, receive, send):
        raise AssertionError("routed a path that is not the UI's")

    layer = SwaggerUIOnItsPath(next_app)
    layer.router = no_routing
    scope = {"type": "http", "path": "/api/v1/health", "method": "GET"}
    asyncio.run(layer(scope, None, None))
    assert seen == [scope] and seen[0] is scope  # the very scope, not a copy
    with pytest.raises(AssertionError, match="routed"):
        asyncio.run(layer({"type": "http", "path": "/api/v1/ui/", "method": "GET"}, None, None))
