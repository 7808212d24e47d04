"""The audit log (brief 004): every security event type with its actor, subject, client
address, user agent and request id; the administrators' listing with its filters; the
database refusing UPDATE and DELETE; events outliving the accounts they name."""

from __future__ import annotations

import json
import secrets
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import jwt
import pytest
from sqlalchemy import insert, select, text, update
from sqlalchemy.exc import DBAPIError
from starlette.testclient import TestClient

from persistence.accounts.models import PasswordResetToken
from persistence.audit.models import AuditEvent
from services.audit import EventType
from services.tokens import hash_refresh_token
from tests.helpers import (
    PASSWORD,
    VALIDATION,
    Account,
    ContractClient,
    app_client,
    assert_problem,
    bearer,
    collect_pages,
    create_admin_and_login,
    instant,
    login,
    migrated_database,
    postgres_url_in_environment,
    register_and_login,
    session_factory,
    unique_email,
)

AUDIT = "/api/v1/audit-events"
CLIENT_ADDRESS = "203.0.113.77"
USER_AGENT = "CharterAuditProbe/7.1 (audit-test)"
SECOND_PASSWORD = "lunar kettle drifts past seven orchards"
THIRD_PASSWORD = "quiet harbour maps forty amber lanterns"
WRONG_PASSWORD = "definitely not the right passphrase"

BY_THE_ACCOUNT = {
    "registered",
    "login_succeeded",
    "logged_out",
    "logged_out_everywhere",
    "token_refreshed",
    "session_revoked",
    "password_changed",
    "password_reset_completed",
    "chatbot_created",
    "chatbot_updated",
    "chatbot_deleted",
    "api_key_created",
    "api_key_revoked",
    "conversation_deleted",
    "profile_updated",
    "data_exported",
    "account_deleted",
    "subscription_updated",
    "payment_method_attached",
    "payment_method_default_changed",
    "payment_method_detached",
}
"""Events the account itself causes: actor and subject are the account."""
OUTSIDE_AN_ACCOUNTS_REQUESTS = {"plan_created", "plans_synced", "invoice_paid", "invoice_payment_failed"}
"""Billing events no request of the account causes alone (an administrator's plan, the CLI's sync,
charges needing a card and the billing cycle): tests/billing checks them."""
ANONYMOUS = {"login_failed", "locked_out", "refresh_token_reused", "password_reset_requested"}
"""Events of requests that prove no identity: no actor, the account as subject."""
BY_THE_ADMINISTRATOR = {"role_changed", "user_deactivated", "user_reactivated"}


class Recorder:
    """Sends each request with its own X-Request-ID and the probe's User-Agent, from a fixed
    client address, and remembers which event types each request should cause."""

    def __init__(self, client: ContractClient) -> None:
        self.client = client
        self.expected: dict[str, list[str]] = {}
        self.secrets: set[str] = set()

    def __call__(self, method: str, path: str, expect: list[str], *, token: str | None = None, **kwargs: Any):
        request_id = f"audit-{len(self.expected):02d}-{uuid.uuid4().hex[:12]}"
        headers = {"X-Request-ID": request_id, "User-Agent": USER_AGENT}
        if token:
            headers.update(bearer(token))
            self.secrets.add(token)
        response = self.client.request(method, path, headers=headers, **kwargs)
        assert response.headers["x-request-id"] == request_id
        self.expected[request_id] = expect
        return response

    def tokens(self, response) -> dict[str, str]:
        assert response.status_code == 200, response.text
        body = response.json()
        self.secrets.update((body["access_token"], body["refresh_token"]))
        return body


@pytest.fixture
def probe(app, openapi):
    with TestClient(app, raise_server_exceptions=False, client=(CLIENT_ADDRESS, 41000)) as test_client:
        yield Recorder(ContractClient(test_client, openapi))


def events_about(client: ContractClient, admin: Account, user_id: str) -> list[dict[str, Any]]:
    return collect_pages(client, AUDIT, headers=admin.headers, params=[("user_id", user_id), ("limit", 100)])


def test_a_full_flow_records_every_event_type_with_its_context(client, probe, admin, app):
    email = unique_email("audited")
    victim_email = unique_email("victim")
    for secret in (PASSWORD, SECOND_PASSWORD, THIRD_PASSWORD, WRONG_PASSWORD):
        probe.secrets.add(secret)

    def credentials(password: str, who: str = email) -> dict[str, Any]:
        return {"json": {"email": who, "password": password}}

    registered = probe(
        "POST",
        "/api/v1/auth/register",
        ["registered"],
        json={"email": email, "password": PASSWORD, "display_name": "Audited"},
    )
    assert registered.status_code == 201
    user_id = registered.json()["id"]
    assert_problem(probe("POST", "/api/v1/auth/login", ["login_failed"], **credentials(WRONG_PASSWORD)), 401)
    first = probe.tokens(probe("POST", "/api/v1/auth/login", ["login_succeeded"], **credentials(PASSWORD)))
    rotated = probe.tokens(
        probe("POST", "/api/v1/auth/refresh", ["token_refreshed"], json={"refresh_token": first["refresh_token"]})
    )
    reused = probe(
        "POST", "/api/v1/auth/refresh", ["refresh_token_reused"], json={"refresh_token": first["refresh_token"]}
    )
    assert_problem(reused, 401, "/problems/refresh-token-reused")
    assert rotated["refresh_token"] != first["refresh_token"]

    kept = probe.tokens(probe("POST", "/api/v1/auth/login", ["login_succeeded"], **credentials(PASSWORD)))
    doomed = probe.tokens(probe("POST", "/api/v1/auth/login", ["login_succeeded"], **credentials(PASSWORD)))
    doomed_sid = jwt.decode(doomed["access_token"], options={"verify_signature": False})["sid"]
    listed = probe("GET", "/api/v1/auth/sessions", [], token=kept["access_token"])
    assert doomed_sid in {session["id"] for session in listed.json()["items"]}
    revoked = probe("DELETE", f"/api/v1/auth/sessions/{doomed_sid}", ["session_revoked"], token=kept["access_token"])
    assert revoked.status_code == 204
    assert probe("POST", "/api/v1/auth/logout", ["logged_out"], token=kept["access_token"]).status_code == 204

    everywhere = probe.tokens(probe("POST", "/api/v1/auth/login", ["login_succeeded"], **credentials(PASSWORD)))
    probe.tokens(probe("POST", "/api/v1/auth/login", ["login_succeeded"], **credentials(PASSWORD)))
    ended = probe(
        "POST",
        "/api/v1/auth/logout",
        ["logged_out_everywhere"],
        token=everywhere["access_token"],
        json={"all_sessions": True},
    )
    assert ended.status_code == 204

    current = probe.tokens(probe("POST", "/api/v1/auth/login", ["login_succeeded"], **credentials(PASSWORD)))
    changed = probe(
        "POST",
        "/api/v1/auth/password",
        ["password_changed"],
        token=current["access_token"],
        json={"current_password": PASSWORD, "new_password": SECOND_PASSWORD},
    )
    assert changed.status_code == 204, changed.text

    requested = probe("POST", "/api/v1/auth/password-reset", ["password_reset_requested"], json={"email": email})
    assert requested.status_code == 202
    raw_token = secrets.token_urlsafe(32)
    probe.secrets.add(raw_token)
    with session_factory(app).begin() as db:
        now = datetime.now(UTC)
        db.add(
            PasswordResetToken(
                id=uuid.uuid4(),
                user_id=uuid.UUID(user_id),
                token_hash=hash_refresh_token(raw_token),
                created_at=now,
                expires_at=now + timedelta(minutes=10),
            )
        )
    confirmed = probe(
        "POST",
        "/api/v1/auth/password-reset/confirm",
        ["password_reset_completed"],
        json={"token": raw_token, "new_password": THIRD_PASSWORD},
    )
    assert confirmed.status_code == 204, confirmed.text

    latest = probe.tokens(probe("POST", "/api/v1/auth/login", ["login_succeeded"], **credentials(THIRD_PASSWORD)))
    renamed = probe(
        "PATCH", "/api/v1/users/me", ["profile_updated"], token=latest["access_token"], json={"display_name": "Renamed"}
    )
    assert renamed.status_code == 200
    assert probe("GET", "/api/v1/users/me/export", ["data_exported"], token=latest["access_token"]).status_code == 200
    bot = probe("POST", "/api/v1/chatbots", ["chatbot_created"], token=latest["access_token"], json={"name": "Helper"})
    assert bot.status_code == 201, bot.text
    bot_path = f"/api/v1/chatbots/{bot.json()['id']}"
    published = probe("PATCH", bot_path, ["chatbot_updated"], token=latest["access_token"], json={"status": "active"})
    assert published.status_code == 200, published.text
    chat = probe("POST", f"{bot_path}/conversations", [], token=latest["access_token"], json={"title": "Hi"})
    assert chat.status_code == 201, chat.text
    chat_path = f"/api/v1/conversations/{chat.json()['id']}"
    assert probe("DELETE", chat_path, ["conversation_deleted"], token=latest["access_token"]).status_code == 204
    assert probe("DELETE", bot_path, ["chatbot_deleted"], token=latest["access_token"]).status_code == 202
    key = probe(
        "POST",
        "/api/v1/api-keys",
        ["api_key_created"],
        token=latest["access_token"],
        json={"name": "CI", "scopes": ["chat"]},
    )
    assert key.status_code == 201, key.text
    key_path = f"/api/v1/api-keys/{key.json()['id']}"
    assert probe("DELETE", key_path, ["api_key_revoked"], token=latest["access_token"]).status_code == 204
    cards = [
        probe(
            "POST",
            "/api/v1/billing/payment-methods",
            ["payment_method_attached"],
            token=latest["access_token"],
            json={"token": token},
        )
        for token in ("tok_visa", "tok_mastercard")
    ]
    assert [card.status_code for card in cards] == [201, 201], cards[-1].text
    cards_path = "/api/v1/billing/payment-methods"
    second = f"{cards_path}/{cards[1].json()['id']}/default"
    assert probe("POST", second, ["payment_method_default_changed"], token=latest["access_token"]).status_code == 200
    first = f"{cards_path}/{cards[0].json()['id']}"
    assert probe("DELETE", first, ["payment_method_detached"], token=latest["access_token"]).status_code == 204
    trial = probe(
        "POST",
        "/api/v1/billing/subscription",
        ["subscription_updated"],
        token=latest["access_token"],
        json={"plan_code": "pro_monthly"},
    )
    assert trial.status_code == 200, trial.text

    target = f"/api/v1/users/{user_id}"
    for body, expect in (
        ({"role": "admin"}, "role_changed"),
        ({"status": "deactivated"}, "user_deactivated"),
        ({"status": "active"}, "user_reactivated"),
    ):
        response = probe("PATCH", target, [expect], token=admin.access_token, json=body)
        assert response.status_code == 200, response.text

    last = probe.tokens(probe("POST", "/api/v1/auth/login", ["login_succeeded"], **credentials(THIRD_PASSWORD)))
    assert probe("DELETE", "/api/v1/users/me", ["account_deleted"], token=last["access_token"]).status_code == 204

    victim = probe(
        "POST",
        "/api/v1/auth/register",
        ["registered"],
        json={"email": victim_email, "password": PASSWORD, "display_name": "Victim"},
    )
    victim_id = victim.json()["id"]
    for attempt in range(5):
        expect = ["login_failed", "locked_out"] if attempt == 4 else ["login_failed"]
        failed = probe("POST", "/api/v1/auth/login", expect, **credentials(WRONG_PASSWORD, victim_email))
        assert_problem(failed, 401, "/problems/invalid-credentials")
    locked = probe("POST", "/api/v1/auth/login", [], **credentials(PASSWORD, victim_email))
    assert_problem(locked, 429, "/problems/login-locked")

    # Every event about the two accounts, read back through the administrators' listing.
    events = events_about(client, admin, user_id) + events_about(client, admin, victim_id)
    assert {event["type"] for event in events} == {str(t) for t in EventType} - OUTSIDE_AN_ACCOUNTS_REQUESTS
    assert len(EventType) == 32

    seen: dict[str, list[str]] = {}
    for event in events:
        assert event["request_id"] in probe.expected, event
        seen.setdefault(event["request_id"], []).append(event["type"])
        assert event["client_address"] == CLIENT_ADDRESS, event
        assert event["user_agent"] == USER_AGENT, event
        subject = victim_id if event["subject_id"] == victim_id else user_id
        assert event["subject_id"] == subject, event
        if event["type"] in BY_THE_ACCOUNT:
            assert event["actor_id"] == subject, event
        elif event["type"] in ANONYMOUS:
            assert event["actor_id"] is None, event
        else:
            assert event["type"] in BY_THE_ADMINISTRATOR
            assert event["actor_id"] == admin.id, event
        dumped = json.dumps(event)
        for secret in (*probe.secrets, email, victim_email, email.split("@")[0], victim_email.split("@")[0]):
            assert secret not in dumped, (secret, event)
    for request_id, expect in probe.expected.items():
        assert sorted(seen.get(request_id, [])) == sorted(expect), request_id

    by_type = {event["type"]: event for event in events}
    assert by_type["role_changed"]["details"] == {"from": "user", "to": "admin"}
    assert by_type["login_failed"]["details"]["account_exists"] is True
    assert len(by_type["login_failed"]["details"]["email_digest"]) == 64


class TestListing:
    @pytest.fixture
    def scene(self, client, admin) -> dict[str, Any]:
        """One account that registered, logged in and was promoted; one that got locked out."""
        actor = register_and_login(client)
        promoted = client.patch(f"/api/v1/users/{actor.id}", json={"role": "admin"}, headers=admin.headers)
        assert promoted.status_code == 200
        victim = register_and_login(client)
        for _ in range(5):
            client.post("/api/v1/auth/login", json={"email": victim.email, "password": WRONG_PASSWORD})
        return {"actor": actor, "victim": victim}

    def get(self, client, admin, params: list[tuple[str, Any]]) -> list[dict[str, Any]]:
        response = client.get(AUDIT, headers=admin.headers, params=[*params, ("limit", 100)])
        assert response.status_code == 200, response.text
        assert response.json()["next_cursor"] is None
        return response.json()["items"]

    def test_filter_by_user_as_actor_or_subject(self, client, admin, scene):
        actor = scene["actor"]
        about = self.get(client, admin, [("user_id", actor.id)])
        assert [event["type"] for event in about] == ["role_changed", "login_succeeded", "registered"]
        for event in about:
            assert actor.id in (event["actor_id"], event["subject_id"])
        by_admin = self.get(client, admin, [("user_id", admin.id)])
        assert any(event["type"] == "role_changed" and event["subject_id"] == actor.id for event in by_admin)
        for event in by_admin:
            assert admin.id in (event["actor_id"], event["subject_id"])
        nobody = self.get(client, admin, [("user_id", str(uuid.uuid4()))])
        assert nobody == []

    def test_filter_by_repeated_type(self, client, admin, scene):
        victim = scene["victim"]
        both = self.get(client, admin, [("user_id", victim.id), ("type", "login_failed"), ("type", "locked_out")])
        assert sorted(event["type"] for event in both) == ["locked_out"] + ["login_failed"] * 5
        only_locks = self.get(client, admin, [("user_id", victim.id), ("type", "locked_out")])
        assert [event["type"] for event in only_locks] == ["locked_out"]
        everywhere = collect_pages(
            client,
            AUDIT,
            headers=admin.headers,
            params=[("type", "login_failed"), ("type", "locked_out"), ("limit", 100)],
        )
        assert {event["type"] for event in everywhere} == {"login_failed", "locked_out"}
        assert {event["id"] for event in both} <= {event["id"] for event in everywhere}
        assert_problem(client.get(AUDIT, headers=admin.headers, params={"type": "not_a_type"}), 400, VALIDATION)

    def test_time_range_is_half_open(self, client, admin, scene):
        actor = scene["actor"]
        about = self.get(client, admin, [("user_id", actor.id)])
        registered, logged_in, promoted = (event["occurred_at"] for event in reversed(about))
        assert registered < logged_in < promoted

        def types(*params: tuple[str, str]) -> list[str]:
            return [event["type"] for event in self.get(client, admin, [("user_id", actor.id), *params])]

        assert types(("occurred_after", logged_in)) == ["role_changed", "login_succeeded"]
        assert types(("occurred_before", logged_in)) == ["registered"]
        assert types(("occurred_after", logged_in), ("occurred_before", promoted)) == ["login_succeeded"]
        assert types(("occurred_after", promoted), ("occurred_before", promoted)) == []
        assert types(("occurred_after", registered), ("type", "login_succeeded")) == ["login_succeeded"]
        assert types(("occurred_before", registered)) == []

        # The same instant written with another offset means the same thing.
        shifted = instant(logged_in).astimezone(timezone(timedelta(hours=2))).isoformat()
        assert types(("occurred_after", shifted)) == ["role_changed", "login_succeeded"]
        assert types(("occurred_before", shifted)) == ["registered"]

    def test_pagination_with_cursor(self, client, admin, scene):
        victim = scene["victim"]
        everything = self.get(client, admin, [("user_id", victim.id)])
        # registered, login_succeeded, 5 x login_failed and locked_out (the last two at one instant)
        assert len(everything) == 8
        first = client.get(AUDIT, headers=admin.headers, params={"user_id": victim.id, "limit": 2}).json()
        assert len(first["items"]) == 2
        assert first["next_cursor"]
        for limit in (1, 2, 3):
            paged = collect_pages(
                client, AUDIT, headers=admin.headers, params=[("user_id", victim.id), ("limit", limit)]
            )
            assert [event["id"] for event in paged] == [event["id"] for event in everything]
        stamps = [event["occurred_at"] for event in everything]
        assert stamps == sorted(stamps, reverse=True)
        assert len(set(stamps)) == 7

    def test_a_made_up_cursor_is_400(self, client, admin):
        for cursor in ("bm90LWEtY3Vyc29y", "eyJjIjoieWVzdGVyZGF5IiwiaSI6IjEifQ", "not a cursor!"):
            response = client.get(AUDIT, headers=admin.headers, params={"cursor": cursor})
            problem = assert_problem(response, 400, VALIDATION)
            assert problem["errors"][0]["parameter"] == "cursor"


class TestAppendOnly:
    def test_update_and_delete_are_refused_by_the_database_insert_works(self, app, client):
        engine = app.app.extensions["charter"].engine
        account = register_and_login(client)
        with engine.connect() as connection:
            row = connection.execute(
                select(AuditEvent.id, AuditEvent.type, AuditEvent.details).where(
                    AuditEvent.subject_id == uuid.UUID(account.id), AuditEvent.type == "registered"
                )
            ).one()

        attempts = [
            update(AuditEvent).where(AuditEvent.id == row.id).values(type="login_succeeded"),
            update(AuditEvent).where(AuditEvent.id == row.id).values(details={"tampered": True}),
            AuditEvent.__table__.delete().where(AuditEvent.id == row.id),
            text("DELETE FROM audit_events"),
            text("UPDATE audit_events SET actor_id = NULL"),
        ]
        for statement in attempts:
            with pytest.raises(DBAPIError) as refused, engine.begin() as connection:
                connection.execute(statement)
            assert "append-only" in str(refused.value)

        with engine.connect() as connection:
            after = connection.execute(
                select(AuditEvent.id, AuditEvent.type, AuditEvent.details).where(AuditEvent.id == row.id)
            ).one()
        assert tuple(after) == tuple(row)

        new_id = uuid.uuid4()
        with engine.begin() as connection:
            connection.execute(
                insert(AuditEvent).values(
                    id=new_id,
                    occurred_at=datetime.now(UTC),
                    type="profile_updated",
                    actor_id=None,
                    subject_id=uuid.UUID(account.id),
                    client_address=None,
                    user_agent="append-only test",
                    request_id=None,
                    details={"fields": ["display_name"]},
                )
            )
        with engine.connect() as connection:
            inserted = connection.execute(select(AuditEvent).where(AuditEvent.id == new_id)).one()
        assert inserted.user_agent == "append-only test"


def test_deleting_an_account_keeps_its_audit_events(client, admin, database):
    gone = register_and_login(client)
    login(client, gone.email)
    before = events_about(client, admin, gone.id)
    assert [event["type"] for event in before] == ["login_succeeded", "login_succeeded", "registered"]
    assert client.delete(f"/api/v1/users/{gone.id}", headers=admin.headers).status_code == 204
    assert client.get(f"/api/v1/users/{gone.id}", headers=admin.headers).status_code == 404

    after = events_about(client, admin, gone.id)
    assert [event["type"] for event in after] == ["account_deleted", "login_succeeded", "login_succeeded", "registered"]
    assert {event["id"] for event in before} <= {event["id"] for event in after}
    assert all(event["subject_id"] == gone.id for event in after)
    stored = database.audit_events(gone.id)
    assert len(stored) == 4
    assert {str(event.subject_id) for event in stored} == {gone.id}
    assert_problem(client.get("/api/v1/users/me", headers=bearer(gone.access_token)), 401)


@pytest.fixture
def isolated(tmp_path, openapi):
    """An app on a database of its own, for a test whose events must not reach the shared
    log (the log is append-only: nothing written there can be cleaned up)."""
    with (
        migrated_database(postgres_url_in_environment(), sqlite_dir=tmp_path, prefix="charter_audit_ua") as url,
        app_client(url, tmp_path, openapi) as (app, client),
    ):
        yield app, client


def test_a_user_agent_with_a_tab_does_not_break_the_log(isolated):
    app, client = isolated
    admin = create_admin_and_login(app, client)
    victim = register_and_login(client)
    tabbed = {"User-Agent": "Probe\tAgent/1.0"}
    failed = client.post("/api/v1/auth/login", json={"email": victim.email, "password": WRONG_PASSWORD}, headers=tabbed)
    assert_problem(failed, 401)
    tokens = login(client, victim.email, headers=tabbed)
    for path, token in (
        (AUDIT, admin.access_token),
        ("/api/v1/users/me/audit-events", tokens.access_token),
        ("/api/v1/users/me/export", tokens.access_token),
    ):
        response = client.get(path, headers=bearer(token))
        assert response.status_code == 200, (path, response.text)
        assert "\t" not in json.dumps(response.json())
