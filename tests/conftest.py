"""Shared fixtures: a freshly migrated database (SQLite, or PostgreSQL when DATABASE_URL names
it), one app per test session, and a client that checks every answer against the contract
with openapi-core, independently of connexion."""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from openapi_core import Config, OpenAPI
from openapi_core.testing import MockRequest, MockResponse
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from starlette.testclient import TestClient

from server.app import create_app
from server.cli import migrate
from server.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
TEST_SECRET = "test-secret-that-is-at-least-32-bytes-long!"
PASSWORD = "correct horse battery staple"


def _postgres_url() -> str | None:
    url = os.environ.get("DATABASE_URL", "")
    return url if url.startswith("postgresql") else None


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A new, empty, migrated database for this test session.

    On PostgreSQL a database named ``charter_test_<random>`` is created on the server of
    DATABASE_URL and dropped afterwards, so the suite never touches existing data.
    """
    server_url = _postgres_url()
    if server_url is None:
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'charter.db'}"
        migrate(url)
        yield url
        return
    with temporary_postgres_database(server_url, prefix="charter_test") as url:
        migrate(url)
        yield url


@contextlib.contextmanager
def temporary_postgres_database(server_url: str, *, prefix: str) -> Iterator[str]:
    """A new empty database ``<prefix>_<random>`` on the server of `server_url`, dropped on exit
    (its connections terminated first). Yields the database's URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(make_url(server_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :name"),
                {"name": name},
            )
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


UNREACHABLE_LIMITS: dict[str, Any] = {
    "rate_limit_enabled": True,
    "rate_limit_per_minute": 1_000_000,
    "rate_limit_per_hour": 10_000_000,
    "rate_limit_probes_per_minute": 1_000_000,
    "rate_limit_user_per_minute": 1_000_000,
    "rate_limit_login": "1000000/minute",
    "rate_limit_login_account": "1000000/minute",
    "rate_limit_register": "1000000/minute",
    "rate_limit_refresh": "1000000/minute",
    "rate_limit_refresh_session": "1000000/minute",
}


def make_settings(database_url: str, var_dir: Path, **overrides: Any) -> Settings:
    """Settings for tests: no `.env`, a fixed secret, the cheapest bcrypt cost."""
    values: dict[str, Any] = {
        "env": "test",
        "database_url": database_url,
        "jwt_secret": TEST_SECRET,
        "bcrypt_rounds": 4,
        "var_dir": var_dir,
        "log_level": "WARNING",
        # Limits on, so every answer carries (and the contract checks) the RateLimit-* headers,
        # but far above any test's pace; the tests of the limits build apps of their own.
        **UNREACHABLE_LIMITS,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


@pytest.fixture(scope="session")
def settings(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return make_settings(database_url, tmp_path_factory.mktemp("var"))


@pytest.fixture(scope="session")
def app(settings: Settings):
    """One app for the whole session (connexion's start-up grows with the spec)."""
    return create_app(settings)


@pytest.fixture(scope="session")
def openapi() -> OpenAPI:
    """The contract as openapi-core reads it from the split source files."""
    return OpenAPI.from_file_path(
        str(ROOT / "openapi" / "openapi.yaml"),
        config=Config(extra_media_type_deserializers={"application/problem+json": json.loads}),
    )


class ContractClient:
    """A test client whose every answer is validated against the contract by openapi-core.

    Pass ``validate=False`` only for a request that no operation covers (unknown path or
    method), where the contract has nothing to say.
    """

    def __init__(self, client: TestClient, openapi: OpenAPI) -> None:
        self.client = client
        self.openapi = openapi

    def request(self, method: str, path: str, *, validate: bool = True, **kwargs: Any):
        response = self.client.request(method, path, **kwargs)
        if validate:
            self.check(method, path, response, kwargs.get("params"))
        return response

    def check(self, method: str, path: str, response: Any, params: Any = None) -> None:
        request_path, _, query = path.partition("?")
        args = dict(params or {})
        if query:
            args.update(dict(pair.split("=", 1) for pair in query.split("&") if "=" in pair))
        mock_request = MockRequest("http://testserver", method.lower(), request_path, args=args)
        content_type = response.headers.get("content-type", "application/json").split(";")[0]
        mock_response = MockResponse(
            data=response.content,
            status_code=response.status_code,
            content_type=content_type,
            headers=dict(response.headers),
        )
        self.openapi.validate_response(mock_request, mock_response)

    def get(self, path: str, **kwargs: Any):
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any):
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any):
        return self.request("PUT", path, **kwargs)

    def patch(self, path: str, **kwargs: Any):
        return self.request("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any):
        return self.request("DELETE", path, **kwargs)


@pytest.fixture(scope="session")
def client(app, openapi: OpenAPI) -> Iterator[ContractClient]:
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield ContractClient(test_client, openapi)


@dataclass
class Account:
    """A registered, logged-in user for a test."""

    id: str
    email: str
    password: str
    access_token: str
    refresh_token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}

    @property
    def tasks_path(self) -> str:
        return f"/api/v1/users/{self.id}/tasks"


def register_and_login(client: ContractClient, *, password: str = PASSWORD) -> Account:
    """Register a new account with a unique email and log it in."""
    email = f"user-{uuid.uuid4().hex[:12]}@example.com"
    registered = client.post(
        "/api/v1/auth/register", json={"email": email, "password": password, "display_name": "Test User"}
    )
    assert registered.status_code == 201, registered.text
    tokens = client.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert tokens.status_code == 200, tokens.text
    body = tokens.json()
    return Account(registered.json()["id"], email, password, body["access_token"], body["refresh_token"])


@pytest.fixture
def account(client: ContractClient) -> Account:
    return register_and_login(client)


@pytest.fixture
def other_account(client: ContractClient) -> Account:
    return register_and_login(client)


def create_admin(app: Any, email: str, *, display_name: str = "Admin") -> str:
    """Make an administrator the way `charter create-admin` does (services.users.create_admin,
    in a unit of work of its own) in `app`'s database; returns the account's id."""
    from persistence.unit_of_work import UnitOfWork
    from services import users

    context = app.app.extensions["charter"]
    with UnitOfWork(context.session_factory) as uow:
        admin = users.create_admin(
            uow=uow,
            clock=context.clock,
            passwords=context.auth.passwords,
            email=email,
            password=PASSWORD,
            display_name=display_name,
        )
        return str(admin.id)


def assert_problem(response: Any, status: int, type_: str | None = None) -> dict[str, Any]:
    """Assert an RFC 9457 problem answer with this status (and type) and a request id."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status
    assert body["title"]
    assert body["request_id"] == response.headers["x-request-id"]
    if type_ is not None:
        assert body["type"] == type_
    return body


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """The app with the default threads and pool, served by uvicorn over HTTP, on a fresh
    database of each kind (so the race and pool tests prove both, whichever DATABASE_URL names).
    PostgreSQL is skipped, saying so, only when no server answers."""
    from tests.served import Served, migrated_database, serve

    workdir = tmp_path_factory.mktemp(f"served-{request.param}")
    with migrated_database(request.param, workdir) as url:
        served_app = create_app(make_settings(url, workdir))
        try:
            with serve(served_app) as base_url:
                yield Served(base_url, served_app, request.param)
        finally:
            served_app.app.extensions["charter"].engine.dispose()
