"""Account lockout after repeated failed logins: 429 with Retry-After even for the right
password, alike for unknown emails, reset by a success or a password reset (bounded in time:
tests/accounts/test_account_rules.py, on a frozen clock),
and audited without the email in plain text."""

from __future__ import annotations

import hashlib
import json
import uuid

import pytest
from sqlalchemy import select

from persistence.audit.models import AuditEvent
from tests.accounts.conftest import NO_ROUTE_LIMITS, STRONG_PASSWORD, ask_reset_token
from tests.helpers import PASSWORD, app_client, assert_problem, register, session_factory, unique_email

LOGIN = "/api/v1/auth/login"
WRONG = "not the right password"
LOCKOUT_SECONDS = 60


@pytest.fixture(scope="module")
def locking(database_url, tmp_path_factory, openapi, smtp_server):
    """3 failures within a minute lock an email for a minute; mail goes to the local SMTP server."""
    with app_client(
        database_url,
        tmp_path_factory.mktemp("lockout"),
        openapi,
        login_max_failures=3,
        login_failure_window_seconds=60,
        login_lockout_seconds=LOCKOUT_SECONDS,
        **NO_ROUTE_LIMITS,
        **smtp_server.settings,
    ) as pair:
        yield pair


def _attempt(client, email: str, password: str):
    return client.post(LOGIN, json={"email": email, "password": password})


def _fail(client, email: str, times: int) -> None:
    for _ in range(times):
        assert_problem(_attempt(client, email, WRONG), 401, "/problems/invalid-credentials")


def _assert_locked(response, *, lockout_seconds: int) -> dict:
    problem = assert_problem(response, 429, "/problems/login-locked")
    retry_after = response.headers["retry-after"]
    assert retry_after.isdigit(), retry_after
    assert 1 <= int(retry_after) <= lockout_seconds + 1
    return problem


def _digest(email: str) -> str:
    return hashlib.sha256(email.lower().encode()).hexdigest()


def _events(app, *, digest: str) -> list[AuditEvent]:
    """Login audit events whose details name this email digest, oldest first."""
    with session_factory(app)() as db:
        rows = db.scalars(
            select(AuditEvent)
            .where(AuditEvent.type.in_(["login_failed", "locked_out", "login_succeeded"]))
            .order_by(AuditEvent.occurred_at, AuditEvent.id)
        ).all()
        return [row for row in rows if (row.details or {}).get("email_digest") == digest]


def _assert_failures_then_lockout(events: list[AuditEvent]) -> None:
    """Three login_failed and one locked_out, the lockout written with the third failure (same
    instant, so the order between those two is not defined)."""
    assert sorted(event.type for event in events) == ["locked_out"] + ["login_failed"] * 3
    (locked,) = [event for event in events if event.type == "locked_out"]
    assert locked.occurred_at == max(event.occurred_at for event in events)
    assert "locked_until" in locked.details


class TestLockout:
    def test_third_failure_locks_even_the_right_password(self, locking):
        _, client = locking
        email = unique_email("locked")
        register(client, email)
        _fail(client, email, 3)
        problem = _assert_locked(_attempt(client, email, PASSWORD), lockout_seconds=LOCKOUT_SECONDS)
        assert problem["detail"]
        # Still locked for a wrong password too, and still for the right one afterwards.
        _assert_locked(_attempt(client, email, WRONG), lockout_seconds=LOCKOUT_SECONDS)
        _assert_locked(_attempt(client, email, PASSWORD), lockout_seconds=LOCKOUT_SECONDS)

    def test_lockout_is_per_email_and_case_insensitive(self, locking):
        _, client = locking
        email, bystander = unique_email("locked-case"), unique_email("bystander")
        register(client, email)
        register(client, bystander)
        _fail(client, email.upper(), 3)
        _assert_locked(_attempt(client, email, PASSWORD), lockout_seconds=LOCKOUT_SECONDS)
        assert _attempt(client, bystander, PASSWORD).status_code == 200

    def test_unknown_email_locks_alike(self, locking):
        _, client = locking
        known, unknown = unique_email("known"), unique_email("nobody")
        register(client, known)
        for email in (known, unknown):
            _fail(client, email, 3)
        known_answer = _attempt(client, known, PASSWORD)
        unknown_answer = _attempt(client, unknown, PASSWORD)
        known_problem = _assert_locked(known_answer, lockout_seconds=LOCKOUT_SECONDS)
        unknown_problem = _assert_locked(unknown_answer, lockout_seconds=LOCKOUT_SECONDS)
        fields = ("type", "title", "status", "detail")
        assert {f: known_problem[f] for f in fields} == {f: unknown_problem[f] for f in fields}
        assert set(known_problem) == set(unknown_problem)

    def test_success_before_the_limit_resets_the_count(self, locking):
        _, client = locking
        email = unique_email("reset-count")
        register(client, email)
        _fail(client, email, 2)
        assert _attempt(client, email, PASSWORD).status_code == 200
        _fail(client, email, 2)
        assert _attempt(client, email, PASSWORD).status_code == 200
        # Without a success in between, the third failure does lock.
        _fail(client, email, 3)
        _assert_locked(_attempt(client, email, PASSWORD), lockout_seconds=LOCKOUT_SECONDS)

    def test_failures_and_lockout_are_audited_without_the_email(self, locking):
        app, client = locking
        email = unique_email("audited")
        user_id = register(client, email)["id"]
        _fail(client, email, 3)
        _assert_locked(_attempt(client, email, PASSWORD), lockout_seconds=LOCKOUT_SECONDS)

        events = _events(app, digest=_digest(email))
        _assert_failures_then_lockout(events)
        for event in events:
            assert event.subject_id == uuid.UUID(user_id)
            assert event.details["email_digest"] == _digest(email)
            text = json.dumps(event.details).lower()
            assert email.lower() not in text
            assert email.split("@")[0].lower() not in text

    def test_unknown_email_failures_are_audited_without_a_subject(self, locking):
        app, client = locking
        email = unique_email("ghost")
        _fail(client, email, 3)
        events = _events(app, digest=_digest(email))
        _assert_failures_then_lockout(events)
        for event in events:
            assert event.subject_id is None
            assert event.details["account_exists"] is False
            assert email.split("@")[0].lower() not in json.dumps(event.details).lower()

    def test_password_reset_clears_the_lockout(self, locking, smtp_server):
        _, client = locking
        email = unique_email("reset-unlocks")
        register(client, email)
        _fail(client, email, 3)
        _assert_locked(_attempt(client, email, PASSWORD), lockout_seconds=LOCKOUT_SECONDS)

        token = ask_reset_token(client, smtp_server, email)
        confirmed = client.post(
            "/api/v1/auth/password-reset/confirm", json={"token": token, "new_password": STRONG_PASSWORD}
        )
        assert confirmed.status_code == 204, confirmed.text
        assert _attempt(client, email, STRONG_PASSWORD).status_code == 200
