"""The suite's shared helpers, in one place: constants, databases, settings and apps, the
contract-checking client, accounts (register, log in, administrators), direct reads of the
database, tasks and listings, and the assertions on problem answers.

The conftest.py files hold fixtures only (plus, in an area's conftest, what only that area
uses); every helper two areas need is here, once. The request helpers take any client with
``.post/.get(path, json=..., headers=..., params=...)`` answering objects with ``.status_code``,
``.json()`` and ``.text``: the in-process `ContractClient` as well as an ``httpx.Client`` on a
served app.
"""

from __future__ import annotations

import contextlib
import logging
import os
import ssl
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
from _pytest.logging import LogCaptureHandler
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from starlette.testclient import TestClient

from persistence.accounts.models import AuthSession, User
from persistence.audit.models import AuditEvent
from persistence.tasks.models import Task
from server.app import create_app
from server.cli import migrate
from server.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
TEST_SECRET = "test-secret-that-is-at-least-32-bytes-long!"
PASSWORD = "correct horse battery staple"
"""The password of every account the helpers make, unless a test chooses another."""

# Problem types (the `type` of a problem+json answer) that tests in several areas expect.
UNAUTHORIZED = "/problems/unauthorized"
FORBIDDEN = "/problems/forbidden"
NOT_FOUND = "/problems/not-found"
CONFLICT = "/problems/conflict"
VALIDATION = "/problems/validation-error"
PRECONDITION_FAILED = "/problems/precondition-failed"
INVALID_CREDENTIALS = "/problems/invalid-credentials"
DEACTIVATED = "/problems/account-deactivated"


# --- databases -------------------------------------------------------------------------------


def postgres_url_in_environment() -> str | None:
    """DATABASE_URL when it names PostgreSQL (the suite then runs on PostgreSQL), else None."""
    url = os.environ.get("DATABASE_URL", "")
    return url if url.startswith("postgresql") else None


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


@contextlib.contextmanager
def migrated_database(postgres_server: str | None, *, sqlite_dir: Path, prefix: str) -> Iterator[str]:
    """A new database migrated to head; yields its URL.

    With `postgres_server` (a server URL) it is a temporary database ``<prefix>_<random>`` there,
    dropped on exit (`temporary_postgres_database`); without, a SQLite file ``charter.db`` in
    `sqlite_dir`."""
    if postgres_server is None:
        url = f"sqlite:///{sqlite_dir / 'charter.db'}"
        migrate(url)
        yield url
        return
    with temporary_postgres_database(postgres_server, prefix=prefix) as url:
        migrate(url)
        yield url


# --- settings, apps and the contract-checking client -----------------------------------------


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
    """Settings for tests: no `.env`, a fixed secret (TEST_SECRET), the cheapest bcrypt cost, and
    rate limits on but far above any test's pace (UNREACHABLE_LIMITS); `overrides` win."""
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


class ContractClient:
    """A test client whose every answer is validated against the contract by openapi-core.

    Wraps a Starlette ``TestClient`` (in process) or an ``httpx.Client`` (a real server). Pass
    ``validate=False`` only for a request that no operation covers (unknown path or method),
    where the contract has nothing to say.
    """

    def __init__(self, client: Any, openapi: OpenAPI) -> None:
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


@contextlib.contextmanager
def app_client(database_url: str, var_dir: Path, openapi: OpenAPI, **overrides: Any) -> Iterator[tuple[Any, Any]]:
    """An app of its own on `database_url` (`make_settings` with `overrides`), started (lifespan
    included) behind a `ContractClient`. Yields ``(app, client)``; disposes of the app's engine
    on exit."""
    app = create_app(make_settings(database_url, var_dir, **overrides))
    try:
        with TestClient(app, raise_server_exceptions=False) as test_client:
            yield app, ContractClient(test_client, openapi)
    finally:
        app.app.extensions["charter"].engine.dispose()


def session_factory(app: Any) -> sessionmaker[Session]:
    """The SQLAlchemy session factory of `app` (a connexion app made by `create_app`), to read
    or arrange rows the API cannot (e.g. old timestamps)."""
    return app.app.extensions["charter"].session_factory


@contextlib.contextmanager
def root_logging_kept() -> Iterator[None]:
    """Put the root logger's handlers and level back when the block ends: `create_app` points
    the root logger at the ``sys.stderr`` of the moment, often a capture stream closed after the
    test. pytest's own capture handlers are taken as they are at the end (those of the phase
    that is running then), never brought back from the start."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        capturing = [handler for handler in root.handlers if isinstance(handler, LogCaptureHandler)]
        root.handlers[:] = [handler for handler in handlers if not isinstance(handler, LogCaptureHandler)]
        root.handlers.extend(capturing)
        root.setLevel(level)


# --- accounts --------------------------------------------------------------------------------


def unique_email(prefix: str = "user") -> str:
    """A new address ``<prefix>-<12 random hex digits>@example.com``: no account has it yet."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}@example.com"


def registration(
    email: str | None = None, *, password: str = PASSWORD, display_name: str = "Test User"
) -> dict[str, str]:
    """The JSON body of ``POST /api/v1/auth/register`` (a `unique_email()` unless `email` is given)."""
    return {"email": email or unique_email(), "password": password, "display_name": display_name}


def bearer(access_token: str) -> dict[str, str]:
    """The headers that present `access_token`: ``{"Authorization": "Bearer <token>"}``."""
    return {"Authorization": f"Bearer {access_token}"}


def session_id_of(access_token: str) -> str:
    """The session (the `sid` claim) an access token signed with TEST_SECRET names."""
    return jwt.decode(access_token, TEST_SECRET, algorithms=["HS256"], audience="charter-api")["sid"]


@dataclass
class Tokens:
    """The tokens of one session, as ``POST /api/v1/auth/login`` answers them."""

    access_token: str
    refresh_token: str

    @property
    def headers(self) -> dict[str, str]:
        """The Authorization header of the access token (`bearer`)."""
        return bearer(self.access_token)

    @property
    def session_id(self) -> str:
        """The id of the session the tokens belong to (`session_id_of`)."""
        return session_id_of(self.access_token)


@dataclass(kw_only=True)
class Account(Tokens):
    """A registered user and the tokens of one of its sessions (`register_and_login`)."""

    id: str
    email: str
    password: str

    @property
    def tasks_path(self) -> str:
        """The path of the account's task collection."""
        return f"/api/v1/users/{self.id}/tasks"


def register(
    client: Any, email: str | None = None, *, password: str = PASSWORD, display_name: str = "Test User"
) -> dict[str, Any]:
    """Register an account (`registration`); asserts 201 and returns the answer's body (the
    user: ``id``, ``email``, ``display_name``, …). Does not log in."""
    response = client.post(
        "/api/v1/auth/register", json=registration(email, password=password, display_name=display_name)
    )
    assert response.status_code == 201, response.text
    return response.json()


def login(client: Any, email: str, password: str = PASSWORD, **request: Any) -> Tokens:
    """Log in (`request`: further arguments of the POST, e.g. ``headers``); asserts 200 and
    returns the new session's `Tokens`."""
    response = client.post("/api/v1/auth/login", json={"email": email, "password": password}, **request)
    assert response.status_code == 200, response.text
    body = response.json()
    return Tokens(body["access_token"], body["refresh_token"])


def register_and_login(
    client: Any, email: str | None = None, *, password: str = PASSWORD, display_name: str = "Test User"
) -> Account:
    """Register an account (a `unique_email()` unless `email` is given) and log it in once;
    asserts both succeed (`register`, `login`) and returns the `Account`."""
    email = email or unique_email()
    user = register(client, email, password=password, display_name=display_name)
    tokens = login(client, email, password)
    return Account(
        access_token=tokens.access_token,
        refresh_token=tokens.refresh_token,
        id=user["id"],
        email=email,
        password=password,
    )


def create_admin(app: Any, email: str, *, display_name: str = "Admin", password: str = PASSWORD) -> str:
    """Make an administrator with `password` (PASSWORD) the way `charter create-admin` does
    (services.users.create_admin, in a unit of work of its own) in `app`'s database; returns the
    account's id. Does not log in."""
    from persistence.unit_of_work import UnitOfWork
    from services import users

    context = app.app.extensions["charter"]
    with UnitOfWork(context.session_factory) as uow:
        admin = users.create_admin(
            uow=uow,
            clock=context.clock,
            passwords=context.auth.passwords,
            email=email,
            password=password,
            display_name=display_name,
        )
        return str(admin.id)


def create_admin_and_login(app: Any, client: Any) -> Account:
    """A new administrator (`create_admin` on `app`, a ``unique_email("admin")``) logged in
    through `client` (`login`, which asserts 200); returns the `Account`."""
    email = unique_email("admin")
    admin_id = create_admin(app, email)
    tokens = login(client, email)
    return Account(
        access_token=tokens.access_token,
        refresh_token=tokens.refresh_token,
        id=admin_id,
        email=email,
        password=PASSWORD,
    )


# --- reading the database --------------------------------------------------------------------


class Database:
    """Reads rows straight from an app's database (its own session factory), bypassing the API."""

    def __init__(self, app: Any) -> None:
        self.session_factory = session_factory(app)

    def read(self, query: Any) -> Any:
        """``query(session)`` in a session of its own; returns what it returns."""
        with self.session_factory() as db:
            return query(db)

    def user(self, user_id: str) -> User | None:
        """The user row with this id, or None."""
        return self.read(lambda db: db.get(User, uuid.UUID(user_id)))

    def user_by_email(self, email: str) -> User | None:
        """The user row with this email (compared lower-cased, as stored), or None."""
        return self.read(lambda db: db.scalars(select(User).where(User.email == email.lower())).one_or_none())

    def task_count(self, user_id: str) -> int:
        """How many tasks the user owns."""
        return self.read(
            lambda db: db.scalar(select(func.count()).select_from(Task).where(Task.owner_id == uuid.UUID(user_id)))
        )

    def session_count(self, user_id: str) -> int:
        """How many sessions the user has (open or ended, as long as they are stored)."""
        return self.read(
            lambda db: db.scalar(
                select(func.count()).select_from(AuthSession).where(AuthSession.user_id == uuid.UUID(user_id))
            )
        )

    def audit_events(self, user_id: str) -> list[AuditEvent]:
        """Every audit event by or about the account, oldest first."""
        uid = uuid.UUID(user_id)
        return self.read(
            lambda db: list(
                db.scalars(
                    select(AuditEvent)
                    .where((AuditEvent.actor_id == uid) | (AuditEvent.subject_id == uid))
                    .order_by(AuditEvent.occurred_at, AuditEvent.id)
                )
            )
        )


# --- tasks and listings ----------------------------------------------------------------------


def create_task(client: Any, account: Account, **fields: Any) -> dict[str, Any]:
    """Create a task for `account` (`fields` of the body; the title defaults to a unique
    lower-case ``task <hex>``); asserts 201 and returns the task."""
    body = {"title": f"task {uuid.uuid4().hex[:8]}", **fields}
    response = client.post(account.tasks_path, json=body, headers=account.headers)
    assert response.status_code == 201, response.text
    return response.json()


Query = Mapping[str, Any] | Sequence[tuple[str, Any]]
"""A query string: a mapping (a list value repeats the parameter) or a sequence of (name, value) pairs."""


def _query_pairs(params: Query) -> list[tuple[str, Any]]:
    """`params` as (name, value) pairs, a list value spread into one pair per element."""
    items = params.items() if isinstance(params, Mapping) else params
    return [(name, one) for name, value in items for one in (value if isinstance(value, list | tuple) else [value])]


def pages(client: Any, path: str, *, headers: dict[str, str], params: Query = ()) -> Iterator[dict[str, Any]]:
    """Each page (the answer's body) of the paginated listing at `path` with the query `params`,
    following ``next_cursor`` until it is null. Asserts every answer is 200; fails when the
    listing has not ended after 1000 pages."""
    query = _query_pairs(params)
    cursor: str | None = None
    for _ in range(1000):
        response = client.get(path, headers=headers, params=query + ([("cursor", cursor)] if cursor else []))
        assert response.status_code == 200, response.text
        page = response.json()
        yield page
        cursor = page["next_cursor"]
        if cursor is None:
            return
    raise AssertionError(f"the pagination of {path} never ended")


def collect_pages(client: Any, path: str, *, headers: dict[str, str], params: Query = ()) -> list[dict[str, Any]]:
    """Every item of the paginated listing at `path`, in the order of its pages (`pages`)."""
    return [item for page in pages(client, path, headers=headers, params=params) for item in page["items"]]


# --- answers ---------------------------------------------------------------------------------


def assert_problem(response: Any, status: int, type_: str | None = None) -> dict[str, Any]:
    """Assert an RFC 9457 problem answer: this status, the problem+json media type, a title, the
    request id of the ``X-Request-ID`` header and (when given) this `type_`. Returns the problem."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status
    assert body["title"]
    assert body["request_id"] == response.headers["x-request-id"]
    if type_ is not None:
        assert body["type"] == type_
    return body


def instant(timestamp: str) -> datetime:
    """An RFC 3339 timestamp of an answer (``…Z`` or an offset) as an aware datetime."""
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00"))


T0 = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
"""The instant the `clock` fixture (tests/conftest.py) stands at when a test starts."""


class RecordingQueue:
    """A `JobQueue` that remembers each delivery (job id, when) and runs nothing."""

    def __init__(self) -> None:
        self.deliveries: list[tuple[uuid.UUID, datetime]] = []

    def deliver(self, job_id: uuid.UUID, *, at: datetime) -> None:
        self.deliveries.append((job_id, at))

    def of(self, job_id: uuid.UUID) -> list[datetime]:
        return [at for delivered, at in self.deliveries if delivered == job_id]


@contextlib.contextmanager
def serving_on_loopback(handler: type[BaseHTTPRequestHandler], *, tls: ssl.SSLContext | None = None) -> Iterator[int]:
    """Serve `handler` on a free port of 127.0.0.1 from a daemon thread (HTTPS with `tls`, a
    server context); yields the port, and shuts the server down and joins the thread when the
    block ends. For the local sites and receivers the tests talk to (never another address)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def run_job(app: Any, job_id: str, worker_id: str = "test") -> Any:
    """Run the queued job `job_id` now, as a worker would, with the connexion `app`'s job engine,
    database and clock (the session app, or a served one's `Served.app`); its `RunReport`."""
    from persistence.unit_of_work import UnitOfWork
    from services import jobs as job_services

    context = app.app.extensions["charter"]
    return job_services.run(
        engine=context.jobs,
        unit_of_work=lambda: UnitOfWork(context.session_factory),
        clock=context.clock,
        job_id=uuid.UUID(job_id),
        worker_id=worker_id,
    )


BIG_PLAN = "business_monthly"
"""The plan `on_plan` puts an account on for tests that use more than the free plan allows
(its quotas: 50 chatbots, 50,000 messages and crawled pages a month, 5,000 documents, 20 GiB,
25 API keys) but are not about quotas."""


def on_plan(app: Any, user_id: str | uuid.UUID, plan_code: str = BIG_PLAN) -> None:
    """Put the account on `plan_code` directly in the database (its subscription, made on the
    free plan first if it has none), as a paid subscription would: for tests that need more
    than the free plan's quotas and are not about subscribing."""
    from persistence.unit_of_work import UnitOfWork
    from services.subscriptions import current_subscription

    context = app.app.extensions["charter"]
    owner_id = user_id if isinstance(user_id, uuid.UUID) else uuid.UUID(user_id)
    with UnitOfWork(context.session_factory) as uow:
        subscription = current_subscription(uow, owner_id=owner_id, clock=context.clock, lock=True)
        subscription.plan_code = plan_code
