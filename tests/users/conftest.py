"""Fixtures and helpers for the profile, deletion, export and administration tests: an
administrator made the way `charter create-admin` makes one, and direct database reads
through the app's own session factory."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import func, select

from persistence.accounts.models import AuthSession, User
from persistence.audit.models import AuditEvent
from persistence.tasks.models import Task
from tests.conftest import PASSWORD, Account, ContractClient, create_admin

FORBIDDEN = "/problems/forbidden"
UNAUTHORIZED = "/problems/unauthorized"
NOT_FOUND = "/problems/not-found"
CONFLICT = "/problems/conflict"
VALIDATION = "/problems/validation-error"
INVALID_CREDENTIALS = "/problems/invalid-credentials"
DEACTIVATED = "/problems/account-deactivated"


def unique_email(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}@example.com"


def login(client: ContractClient, email: str, password: str = PASSWORD, **kwargs: Any) -> dict[str, Any]:
    """Log in and return the token pair (asserting success)."""
    response = client.post("/api/v1/auth/login", json={"email": email, "password": password}, **kwargs)
    assert response.status_code == 200, response.text
    return response.json()


def register(
    client: ContractClient,
    *,
    email: str | None = None,
    display_name: str = "Test User",
    password: str = PASSWORD,
    **kwargs: Any,
) -> Account:
    """Register an account with this display name and log it in."""
    email = email or unique_email()
    response = client.post(
        "/api/v1/auth/register",
        json={"email": email, "password": password, "display_name": display_name},
        **kwargs,
    )
    assert response.status_code == 201, response.text
    tokens = login(client, email, password)
    return Account(response.json()["id"], email, password, tokens["access_token"], tokens["refresh_token"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def make_admin(app, client: ContractClient) -> Account:
    """A new administrator (services.users.create_admin, as the CLI does), logged in through the API."""
    email = unique_email("admin")
    admin_id = create_admin(app, email)
    tokens = login(client, email)
    return Account(admin_id, email, PASSWORD, tokens["access_token"], tokens["refresh_token"])


@pytest.fixture
def admin(app, client: ContractClient) -> Account:
    """A logged-in administrator."""
    return make_admin(app, client)


class Database:
    """Reads rows straight from the app's database, bypassing the API."""

    def __init__(self, app) -> None:
        self.session_factory = app.app.extensions["charter"].session_factory

    def read(self, query: Callable[[Any], Any]) -> Any:
        with self.session_factory() as db:
            return query(db)

    def user(self, user_id: str) -> User | None:
        return self.read(lambda db: db.get(User, uuid.UUID(user_id)))

    def user_by_email(self, email: str) -> User | None:
        return self.read(lambda db: db.scalars(select(User).where(User.email == email.lower())).one_or_none())

    def task_count(self, user_id: str) -> int:
        return self.read(
            lambda db: db.scalar(select(func.count()).select_from(Task).where(Task.owner_id == uuid.UUID(user_id)))
        )

    def session_count(self, user_id: str) -> int:
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


@pytest.fixture
def database(app) -> Database:
    return Database(app)


def create_task(client: ContractClient, account: Account, **fields: Any) -> dict[str, Any]:
    body = {"title": f"Task {uuid.uuid4().hex[:8]}", **fields}
    response = client.post(account.tasks_path, json=body, headers=account.headers)
    assert response.status_code == 201, response.text
    return response.json()


def collect_pages(client: ContractClient, path: str, *, headers: dict[str, str], params: Any) -> list[dict[str, Any]]:
    """Every item of a paginated listing, following next_cursor (params: a list of pairs)."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(1000):
        query = list(params) + ([("cursor", cursor)] if cursor else [])
        response = client.get(path, headers=headers, params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        items.extend(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("pagination never ended")
