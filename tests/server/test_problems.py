"""Error handling: every error is an RFC 9457 problem with the request id, internals never
leak, and a request that fails changes nothing."""

from __future__ import annotations

import json
import logging
import re
import uuid

import pytest

import handlers.auth
import handlers.meta
import services.accounts
from server.contract import bundle
from services.errors import Conflict, ProblemType
from tests.helpers import PASSWORD, assert_problem, registration, unique_email

HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
GENERATED_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
SECRET = "secret internal detail /work/main/x.py"


def _boom(*_args, **_kwargs):
    raise RuntimeError(SECRET)


def _assert_no_internals(response) -> None:
    text = response.text + json.dumps(dict(response.headers))
    for leak in ("secret internal detail", "/work/", ".py", "Traceback", "RuntimeError", 'File "'):
        assert leak not in text, leak


def _documented_methods(template: str) -> set[str]:
    return {method.upper() for method in bundle()["paths"][template] if method in HTTP_METHODS}


def _allowed(response) -> set[str]:
    return {method.strip().upper() for method in response.headers.get("allow", "").split(",") if method.strip()}


class TestUnknownPath:
    @pytest.mark.parametrize("path", ["/nope", "/api/v1/nope", "/api/v2/health", "/api/v1/auth/me/extra"])
    def test_404_problem(self, client, path):
        response = client.get(path, validate=False)
        problem = assert_problem(response, 404, "/problems/not-found")
        assert problem["instance"] == path
        assert GENERATED_ID.match(response.headers["x-request-id"])

    def test_each_request_gets_its_own_id(self, client):
        first = client.get("/nope", validate=False).headers["x-request-id"]
        second = client.get("/nope", validate=False).headers["x-request-id"]
        assert first != second


class TestMethodNotAllowed:
    @pytest.mark.parametrize(
        ("method", "path", "template"),
        [
            ("DELETE", "/api/v1/auth/me", "/api/v1/auth/me"),
            ("GET", "/api/v1/auth/login", "/api/v1/auth/login"),
            ("PUT", "/api/v1/health", "/api/v1/health"),
        ],
    )
    def test_405_problem_with_allow(self, client, method, path, template):
        response = client.request(method, path, validate=False)
        problem = assert_problem(response, 405, "/problems/method-not-allowed")
        assert problem["instance"] == path
        allowed = _allowed(response)
        assert _documented_methods(template) <= allowed
        assert method not in allowed

    @pytest.mark.parametrize(
        ("method", "suffix", "template"),
        [
            ("POST", "/tasks/{task}", "/api/v1/users/{user_id}/tasks/{task_id}"),
            ("DELETE", "/tasks", "/api/v1/users/{user_id}/tasks"),
            ("GET", "/tasks/{task}/complete", "/api/v1/users/{user_id}/tasks/{task_id}/complete"),
        ],
    )
    def test_allow_lists_every_method_of_the_path(self, client, method, suffix, template):
        path = f"/api/v1/users/{uuid.uuid4()}" + suffix.format(task=uuid.uuid4())
        response = client.request(method, path, validate=False)
        assert_problem(response, 405, "/problems/method-not-allowed")
        allowed = _allowed(response)
        assert _documented_methods(template) <= allowed  # every operation of the path, not only the first
        assert method not in allowed


class TestRequestBodyErrors:
    def test_wrong_content_type_is_415(self, client):
        body = json.dumps({"email": "ada@example.com", "password": PASSWORD})
        response = client.post("/api/v1/auth/login", content=body, headers={"Content-Type": "text/plain"})
        assert_problem(response, 415, "/problems/unsupported-media-type")

    @pytest.mark.parametrize("raw", [b"\xff\xfe", b'{"email": "\xe9@example.com", "password": "xxxxxxxxxx"}'])
    def test_body_that_is_not_utf8_is_400(self, client, raw):
        response = client.post("/api/v1/auth/login", content=raw, headers={"Content-Type": "application/json"})
        problem = assert_problem(response, 400, "/problems/validation-error")
        assert problem["errors"][0]["pointer"] == ""

    @pytest.mark.parametrize("raw", [b'{"email":', b"{'email': 'a@example.com'}", b'{"email": "a"} trailing', b"nul"])
    def test_malformed_json_is_400_at_the_root(self, client, raw):
        response = client.post("/api/v1/auth/login", content=raw, headers={"Content-Type": "application/json"})
        problem = assert_problem(response, 400, "/problems/validation-error")
        assert problem["errors"][0]["pointer"] == ""
        assert problem["errors"][0]["message"]

    def test_empty_required_body_is_400(self, client):
        response = client.post("/api/v1/auth/login", content=b"", headers={"Content-Type": "application/json"})
        problem = assert_problem(response, 400, "/problems/validation-error")
        assert problem["errors"][0]["pointer"] == ""

    @pytest.mark.parametrize("body", [[], "text", 42, None])
    def test_json_that_is_not_an_object_is_400(self, client, body):
        response = client.post(
            "/api/v1/auth/login", content=json.dumps(body), headers={"Content-Type": "application/json"}
        )
        assert_problem(response, 400, "/problems/validation-error")

    def test_every_invalid_field_is_named(self, client):
        response = client.post("/api/v1/auth/register", json={"email": "not-an-email", "password": 7})
        problem = assert_problem(response, 400, "/problems/validation-error")
        pointers = {error["pointer"] for error in problem["errors"]}
        assert {"/email", "/password", "/display_name"} <= pointers


class TestRequestId:
    @pytest.mark.parametrize("request_id", ["client-id-123", "a.b_c:d-E", "x" * 128])
    def test_well_formed_id_is_echoed_and_used_in_problems(self, client, request_id):
        ok = client.get("/api/v1/health", headers={"X-Request-ID": request_id})
        assert ok.headers["x-request-id"] == request_id
        failed = client.post("/api/v1/auth/login", json={}, headers={"X-Request-ID": request_id})
        problem = assert_problem(failed, 400)
        assert problem["request_id"] == request_id
        missing = client.get("/nope", headers={"X-Request-ID": request_id}, validate=False)
        assert assert_problem(missing, 404)["request_id"] == request_id

    @pytest.mark.parametrize("request_id", ["has spaces", "x" * 129, "x" * 200, "semi;colon", 'quote"d', "é"])
    def test_malformed_id_is_replaced(self, client, request_id):
        response = client.get("/nope", headers={"X-Request-ID": request_id.encode()}, validate=False)
        problem = assert_problem(response, 404)
        generated = response.headers["x-request-id"]
        assert generated != request_id
        assert GENERATED_ID.match(generated)
        assert problem["request_id"] == generated

    def test_only_one_id_header_is_answered(self, client):
        response = client.get("/api/v1/health", headers={"X-Request-ID": "mine"})
        assert response.headers.get_list("x-request-id") == ["mine"]


class TestUnexpectedErrors:
    def test_exception_in_a_service_is_500_without_internals(self, client, monkeypatch, caplog):
        monkeypatch.setattr(handlers.auth.accounts, "register", _boom)
        with caplog.at_level(logging.ERROR):
            response = client.post("/api/v1/auth/register", json=registration())
        problem = assert_problem(response, 500, "/problems/internal-error")
        assert problem["instance"] == "/api/v1/auth/register"
        _assert_no_internals(response)
        # ... but the log has the exception, under the same request id.
        logged = [
            str(record.msg) + str(record.exc_info) for record in caplog.records if record.levelno >= logging.ERROR
        ]
        assert any(SECRET in line and problem["request_id"] in line for line in logged), logged

    def test_exception_while_authenticating_is_500_without_internals(self, client, account, monkeypatch):
        monkeypatch.setattr(services.accounts, "current_user", _boom)
        response = client.get("/api/v1/auth/me", headers=account.headers)
        assert_problem(response, 500, "/problems/internal-error")
        _assert_no_internals(response)

    def test_app_recovers_after_an_exception(self, client, account, monkeypatch):
        with monkeypatch.context() as patch:
            patch.setattr(services.accounts, "current_user", _boom)
            assert client.get("/api/v1/auth/me", headers=account.headers).status_code == 500
        assert client.get("/api/v1/auth/me", headers=account.headers).status_code == 200

    def test_response_that_breaks_the_contract_is_500(self, client, monkeypatch):
        real = handlers.meta.json_answer
        monkeypatch.setattr(handlers.meta, "json_answer", lambda body, *a, **k: real(body | {"version": "not-semver"}))
        response = client.get("/")
        problem = assert_problem(response, 500, "/problems/internal-error")
        assert "not-semver" not in response.text
        assert "does not conform" not in problem["detail"]
        _assert_no_internals(response)

    def test_response_missing_a_required_member_is_500(self, client, monkeypatch):
        real = handlers.meta.json_answer
        monkeypatch.setattr(
            handlers.meta, "json_answer", lambda body, *a, **k: real({k: v for k, v in body.items() if k != "name"})
        )
        assert_problem(client.get("/"), 500, "/problems/internal-error")


class TestFailedRequestsChangeNothing:
    def _can_register(self, client, email: str) -> bool:
        response = client.post("/api/v1/auth/register", json=registration(email))
        assert response.status_code in (201, 409), response.text
        return response.status_code == 201

    def test_invalid_body_creates_no_user(self, client):
        email = unique_email("problem")
        invalid = client.post("/api/v1/auth/register", json=registration(email) | {"role": "admin"})
        assert_problem(invalid, 400, "/problems/validation-error")
        login = client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
        assert_problem(login, 401, "/problems/invalid-credentials")
        assert self._can_register(client, email)

    def test_domain_error_after_a_write_rolls_it_back(self, client, monkeypatch):
        email = unique_email("problem")

        def refuse(_user):
            raise Conflict("refused after the user was written")

        with monkeypatch.context() as patch:
            patch.setattr(handlers.auth, "user_representation", refuse)
            assert_problem(client.post("/api/v1/auth/register", json=registration(email)), 409)
        assert self._can_register(client, email)

    def test_unexpected_error_after_a_write_rolls_it_back(self, client, monkeypatch):
        email = unique_email("problem")
        with monkeypatch.context() as patch:
            patch.setattr(handlers.auth, "user_representation", _boom)
            assert_problem(client.post("/api/v1/auth/register", json=registration(email)), 500)
        assert self._can_register(client, email)

    def test_response_that_breaks_the_contract_rolls_back(self, client, monkeypatch):
        email = unique_email("problem")
        real = handlers.auth.user_representation
        with monkeypatch.context() as patch:
            patch.setattr(handlers.auth, "user_representation", lambda user: real(user) | {"email": "not-an-email"})
            assert_problem(client.post("/api/v1/auth/register", json=registration(email)), 500)
        assert self._can_register(client, email)

    def test_failed_login_starts_no_session(self, client, account):
        wrong = client.post("/api/v1/auth/login", json={"email": account.email, "password": "wrong password!"})
        assert_problem(wrong, 401, "/problems/invalid-credentials")
        # The account's own session is untouched and still works.
        assert client.get("/api/v1/auth/me", headers=account.headers).status_code == 200


class SeatsTaken(Conflict):
    """An error of an area that does not exist yet: declared in its own module, nowhere else."""

    problem = ProblemType("/problems/test-seats-taken", "Seats taken", 409)


def test_an_error_declared_in_a_new_module_is_answered_with_its_own_problem(client, monkeypatch):
    def refuse(**_kwargs):
        raise SeatsTaken("Every seat of this plan is taken.")

    monkeypatch.setattr(services.accounts, "register", refuse)
    response = client.post("/api/v1/auth/register", json=registration())

    problem = assert_problem(response, 409, "/problems/test-seats-taken")
    assert problem["title"] == "Seats taken" and problem["detail"] == "Every seat of this plan is taken."
