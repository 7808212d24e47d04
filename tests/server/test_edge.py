"""The edge of the service: one access log line per request, no secret in any log, security
headers on every answer, CORS from an allow-list, the request body limit, Prometheus metrics
(also aggregated across `charter serve --workers N`), and PostgreSQL's statement_timeout."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import logging
import os
import re
import signal
import socket
import subprocess
import time
import tomllib
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

import handlers.auth
from persistence.database import make_engine
from server.app import create_app
from server.cli import migrate
from server.contract import bundle
from tests.helpers import (
    PASSWORD,
    ROOT,
    TEST_SECRET,
    ContractClient,
    app_client,
    assert_problem,
    bearer,
    create_task,
    make_settings,
    register_and_login,
    registration,
    unique_email,
)
from tests.processes import CHARTER, free_port
from tests.served import serve

HTTP_VERBS = {"get", "put", "post", "delete", "patch"}
CONTRACT_METHODS = sorted({verb.upper() for item in bundle()["paths"].values() for verb in item if verb in HTTP_VERBS})
LISTED = "https://app.example"
OTHER_LISTED = "https://admin.example"
UNLISTED = "https://evil.example"
CORS_ORIGINS = f"{LISTED},{OTHER_LISTED}"
BODY_LIMIT = 2048
TASK_TEMPLATE = "/api/v1/users/{user_id}/tasks/{task_id}"


pytestmark = pytest.mark.usefixtures("restore_logging")  # create_app reconfigures the root logger


# --- helpers --------------------------------------------------------------------------------


def _padded(body: dict[str, Any], size: int) -> bytes:
    """`body` as JSON padded with whitespace to exactly `size` bytes (still valid JSON)."""
    raw = json.dumps(body).encode()
    assert len(raw) < size
    return raw[:-1] + b" " * (size - len(raw)) + b"}"


def _chunks(data: bytes, size: int = 256) -> Iterator[bytes]:
    """A generator, so httpx streams it with `Transfer-Encoding: chunked` and no Content-Length."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


def _assert_chunked(response: Any) -> None:
    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert "content-length" not in response.request.headers


def _json_lines(captured: str) -> list[dict[str, Any]]:
    """Every non-empty captured line, parsed: in json mode each one must be a JSON object."""
    entries = []
    for line in captured.splitlines():
        if line.strip():
            entry = json.loads(line)  # fails the test on a line that is not JSON
            assert isinstance(entry, dict), line
            entries.append(entry)
    return entries


def _access_entry(capsys: pytest.CaptureFixture[str], response: Any) -> dict[str, Any]:
    """The one `request_completed` line logged for `response` (read since the last call)."""
    captured = capsys.readouterr()
    entries = [entry for entry in _json_lines(captured.err) if entry.get("event") == "request_completed"]
    assert len(entries) == 1, captured.err
    entry = entries[0]
    assert entry["request_id"] == response.headers["x-request-id"]
    assert entry["status"] == response.status_code
    assert entry["level"] == "info"
    duration = entry["duration_ms"]
    assert isinstance(duration, int | float) and not isinstance(duration, bool)
    assert duration >= 0
    assert entry["bytes"] == len(response.content)  # the body sent (HEAD: none)
    assert entry["client"] == "testclient"
    return entry


# --- 1. request logging ----------------------------------------------------------------------


class TestRequestLog:
    def test_routed_requests(self, database_url, tmp_path, openapi, capsys):
        capsys.readouterr()
        with app_client(database_url, tmp_path, openapi, log_format="json", log_level="INFO") as (_, client):
            email = unique_email("edge")
            registered = client.post("/api/v1/auth/register", json=registration(email))
            assert registered.status_code == 201
            entry = _access_entry(capsys, registered)
            assert entry["method"] == "POST"
            assert entry["route"] == "/api/v1/auth/register"
            assert entry["operation_id"] == "registerUser"
            assert entry["user_id"] is None
            user_id = registered.json()["id"]

            login = client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
            entry = _access_entry(capsys, login)
            assert (entry["operation_id"], entry["route"], entry["user_id"]) == ("login", "/api/v1/auth/login", None)
            headers = bearer(login.json()["access_token"])

            created = client.post(f"/api/v1/users/{user_id}/tasks", json={"title": "log me"}, headers=headers)
            assert created.status_code == 201
            entry = _access_entry(capsys, created)
            assert entry["method"] == "POST"
            assert entry["route"] == "/api/v1/users/{user_id}/tasks"
            assert entry["operation_id"] == "createTask"
            assert entry["user_id"] == user_id

            fetched = client.get(f"/api/v1/users/{user_id}/tasks/{created.json()['id']}", headers=headers)
            assert fetched.status_code == 200
            entry = _access_entry(capsys, fetched)
            assert entry["method"] == "GET"
            assert entry["route"] == TASK_TEMPLATE  # the template, never the concrete path
            assert entry["operation_id"] == "getTask"
            assert entry["user_id"] == user_id
            assert user_id not in entry["route"]

            # An authenticated request the handler refuses is still the caller's.
            missing = client.get(f"/api/v1/users/{user_id}/tasks/{uuid.uuid4()}", headers=headers)
            assert_problem(missing, 404)
            entry = _access_entry(capsys, missing)
            assert (entry["operation_id"], entry["user_id"]) == ("getTask", user_id)

            # A client-chosen request id is the one logged.
            mine = client.get("/api/v1/health", headers={"X-Request-ID": "edge-log-42"})
            entry = _access_entry(capsys, mine)
            assert entry["request_id"] == "edge-log-42"
            assert (entry["route"], entry["operation_id"], entry["user_id"]) == ("/api/v1/health", "getHealth", None)

    def test_requests_refused_before_a_handler(self, database_url, tmp_path, openapi, capsys):
        capsys.readouterr()
        settings = {"log_format": "json", "log_level": "INFO", "max_body_bytes": BODY_LIMIT}
        with app_client(database_url, tmp_path, openapi, **settings) as (_, client):
            task_path = f"/api/v1/users/{uuid.uuid4()}/tasks/{uuid.uuid4()}"
            cases = [
                # (response, route, operation_id)
                (client.get(task_path, headers={"Authorization": "Bearer not-a-token"}), TASK_TEMPLATE, "getTask"),
                (client.get(task_path), TASK_TEMPLATE, "getTask"),
                (client.post("/api/v1/auth/login", json={}), "/api/v1/auth/login", "login"),
                (
                    client.post("/api/v1/auth/login", content="x", headers={"Content-Type": "text/plain"}),
                    "/api/v1/auth/login",
                    "login",
                ),
                (
                    client.post(
                        "/api/v1/auth/register",
                        content=_padded(registration(), BODY_LIMIT + 1),
                        headers={"Content-Type": "application/json"},
                    ),
                    "/api/v1/auth/register",
                    "registerUser",
                ),
                (client.get("/api/v1/nope", validate=False), "unmatched", "unmatched"),
                (client.put("/api/v1/health", validate=False), "unmatched", "unmatched"),
            ]
        captured = capsys.readouterr()
        entries = [entry for entry in _json_lines(captured.err) if entry.get("event") == "request_completed"]
        assert len(entries) == len(cases), captured.err
        expected_statuses = [401, 401, 400, 415, 413, 404, 405]
        for entry, (response, route, operation_id), status in zip(entries, cases, expected_statuses, strict=True):
            assert response.status_code == status, response.text
            assert entry["request_id"] == response.headers["x-request-id"]
            assert entry["status"] == status
            assert entry["route"] == route, entry
            assert entry["operation_id"] == operation_id, entry
            assert entry["user_id"] is None
            assert entry["method"] == response.request.method
            assert isinstance(entry["duration_ms"], int | float) and entry["duration_ms"] >= 0
            assert entry["client"] == "testclient"

    def test_authenticated_request_refused_by_validation_names_the_caller(
        self, database_url, tmp_path, openapi, capsys
    ):
        capsys.readouterr()
        with app_client(database_url, tmp_path, openapi, log_format="json", log_level="INFO") as (_, client):
            account = register_and_login(client)
            capsys.readouterr()
            refused = client.post(account.tasks_path, json={}, headers=account.headers)
            assert_problem(refused, 400, "/problems/validation-error")
            entry = _access_entry(capsys, refused)
        assert entry["operation_id"] == "createTask"
        assert entry["user_id"] == account.id

    def test_unexpected_error_is_logged_once_with_its_status(
        self, database_url, tmp_path, openapi, capsys, monkeypatch
    ):
        capsys.readouterr()
        with app_client(database_url, tmp_path, openapi, log_format="json", log_level="INFO") as (_, client):
            monkeypatch.setattr(handlers.auth.accounts, "register", _boom)
            failed = client.post("/api/v1/auth/register", json=registration())
            assert_problem(failed, 500, "/problems/internal-error")
            captured = capsys.readouterr()
        entries = _json_lines(captured.err)
        completed = [entry for entry in entries if entry.get("event") == "request_completed"]
        assert len(completed) == 1
        assert completed[0]["status"] == 500
        assert completed[0]["operation_id"] == "registerUser"
        assert completed[0]["request_id"] == failed.headers["x-request-id"]
        # The traceback is in a JSON line of its own, under the same request id.
        errors = [entry for entry in entries if entry.get("level") == "error"]
        assert errors and all(entry.get("request_id") == failed.headers["x-request-id"] for entry in errors)
        assert any("RuntimeError" in json.dumps(entry) for entry in errors)

    def test_console_format_is_for_people(self, database_url, tmp_path, openapi, capsys):
        capsys.readouterr()
        with app_client(database_url, tmp_path, openapi, log_format="console", log_level="INFO") as (_, client):
            response = client.get("/api/v1/health")
            captured = capsys.readouterr()
        lines = [line for line in captured.err.splitlines() if "request_completed" in line]
        assert len(lines) == 1, captured.err
        line = lines[0]
        with pytest.raises(ValueError):
            json.loads(line)
        assert not line.lstrip().startswith("{")
        for field in ("operation_id=getHealth", "route=/api/v1/health", "status=200", "method=GET"):
            assert field in line, line
        assert f"request_id={response.headers['x-request-id']}" in line

    def test_level_threshold_silences_the_access_log(self, database_url, tmp_path, openapi, capsys):
        capsys.readouterr()
        with app_client(database_url, tmp_path, openapi, log_format="json", log_level="WARNING") as (_, client):
            assert client.get("/api/v1/health").status_code == 200
            captured = capsys.readouterr()
        assert "request_completed" not in captured.err


def _boom(*_args: Any, **_kwargs: Any) -> Any:
    raise RuntimeError("edge test failure")


# --- 2. no secret in any log ------------------------------------------------------------------


def test_secrets_never_reach_the_logs(database_url, tmp_path, openapi, capsys, caplog):
    password = f"Quokka-{uuid.uuid4().hex}-passphrase"
    wrong_password = f"Wombat-{uuid.uuid4().hex}-guess"
    forged_token = f"forged.{uuid.uuid4().hex}.token"
    capsys.readouterr()
    with app_client(database_url, tmp_path, openapi, log_format="json", log_level="DEBUG") as (_, client):
        logging.getLogger().addHandler(caplog.handler)  # create_app replaced the root handlers
        email = unique_email("secret")
        assert client.post("/api/v1/auth/register", json=registration(email, password=password)).status_code == 201
        login = client.post("/api/v1/auth/login", json={"email": email, "password": password})
        assert login.status_code == 200
        first = login.json()
        refreshed = client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
        assert refreshed.status_code == 200
        second = refreshed.json()
        authorization = bearer(second["access_token"])
        assert client.get("/api/v1/auth/me", headers=authorization).status_code == 200
        assert client.post("/api/v1/auth/logout", headers=authorization).status_code == 204
        # Failures too: a wrong password, a forged token, a logged-out token, a used refresh token.
        wrong = client.post("/api/v1/auth/login", json={"email": email, "password": wrong_password})
        assert_problem(wrong, 401, "/problems/invalid-credentials")
        assert_problem(client.get("/api/v1/auth/me", headers=bearer(forged_token)), 401)
        assert_problem(client.get("/api/v1/auth/me", headers=authorization), 401)
        assert_problem(client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}), 401)
        captured = capsys.readouterr()

    logged = captured.out + captured.err
    records = "\n".join(f"{record.getMessage()} {record.args!r} {record.exc_text or ''}" for record in caplog.records)
    # The capture is not empty: debug lines and the access log were written and recorded.
    entries = _json_lines(captured.err)
    assert sum(entry.get("event") == "request_completed" for entry in entries) == 9
    assert any(entry.get("level") == "debug" for entry in entries)
    assert "request_completed" in records

    secrets = {
        "password": password,
        "wrong password": wrong_password,
        "forged token": forged_token,
        "JWT secret": TEST_SECRET,
        "refresh token (old)": first["refresh_token"],
        "refresh token (new)": second["refresh_token"],
    }
    for name, token in (("access token (old)", first["access_token"]), ("access token (new)", second["access_token"])):
        secrets[name] = token
        secrets[f"Bearer {name}"] = f"Bearer {token}"
        secrets[f"Authorization header with {name}"] = f"Authorization: Bearer {token}"
        _header, payload, signature = token.split(".")
        secrets[f"{name} claims"] = payload
        secrets[f"{name} signature"] = signature
    for name, secret in secrets.items():
        assert secret not in logged, f"{name} was written to the log"
        assert secret not in records, f"{name} was recorded by a logger"


# --- 3. security headers -----------------------------------------------------------------------


def _csp(response: Any) -> dict[str, list[str]]:
    directives = {}
    for part in response.headers["content-security-policy"].split(";"):
        name, *values = part.split()
        directives[name] = values
    return directives


def assert_security_headers(response: Any, *, docs: bool = False) -> None:
    headers = response.headers
    assert headers.get_list("x-content-type-options") == ["nosniff"]
    assert headers.get_list("x-frame-options") == ["DENY"]
    hsts = headers["strict-transport-security"]
    max_age = re.search(r"max-age=(\d+)", hsts)
    assert max_age and int(max_age.group(1)) >= 31_536_000, hsts
    assert headers["referrer-policy"] in {"no-referrer", "strict-origin-when-cross-origin", "same-origin"}
    assert "camera=()" in headers["permissions-policy"]
    assert headers.get_list("x-xss-protection") == ["0"]
    assert len(headers.get_list("content-security-policy")) == 1
    csp = headers["content-security-policy"]
    directives = _csp(response)
    assert directives.get("frame-ancestors") == ["'none'"]
    if docs:
        assert "script-src 'self'" in csp
        assert "'self'" in directives["default-src"]
    else:
        assert "default-src 'none'" in csp
        assert "script-src" not in directives


ANSWERS = {
    "200": lambda client, account: client.get("/api/v1/health"),
    "200 authenticated": lambda client, account: client.get("/api/v1/auth/me", headers=account.headers),
    "201": lambda client, account: client.post("/api/v1/auth/register", json=registration()),
    "204": lambda client, account: client.post("/api/v1/auth/logout", headers=account.headers),
    "400": lambda client, account: client.post("/api/v1/auth/login", json={}),
    "401": lambda client, account: client.get("/api/v1/auth/me", headers={"Authorization": "Bearer nope"}),
    "404 unknown path": lambda client, account: client.get("/api/v1/nope", validate=False),
    "404 problem": lambda client, account: client.get(f"{account.tasks_path}/{uuid.uuid4()}", headers=account.headers),
    "405": lambda client, account: client.put("/api/v1/health", validate=False),
    "413": lambda client, account: client.post(
        "/api/v1/auth/register",
        content=_padded(registration(), BODY_LIMIT + 1),
        headers={"Content-Type": "application/json"},
    ),
    "415": lambda client, account: client.post(
        "/api/v1/auth/login", content="{}", headers={"Content-Type": "text/plain"}
    ),
    "metrics": lambda client, account: client.get("/metrics"),
    "openapi.json": lambda client, account: client.get("/api/v1/openapi.json", validate=False),
    "openapi.yaml": lambda client, account: client.get("/api/v1/openapi.yaml", validate=False),
}


@pytest.fixture(scope="module")
def edge_client(database_url, tmp_path_factory, openapi) -> Iterator[ContractClient]:
    """An app with a small body limit (so a 413 is cheap to provoke)."""
    var_dir = tmp_path_factory.mktemp("headers")
    with app_client(database_url, var_dir, openapi, max_body_bytes=BODY_LIMIT) as (_, client):
        yield client


class TestSecurityHeaders:
    @pytest.mark.parametrize("answer", list(ANSWERS), ids=list(ANSWERS))
    def test_api_answers(self, edge_client, answer):
        account = register_and_login(edge_client)
        response = ANSWERS[answer](edge_client, account)
        expected = int(answer.split()[0]) if answer[0].isdigit() else 200
        assert response.status_code == expected, response.text
        assert_security_headers(response)

    def test_500(self, client, monkeypatch):
        monkeypatch.setattr(handlers.auth.accounts, "register", _boom)
        response = client.post("/api/v1/auth/register", json=registration())
        assert_problem(response, 500, "/problems/internal-error")
        assert_security_headers(response)

    def test_429(self, database_url, tmp_path, openapi):
        with app_client(database_url, tmp_path, openapi, rate_limit_per_minute=1) as (_, client):
            assert client.get("/").status_code == 200
            refused = client.get("/")
        assert_problem(refused, 429, "/problems/rate-limited")
        assert_security_headers(refused)

    def test_swagger_ui_page(self, edge_client):
        page = edge_client.get("/api/v1/ui/", validate=False)
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert_security_headers(page, docs=True)
        # Every script the page needs is allowed: its files from 'self', its inline script.
        script_src = _csp(page)["script-src"]
        for source in re.findall(r"<script[^>]*\ssrc=\"([^\"]+)\"", page.text):
            assert not re.match(r"^(https?:)?//", source), source  # our own files, no CDN
        inline = re.findall(r"<script>(.*?)</script>", page.text, flags=re.S)
        assert inline, "the page has an inline script"
        for script in inline:
            digest = "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"
            assert "'unsafe-inline'" in script_src or digest in script_src

    @pytest.mark.parametrize("asset", ["swagger-ui.css", "swagger-ui-bundle.js"])
    def test_swagger_ui_static_files(self, edge_client, asset):
        response = edge_client.get(f"/api/v1/ui/{asset}", validate=False)
        assert response.status_code == 200
        assert_security_headers(response, docs=True)


# --- 4. CORS -----------------------------------------------------------------------------------


def _preflight(client: ContractClient, origin: str, **extra: str):
    headers = {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
        **extra,
    }
    return client.request("OPTIONS", "/api/v1/auth/register", headers=headers, validate=False)


def _listed(value: str) -> set[str]:
    return {item.strip().lower() for item in value.split(",") if item.strip()}


@pytest.fixture(scope="module")
def cors_client(database_url, tmp_path_factory, openapi) -> Iterator[ContractClient]:
    with app_client(database_url, tmp_path_factory.mktemp("cors"), openapi, cors_origins=CORS_ORIGINS) as (_, client):
        yield client


class TestCORS:
    @pytest.mark.parametrize("origin", [LISTED, OTHER_LISTED])
    def test_preflight_from_a_listed_origin(self, cors_client, origin):
        response = _preflight(cors_client, origin)
        assert response.status_code == 200
        headers = response.headers
        assert headers["access-control-allow-origin"] == origin  # never "*" with credentials
        assert headers["access-control-allow-credentials"] == "true"
        assert {method.lower() for method in CONTRACT_METHODS} <= _listed(headers["access-control-allow-methods"])
        assert {"authorization", "content-type", "x-request-id"} <= _listed(headers["access-control-allow-headers"])
        assert "origin" in _listed(headers["vary"])
        assert_security_headers(response)

    def test_actual_request_from_a_listed_origin(self, cors_client):
        response = cors_client.get("/api/v1/health", headers={"Origin": LISTED})
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == LISTED
        assert response.headers["access-control-allow-credentials"] == "true"
        exposed = _listed(response.headers["access-control-expose-headers"])
        assert {"x-request-id", "location", "retry-after"} <= exposed
        assert "origin" in _listed(response.headers["vary"])

    def test_error_answer_to_a_listed_origin_is_readable(self, cors_client):
        response = cors_client.post("/api/v1/auth/login", json={}, headers={"Origin": LISTED})
        assert_problem(response, 400)
        assert response.headers["access-control-allow-origin"] == LISTED

    @pytest.mark.parametrize("origin", [UNLISTED, "https://app.example.evil", "http://app.example", "null"])
    def test_preflight_from_an_unlisted_origin(self, cors_client, origin):
        response = _preflight(cors_client, origin)
        problem = assert_problem(response, 403, "/problems/forbidden")
        assert problem["detail"]
        assert not [name for name in response.headers if name.lower().startswith("access-control-allow-")]
        assert_security_headers(response)

    def test_actual_request_from_an_unlisted_origin(self, cors_client):
        response = cors_client.get("/api/v1/health", headers={"Origin": UNLISTED})
        assert response.status_code == 200  # the server answers; the browser hides it
        assert "access-control-allow-origin" not in response.headers

    @pytest.mark.parametrize(
        "extra",
        [{"Access-Control-Request-Headers": "x-not-allowed"}, {"Access-Control-Request-Method": "TRACE"}],
        ids=["header", "method"],
    )
    def test_refused_preflight_from_a_listed_origin_is_a_problem(self, cors_client, extra):
        response = _preflight(cors_client, LISTED, **extra)
        assert response.status_code in (400, 403)
        assert response.headers["content-type"].startswith("application/problem+json")

    def test_no_cors_headers_without_cors_origins(self, client):
        answers = [
            client.get("/api/v1/health", headers={"Origin": LISTED}),
            client.post("/api/v1/auth/login", json={}, headers={"Origin": LISTED}),
            _preflight(client, LISTED),
            _preflight(client, UNLISTED),
        ]
        for response in answers:
            assert not [name for name in response.headers if name.lower().startswith("access-control-")], (
                response.status_code,
                dict(response.headers),
            )


# --- 5. body limits ----------------------------------------------------------------------------


class TestBodyLimit:
    @pytest.fixture
    def limited(self, edge_client) -> ContractClient:
        return edge_client

    def _nothing_registered(self, client: ContractClient, email: str) -> None:
        login = client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
        assert_problem(login, 401, "/problems/invalid-credentials")
        again = client.post("/api/v1/auth/register", json=registration(email))
        assert again.status_code == 201, again.text  # the email was never taken

    def test_declared_length_over_the_limit_is_413(self, limited):
        email = unique_email("edge")
        body = _padded(registration(email), BODY_LIMIT + 1)  # valid JSON: only its size is wrong
        response = limited.post("/api/v1/auth/register", content=body, headers={"Content-Type": "application/json"})
        problem = assert_problem(response, 413, "/problems/payload-too-large")  # and contract-valid
        assert problem["instance"] == "/api/v1/auth/register"
        assert str(BODY_LIMIT) in problem["detail"]
        self._nothing_registered(limited, email)

    def test_body_at_the_limit_is_accepted(self, limited):
        email = unique_email("edge")
        body = _padded(registration(email), BODY_LIMIT)
        response = limited.post("/api/v1/auth/register", content=body, headers={"Content-Type": "application/json"})
        assert response.status_code == 201, response.text
        assert response.json()["email"] == email

    def test_huge_declared_length_is_refused_and_the_connection_closed(self, limited):
        headers = {"Content-Type": "application/json", "Content-Length": str(50 * 1024 * 1024)}
        response = limited.post("/api/v1/auth/register", content=b"{" * 4096, headers=headers)
        assert_problem(response, 413, "/problems/payload-too-large")
        assert response.headers.get("connection") == "close"

    def test_chunked_body_over_the_limit_is_413(self, limited):
        account = register_and_login(limited)
        task = create_task(limited, account, title="stay open")
        path = f"{account.tasks_path}/{task['id']}/complete"
        body = _padded({"completed": True}, 4 * BODY_LIMIT)  # valid JSON: only its size is wrong
        headers = {**account.headers, "Content-Type": "application/json"}
        response = limited.patch(path, content=_chunks(body), headers=headers)
        _assert_chunked(response)
        assert_problem(response, 413, "/problems/payload-too-large")
        still = limited.get(f"{account.tasks_path}/{task['id']}", headers=account.headers)
        assert still.json()["completed"] is False  # nothing was changed

    def test_chunked_body_under_the_limit_works(self, limited):
        account = register_and_login(limited)
        task = create_task(limited, account, title="finish")
        path = f"{account.tasks_path}/{task['id']}/complete"
        headers = {**account.headers, "Content-Type": "application/json"}
        response = limited.patch(path, content=_chunks(b'{"completed": true}', 5), headers=headers)
        _assert_chunked(response)
        assert response.status_code == 200, response.text
        assert response.json()["completed"] is True

    def test_chunked_body_over_the_limit_on_a_required_body_is_never_500(self, limited):
        email = unique_email("edge")
        body = _padded(registration(email), 4 * BODY_LIMIT)
        response = limited.post(
            "/api/v1/auth/register", content=_chunks(body), headers={"Content-Type": "application/json"}
        )
        _assert_chunked(response)
        assert 400 <= response.status_code < 500, response.text
        assert_problem(response, response.status_code)
        self._nothing_registered(limited, email)

    def test_chunked_body_over_the_limit_on_a_required_body_is_413(self, limited):
        body = _padded(registration(), 4 * BODY_LIMIT)
        response = limited.post(
            "/api/v1/auth/register", content=_chunks(body), headers={"Content-Type": "application/json"}
        )
        assert_problem(response, 413, "/problems/payload-too-large")

    def test_chunked_body_under_the_limit_on_a_required_body_works(self, limited):
        email = unique_email("edge")
        response = limited.post(
            "/api/v1/auth/register",
            content=_chunks(json.dumps(registration(email)).encode(), 16),
            headers={"Content-Type": "application/json"},
        )
        assert response.status_code == 201, response.text


@pytest.fixture(scope="module")
def http_port(database_url, tmp_path_factory) -> Iterator[int]:
    """The port of the app (MAX_BODY_BYTES at its default, 1 MiB) served by a real uvicorn."""
    app = create_app(make_settings(database_url, tmp_path_factory.mktemp("http-413")))
    try:
        with serve(app) as url:
            yield int(url.rsplit(":", 1)[1])
    finally:
        app.app.extensions["charter"].engine.dispose()


class TestBodyLimitOverHTTP:
    """A client that sends its whole body before reading (Python's http.client and urllib)
    reads the 413 of a 20 MiB body instead of a connection reset (issue 11): the server reads
    and discards the rest of the body, up to a bound, before it answers and closes."""

    BIG = 20 * 1024 * 1024

    def _post(self, port: int, body: Any, **kwargs: Any) -> tuple[int, dict[str, str], dict[str, Any]]:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            connection.request(
                "POST", "/api/v1/auth/register", body=body, headers={"Content-Type": "application/json"}, **kwargs
            )
            response = connection.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, json.loads(response.read())
        finally:
            connection.close()

    def _assert_413(self, status: int, headers: dict[str, str], problem: dict[str, Any]) -> None:
        assert status == 413
        assert headers["content-type"].startswith("application/problem+json")
        assert headers["connection"] == "close"
        assert problem["type"] == "/problems/payload-too-large" and problem["status"] == 413

    def test_http_client_reads_the_413_of_a_declared_length(self, http_port):
        email = unique_email("edge")
        status, headers, problem = self._post(http_port, _padded(registration(email), self.BIG))
        self._assert_413(status, headers, problem)
        status, _, _ = self._post(http_port, json.dumps(registration(email)).encode())
        assert status == 201  # the refused body registered nothing

    def test_http_client_reads_the_413_of_a_chunked_body(self, http_port):
        body = _padded(registration(), self.BIG)
        chunks = (body[start : start + 65536] for start in range(0, len(body), 65536))
        self._assert_413(*self._post(http_port, chunks, encode_chunked=True))

    def test_a_client_that_expects_100_continue_is_answered_before_it_sends_the_body(self, http_port):
        with socket.create_connection(("127.0.0.1", http_port), timeout=10) as sock:
            sock.sendall(
                b"POST /api/v1/auth/register HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {self.BIG}\r\nExpect: 100-continue\r\n\r\n".encode()
            )
            answer = b""
            while b"\r\n\r\n" not in answer:
                chunk = sock.recv(65536)
                assert chunk, "the server closed without answering"
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]  # not "100 Continue": never asked for the body


# --- 6. metrics --------------------------------------------------------------------------------


def _scrape(client: ContractClient) -> list[Any]:
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    return list(text_string_to_metric_families(response.text))


def _value(families: list[Any], sample: str, **labels: str) -> float:
    return sum(
        s.value
        for family in families
        for s in family.samples
        if s.name == sample and all(s.labels.get(key) == value for key, value in labels.items())
    )


def _family(families: list[Any], name: str) -> Any:
    found = [family for family in families if family.name == name]
    assert len(found) == 1, f"{name} is not exposed"
    return found[0]


class TestMetrics:
    def test_exposition_format(self, client):
        response = client.get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].split(";")[0] == "text/plain"
        assert "# TYPE charter_http_requests_total counter" in response.text
        families = list(text_string_to_metric_families(response.text))
        types = {family.name: family.type for family in families}
        assert types["charter_http_requests"] == "counter"
        assert types["charter_http_request_duration_seconds"] == "histogram"
        assert types["charter_http_requests_in_flight"] == "gauge"
        assert types["charter_rate_limited_requests"] == "counter"
        assert types["charter_login_failures"] == "counter"
        assert types["charter_db_pool_connections_in_use"] == "gauge"
        assert types["charter_db_pool_size"] == "gauge"
        assert_security_headers(response)

    def test_requests_are_counted_by_operation_method_and_status(self, client):
        before = _scrape(client)
        for _ in range(3):
            assert client.get("/api/v1/health").status_code == 200
        for _ in range(2):
            assert_problem(client.post("/api/v1/auth/login", json={}), 400)
        assert client.get("/api/v1/nope", validate=False).status_code == 404
        after = _scrape(client)

        def delta(sample: str, **labels: str) -> float:
            return _value(after, sample, **labels) - _value(before, sample, **labels)

        health = {"operation_id": "getHealth", "method": "GET", "status": "200"}
        assert delta("charter_http_requests_total", **health) == 3
        assert delta("charter_http_requests_total", operation_id="getHealth") == 3
        assert delta("charter_http_requests_total", operation_id="login", method="POST", status="400") == 2
        assert delta("charter_http_requests_total", operation_id="unmatched", method="GET", status="404") == 1
        # One scrape was answered between the two.
        assert delta("charter_http_requests_total", operation_id="getMetrics", method="GET", status="200") == 1

        assert delta("charter_http_request_duration_seconds_count", **health) == 3
        assert delta("charter_http_request_duration_seconds_bucket", **health, le="+Inf") == 3
        assert delta("charter_http_request_duration_seconds_sum", **health) > 0
        buckets = sorted(
            (float(s.labels["le"]), s.value)
            for s in _family(after, "charter_http_request_duration_seconds").samples
            if s.name.endswith("_bucket") and all(s.labels.get(k) == v for k, v in health.items())
        )
        assert len(buckets) > 5
        counts = [count for _, count in buckets]
        assert counts == sorted(counts)  # cumulative
        assert counts[-1] == _value(after, "charter_http_request_duration_seconds_count", **health)

    def test_made_up_methods_share_one_metric_label(self, client):
        before = _scrape(client)
        for method in ("BREW", "WHEN", "X-MADE-UP"):
            assert client.request(method, "/api/v1/health", validate=False).status_code in (400, 405, 501)
        after = _scrape(client)
        methods = {s.labels.get("method") for s in _family(after, "charter_http_requests").samples}
        assert not methods & {"BREW", "WHEN", "X-MADE-UP"}  # a client cannot mint time series
        other = {"method": "OTHER"}
        assert (
            _value(after, "charter_http_requests_total", **other)
            - _value(before, "charter_http_requests_total", **other)
            == 3
        )

    def test_requests_in_flight(self, client):
        first = _value(_scrape(client), "charter_http_requests_in_flight")
        for _ in range(3):
            client.get("/api/v1/health")
        client.get("/api/v1/nope", validate=False)
        second = _value(_scrape(client), "charter_http_requests_in_flight")
        assert first >= 1  # the scrape itself
        assert second == first  # every finished request left the gauge

    def test_login_failures(self, client):
        email = unique_email("edge")
        assert client.post("/api/v1/auth/register", json=registration(email)).status_code == 201
        before = _value(_scrape(client), "charter_login_failures_total")
        wrong = client.post("/api/v1/auth/login", json={"email": email, "password": "not the password"})
        assert_problem(wrong, 401, "/problems/invalid-credentials")
        unknown = client.post("/api/v1/auth/login", json={"email": unique_email("edge"), "password": "whatever it is"})
        assert_problem(unknown, 401, "/problems/invalid-credentials")
        assert client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD}).status_code == 200
        after = _value(_scrape(client), "charter_login_failures_total")
        assert after - before == 2  # the two refusals, not the success

    def test_rate_limited_requests_at_the_edge(self, client, database_url, tmp_path, openapi):
        before = _scrape(client)
        with app_client(database_url, tmp_path, openapi, rate_limit_per_minute=2) as (_, tiny):
            assert tiny.get("/").status_code == 200
            assert tiny.get("/").status_code == 200
            assert_problem(tiny.get("/"), 429, "/problems/rate-limited")
        after = _scrape(client)
        sample = "charter_rate_limited_requests_total"
        assert _value(after, sample, limiter="edge") - _value(before, sample, limiter="edge") == 1
        assert _value(after, sample, limiter="route") == _value(before, sample, limiter="route")
        # The edge's answer is still counted under the operation it refused.
        refused = {"operation_id": "getServiceInfo", "method": "GET", "status": "429"}
        requests = "charter_http_requests_total"
        assert _value(after, requests, **refused) - _value(before, requests, **refused) == 1

    def test_rate_limited_requests_by_a_route_limit(self, client, database_url, tmp_path, openapi):
        before = _scrape(client)
        with app_client(database_url, tmp_path, openapi, rate_limit_login="1/minute") as (_, tiny):
            credentials = {"email": unique_email("edge"), "password": "wrong password"}
            assert_problem(tiny.post("/api/v1/auth/login", json=credentials), 401)
            assert_problem(tiny.post("/api/v1/auth/login", json=credentials), 429, "/problems/rate-limited")
        after = _scrape(client)
        sample = "charter_rate_limited_requests_total"
        assert _value(after, sample, limiter="route") - _value(before, sample, limiter="route") == 1

    def test_database_pool_gauges(self, database_url, tmp_path, openapi, monkeypatch):
        with app_client(database_url, tmp_path, openapi, db_pool_size=7) as (_, pooled):
            before = _scrape(pooled)
            assert _value(before, "charter_db_pool_size") == 7
            _family(before, "charter_db_pool_connections_in_use")
            seen: list[float | None] = []
            real = handlers.auth.user_representation

            def spy(user: Any) -> Any:
                seen.append(REGISTRY.get_sample_value("charter_db_pool_connections_in_use"))
                return real(user)

            with monkeypatch.context() as patch:
                patch.setattr(handlers.auth, "user_representation", spy)
                assert pooled.post("/api/v1/auth/register", json=registration()).status_code == 201
            assert seen and seen[0] is not None and seen[0] >= 1  # a request holds a connection
            for _ in range(3):
                register_and_login(pooled)
            after = _scrape(pooled)
        in_use = "charter_db_pool_connections_in_use"
        assert _value(after, in_use) == _value(before, in_use)  # every connection went back
        assert _value(after, in_use) >= 0

    def test_disabled_metrics_are_404(self, database_url, tmp_path, openapi):
        with app_client(database_url, tmp_path, openapi, metrics_enabled=False) as (_, unmetered):
            response = unmetered.get("/metrics")  # contract-checked: the 404 is documented
        assert_problem(response, 404, "/problems/not-found")
        assert "charter_http_requests_total" not in response.text

    def test_prometheus_client_is_a_declared_dependency(self):
        dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
        names = {re.split(r"[\s\[<>=!~;]", dep, maxsplit=1)[0].lower().replace("_", "-") for dep in dependencies}
        assert "prometheus-client" in names


def _get(port: int, path: str) -> tuple[int, bytes]:
    """One GET on a fresh connection (so the workers share the requests)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", path, headers={"Connection": "close"})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_metrics_add_up_across_workers(tmp_path):
    database = tmp_path / "workers.db"
    migrate(f"sqlite:///{database}")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    port = free_port()
    env = {key: value for key, value in os.environ.items() if key != "PROMETHEUS_MULTIPROC_DIR"}
    env.update(
        DATABASE_URL=f"sqlite:///{database}",
        JWT_SECRET="w" * 48,
        ENV="test",
        VAR_DIR=str(tmp_path / "var"),
        LOG_LEVEL="WARNING",
        RATE_LIMIT_ENABLED="false",
        TMPDIR=str(scratch),  # where `charter serve` makes the metrics folder
    )
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [str(CHARTER), "serve", "--workers", "2", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            cwd=tmp_path,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, log_path.read_text()
            try:
                if _get(port, "/api/v1/health/live")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "charter serve did not start: " + log_path.read_text()
            time.sleep(0.1)
        # Both workers up before counting (each answers `live` once it has started).
        time.sleep(0.5)
        for _ in range(40):
            assert _get(port, "/api/v1/health")[0] == 200
        # A worker counts a request just after answering it: give the last one a moment.
        deadline = time.monotonic() + 5
        while True:
            status, body = _get(port, "/metrics")
            assert status == 200
            families = list(text_string_to_metric_families(body.decode()))
            total = _value(families, "charter_http_requests_total", operation_id="getHealth")
            if total >= 40 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert total == 40, f"getHealth counted {total} times, not the 40 answered by all workers"
        assert _value(families, "charter_http_request_duration_seconds_count", operation_id="getHealth") == 40
        # Each worker wrote its own samples in the folder `charter serve` made.
        folders = list(scratch.glob("charter-metrics-*"))
        assert len(folders) == 1, list(scratch.iterdir())
        writers = {path.stem.rsplit("_", 1)[-1] for path in folders[0].glob("counter_*.db")}
        assert len(writers) == 2, f"only {writers} wrote metrics: the requests did not reach both workers"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)


# --- 7. PostgreSQL statement_timeout -----------------------------------------------------------

requires_postgres = pytest.mark.skipif(
    not os.environ.get("DATABASE_URL", "").startswith("postgresql"), reason="DATABASE_URL does not name PostgreSQL"
)


@pytest.mark.postgres
@requires_postgres
class TestStatementTimeout:
    def test_app_connections_have_the_configured_timeout(self, database_url, tmp_path):
        app = create_app(make_settings(database_url, tmp_path, db_statement_timeout_ms=1234))
        engine = app.app.extensions["charter"].engine
        try:
            for _ in range(2):  # a fresh connection and a pooled one
                with engine.connect() as connection:
                    assert connection.execute(text("SHOW statement_timeout")).scalar() == "1234ms"
        finally:
            engine.dispose()

    def test_long_statement_is_cancelled(self, database_url):
        engine = make_engine(database_url, statement_timeout_ms=200)
        try:
            started = time.monotonic()
            with engine.connect() as connection, pytest.raises(OperationalError) as raised:
                connection.execute(text("SELECT pg_sleep(2)"))
            assert time.monotonic() - started < 1.5
            assert type(raised.value.orig).__name__ == "QueryCanceled"
            with engine.connect() as connection:  # the connection is usable again
                assert connection.execute(text("SELECT 1")).scalar() == 1
        finally:
            engine.dispose()

    def test_zero_means_no_timeout(self, database_url):
        engine = make_engine(database_url, statement_timeout_ms=0)
        try:
            with engine.connect() as connection:
                assert connection.execute(text("SHOW statement_timeout")).scalar() == "0"
        finally:
            engine.dispose()
