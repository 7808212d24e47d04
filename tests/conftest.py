"""Shared fixtures: a freshly migrated database (SQLite, or PostgreSQL when DATABASE_URL names
it), one app per test session, a client that checks every answer against the contract with
openapi-core (independently of connexion), accounts, an administrator and direct database reads.

Fixtures only: the helpers they use, and every helper shared by the tests, are in tests/helpers.py.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator

import pytest
from openapi_core import Config, OpenAPI
from starlette.testclient import TestClient

from adapters import resilience
from persistence.accounts.models import User
from persistence.unit_of_work import UnitOfWork
from server.app import create_app
from server.settings import Settings
from services.clock import FrozenClock
from tests.helpers import (
    ROOT,
    T0,
    Account,
    ContractClient,
    Database,
    RecordingQueue,
    create_admin_and_login,
    make_settings,
    migrated_database,
    postgres_url_in_environment,
    register_and_login,
    root_logging_kept,
)


@pytest.fixture(autouse=True)
def closed_breakers() -> Iterator[None]:
    """Every test starts and ends with the process's dependency breakers closed: a breaker one
    test opened must not make another's readiness `degraded` (`adapters.resilience`)."""
    resilience.reset_all()
    yield
    resilience.reset_all()


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A new, empty, migrated database for this test session.

    On PostgreSQL a database named ``charter_test_<random>`` is created on the server of
    DATABASE_URL and dropped afterwards, so the suite never touches existing data.
    """
    with migrated_database(
        postgres_url_in_environment(), sqlite_dir=tmp_path_factory.mktemp("db"), prefix="charter_test"
    ) as url:
        yield url


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


@pytest.fixture(scope="session")
def client(app, openapi: OpenAPI) -> Iterator[ContractClient]:
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield ContractClient(test_client, openapi)


@pytest.fixture
def account(client: ContractClient) -> Account:
    """A new registered, logged-in user."""
    return register_and_login(client)


@pytest.fixture
def other_account(client: ContractClient) -> Account:
    """Another new registered, logged-in user."""
    return register_and_login(client)


@pytest.fixture
def admin(app, client: ContractClient) -> Account:
    """A new logged-in administrator, made as `charter create-admin` makes one."""
    return create_admin_and_login(app, client)


@pytest.fixture
def database(app) -> Database:
    """Direct reads of the session's database, bypassing the API."""
    return Database(app)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """For a test that calls `create_app`, which reconfigures the root logger: the logger is put
    back afterwards (`root_logging_kept`)."""
    with root_logging_kept():
        yield


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """The app with the default threads and pool, served by uvicorn over HTTP, on a fresh
    database of each kind (so the race and pool tests prove both, whichever DATABASE_URL names).
    PostgreSQL is skipped, saying so, only when no server answers."""
    from tests.served import Served, migrated_database_of_kind, serve

    workdir = tmp_path_factory.mktemp(f"served-{request.param}")
    with migrated_database_of_kind(request.param, workdir) as url:
        served_app = create_app(make_settings(url, workdir))
        try:
            with serve(served_app) as base_url:
                yield Served(base_url, served_app, request.param)
        finally:
            served_app.app.extensions["charter"].engine.dispose()


@pytest.fixture
def new_uow(app) -> Callable[[], UnitOfWork]:
    """Units of work on the session app's database, for service tests (`with new_uow() as uow:`)."""
    factory = app.app.extensions["charter"].session_factory
    return lambda: UnitOfWork(factory)


@pytest.fixture
def owner(account, new_uow) -> User:
    """The `account` fixture's user, as stored."""
    with new_uow() as uow:
        user = uow.users.get(uuid.UUID(account.id))
    assert user is not None
    return user


@pytest.fixture
def clock() -> FrozenClock:
    """A clock standing at `tests.helpers.T0` until the test moves it (service tests)."""
    return FrozenClock(T0)


@pytest.fixture
def queue() -> RecordingQueue:
    """A job queue that records deliveries and runs nothing (service tests run jobs themselves)."""
    return RecordingQueue()
