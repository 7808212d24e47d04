"""Account rules under real concurrency (issue 11): requests released by one barrier reach a
served app at the same moment, on SQLite and on PostgreSQL, and the counts come out exact."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, update

from persistence.accounts.models import AuthSession
from persistence.audit.models import AuditEvent
from services.accounts import email_digest
from tests.helpers import PASSWORD, bearer, register_and_login, registration, session_id_of, unique_email
from tests.served import Served, at_once

RACERS = 12
WRONG_PASSWORD = "not the password at all, sorry"


def _audit_count(served: Served, event_type: str, **details: str) -> int:
    with served.state.session_factory() as db:
        events = db.scalars(select(AuditEvent).where(AuditEvent.type == event_type)).all()
    return sum(1 for event in events if all(event.details.get(k) == v for k, v in details.items()))


def test_two_refreshes_of_one_token_at_once_one_wins_the_other_is_reuse(served: Served):
    with served.client() as http:
        account = register_and_login(http)

    responses = at_once(
        2,
        lambda http, _: http.post("/api/v1/auth/refresh", json={"refresh_token": account.refresh_token}),
        served=served,
    )

    assert sorted(r.status_code for r in responses) == [200, 401]
    [winner] = [r for r in responses if r.status_code == 200]
    [loser] = [r for r in responses if r.status_code == 401]
    assert loser.json()["type"] == "/problems/refresh-token-reused"
    # Reuse ends the whole session (RFC 9700 section 4.14.2), the winner's new tokens included.
    with served.client() as http:
        me = http.get("/api/v1/auth/me", headers=bearer(winner.json()["access_token"]))
        again = http.post("/api/v1/auth/refresh", json={"refresh_token": winner.json()["refresh_token"]})
    assert me.status_code == 401 and again.status_code == 401
    session_id = session_id_of(account.access_token)
    assert _audit_count(served, "token_refreshed", session_id=session_id) == 1


def test_twelve_refreshes_of_one_token_at_once_rotate_it_once(served: Served):
    with served.client() as http:
        account = register_and_login(http)

    responses = at_once(
        RACERS,
        lambda http, _: http.post("/api/v1/auth/refresh", json={"refresh_token": account.refresh_token}),
        served=served,
    )

    assert Counter(r.status_code for r in responses) == {200: 1, 401: RACERS - 1}
    assert _audit_count(served, "token_refreshed", session_id=session_id_of(account.access_token)) == 1


def test_concurrent_failed_logins_are_all_counted_and_lock_the_account_once(served: Served):
    with served.client() as http:
        account = register_and_login(http)
    max_failures = served.state.settings.login_max_failures

    responses = at_once(
        RACERS,
        lambda http, _: http.post("/api/v1/auth/login", json={"email": account.email, "password": WRONG_PASSWORD}),
        served=served,
    )

    statuses = Counter(r.status_code for r in responses)
    assert set(statuses) <= {401, 429}, statuses
    digest = email_digest(account.email)
    # Every failure that got past the lockout check was counted: exactly one lockout began,
    # at the max_failures-th failure, and each 401 left one audit event.
    assert statuses[401] >= max_failures
    assert _audit_count(served, "login_failed", email_digest=digest) == statuses[401]
    assert _audit_count(served, "locked_out", email_digest=digest) == 1
    with served.client() as http:
        locked = http.post("/api/v1/auth/login", json={"email": account.email, "password": PASSWORD})
    assert locked.status_code == 429 and locked.json()["type"] == "/problems/login-locked"


def test_twelve_registrations_of_one_email_at_once_create_one_account(served: Served):
    body = registration(unique_email("race-register"), display_name="Racer")

    responses = at_once(RACERS, lambda http, _: http.post("/api/v1/auth/register", json=body), served=served)

    assert Counter(r.status_code for r in responses) == {201: 1, 409: RACERS - 1}
    assert {r.json()["type"] for r in responses if r.status_code == 409} == {"/problems/email-taken"}
    assert _audit_count(served, "registered") >= 1
    with served.state.session_factory() as db:
        registered = db.scalars(
            select(func.count())
            .select_from(AuditEvent)
            .where(
                AuditEvent.type == "registered",
                AuditEvent.subject_id == uuid.UUID(next(r.json()["id"] for r in responses if r.status_code == 201)),
            )
        ).one()
    assert registered == 1


def test_a_stale_session_still_creates_with_an_idempotency_key(served: Served):
    """The once-a-minute `last_used_at` write stands alone: it must not hold SQLite's write lock
    for the rest of the request, where the idempotency claim (its own transaction) needs it."""
    with served.client() as http:
        account = register_and_login(http)
    session_id = uuid.UUID(session_id_of(account.access_token))
    long_ago = datetime.now(UTC) - timedelta(minutes=5)
    with served.state.session_factory.begin() as db:
        db.execute(update(AuthSession).where(AuthSession.id == session_id).values(last_used_at=long_ago))

    with served.client(timeout=10) as http:
        created = http.post(
            account.tasks_path,
            json={"title": "after a pause"},
            headers={**account.headers, "Idempotency-Key": f"stale-{uuid.uuid4()}"},
        )

    assert created.status_code == 201, created.text
    with served.state.session_factory() as db:
        last_used_at = db.scalars(select(AuthSession.last_used_at).where(AuthSession.id == session_id)).one()
    assert last_used_at > long_ago + timedelta(minutes=4)
