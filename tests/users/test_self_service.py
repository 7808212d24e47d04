"""Self-service (briefs 002, 004): your profile, no mass assignment, deleting your account,
exporting your data and reading your own security events."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.helpers import (
    INVALID_CREDENTIALS,
    PASSWORD,
    UNAUTHORIZED,
    VALIDATION,
    assert_problem,
    bearer,
    collect_pages,
    create_task,
    login,
    register_and_login,
    unique_email,
)

ME = "/api/v1/users/me"


class TestProfile:
    def test_me_is_the_caller_as_a_plain_active_user(self, client):
        account = register_and_login(client, display_name="Ada Lovelace")
        response = client.get(ME, headers=account.headers)
        assert response.status_code == 200
        body = response.json()
        assert body["id"] == account.id
        assert body["email"] == account.email
        assert body["display_name"] == "Ada Lovelace"
        assert body["role"] == "user"
        assert body["status"] == "active"
        assert body["updated_at"] == body["created_at"]
        assert "password_hash" not in body

    def test_me_needs_a_token(self, client):
        assert_problem(client.get(ME), 401, UNAUTHORIZED)

    def test_display_name_changes_and_updated_at_moves(self, client):
        account = register_and_login(client, display_name="Before")
        before = client.get(ME, headers=account.headers).json()
        response = client.patch(ME, json={"display_name": "After Name"}, headers=account.headers)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["display_name"] == "After Name"
        assert body["updated_at"] > before["updated_at"]
        assert body["created_at"] == before["created_at"]
        assert client.get(ME, headers=account.headers).json()["display_name"] == "After Name"
        assert client.get("/api/v1/auth/me", headers=account.headers).json()["display_name"] == "After Name"

    def test_empty_body_is_400(self, client, account):
        assert_problem(client.patch(ME, json={}, headers=account.headers), 400, VALIDATION)

    @pytest.mark.parametrize(
        "field, value",
        [
            ("role", "admin"),
            ("status", "deactivated"),
            ("email", "someone-else@example.com"),
            ("id", "00000000-0000-4000-8000-000000000000"),
            ("password_hash", "$2b$04$abcdefghijklmnopqrstuv"),
        ],
    )
    def test_mass_assignment_is_refused_naming_the_field(self, client, field, value):
        account = register_and_login(client, display_name="Mallory")
        for body in ({field: value}, {"display_name": "Mallory Admin", field: value}):
            problem = assert_problem(client.patch(ME, json=body, headers=account.headers), 400, VALIDATION)
            assert f"/{field}" in [error.get("pointer") for error in problem["errors"]], problem
        for path in (ME, "/api/v1/auth/me"):
            me = client.get(path, headers=account.headers).json()
            assert me["role"] == "user"
            assert me["status"] == "active"
            assert me["email"] == account.email
            assert me["id"] == account.id
            assert me["display_name"] == "Mallory"
        assert login(client, account.email).access_token

    def test_register_with_a_role_is_400_and_creates_nothing(self, client, database):
        email = unique_email("would-be-admin")
        response = client.post(
            "/api/v1/auth/register",
            json={"email": email, "password": PASSWORD, "display_name": "Eve", "role": "admin"},
        )
        problem = assert_problem(response, 400, VALIDATION)
        assert "/role" in [error.get("pointer") for error in problem["errors"]]
        assert database.user_by_email(email) is None
        refused = client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
        assert_problem(refused, 401, INVALID_CREDENTIALS)


class TestDeleteOwnAccount:
    def test_deletes_account_sessions_and_tasks_only(self, client, database, other_account):
        account = register_and_login(client)
        second = login(client, account.email)
        for _ in range(3):
            create_task(client, account)
        kept = create_task(client, other_account)
        assert database.task_count(account.id) == 3
        assert database.session_count(account.id) == 2

        response = client.delete(ME, headers=account.headers)
        assert response.status_code == 204
        assert response.content == b""

        for token in (account.access_token, second.access_token):
            assert_problem(client.get(ME, headers=bearer(token)), 401, UNAUTHORIZED)
            assert_problem(client.get(account.tasks_path, headers=bearer(token)), 401, UNAUTHORIZED)
        refreshed = client.post("/api/v1/auth/refresh", json={"refresh_token": account.refresh_token})
        assert_problem(refreshed, 401)
        relogin = client.post("/api/v1/auth/login", json={"email": account.email, "password": PASSWORD})
        assert_problem(relogin, 401, INVALID_CREDENTIALS)

        assert database.user(account.id) is None
        assert database.task_count(account.id) == 0
        assert database.session_count(account.id) == 0

        # Someone else's data is untouched.
        assert database.task_count(other_account.id) == 1
        listed = client.get(other_account.tasks_path, headers=other_account.headers).json()
        assert [task["id"] for task in listed["items"]] == [kept["id"]]
        assert client.get(ME, headers=other_account.headers).status_code == 200

        # The email is free again, for a new account with a new id.
        again = register_and_login(client, email=account.email)
        assert again.id != account.id
        assert client.get(ME, headers=again.headers).json()["email"] == account.email


class TestExport:
    def test_exports_everything_about_the_caller_and_nothing_else(self, client, database, other_account):
        account = register_and_login(client, display_name="Exporter")
        ended = login(client, account.email)
        assert client.post("/api/v1/auth/logout", headers=bearer(ended.access_token)).status_code == 204
        tasks = [create_task(client, account) for _ in range(22)]  # more than one page of GET …/tasks
        tasks.append(
            create_task(
                client,
                account,
                title="Detailed",
                description="with every field",
                priority="urgent",
                due_at="2031-01-02T03:04:05.000006Z",
            )
        )
        secret_title = f"other-{uuid.uuid4().hex}"
        create_task(client, other_account, title=secret_title)

        response = client.get(f"{ME}/export", headers=account.headers)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/json")
        disposition = response.headers["content-disposition"]
        assert disposition.startswith("attachment")
        assert "filename=" in disposition
        assert response.headers["cache-control"] == "no-store"
        body = response.json()

        assert body["user"]["id"] == account.id
        assert body["user"]["email"] == account.email
        assert body["user"]["role"] == "user"

        sessions = {session["id"]: session for session in body["sessions"]}
        assert len(sessions) == 2
        revoked = [session for session in sessions.values() if session["revoked_at"] is not None]
        assert len(revoked) == 1
        assert revoked[0]["revoked_reason"] == "logout"
        assert [session["revoked_reason"] for session in sessions.values() if session["revoked_at"] is None] == [None]

        by_id = {task["id"]: task for task in body["tasks"]}
        assert set(by_id) == {task["id"] for task in tasks}
        for task in tasks:
            assert by_id[task["id"]] == task
        assert by_id[tasks[-1]["id"]]["description"] == "with every field"

        events = body["audit_events"]
        types = {event["type"] for event in events}
        assert {"registered", "login_succeeded", "logged_out"} <= types
        for event in events:
            assert account.id in (event["actor_id"], event["subject_id"]), event
        registered = next(event for event in events if event["type"] == "registered")
        assert registered["subject_id"] == account.id

        text = response.text
        assert other_account.id not in text
        assert other_account.email not in text
        assert secret_title not in text

        own = client.get(f"{ME}/audit-events", headers=account.headers, params={"limit": 1}).json()
        assert own["items"][0]["type"] == "data_exported"
        assert own["items"][0]["actor_id"] == account.id
        assert own["items"][0]["subject_id"] == account.id
        assert own["items"][0]["request_id"] == response.headers["x-request-id"]
        assert [event.type for event in database.audit_events(account.id)].count("data_exported") == 1

    def test_export_needs_a_token(self, client):
        assert_problem(client.get(f"{ME}/export"), 401, UNAUTHORIZED)


class TestOwnAuditEvents:
    def test_lists_only_own_events_newest_first_in_pages(self, client, other_account):
        account = register_and_login(client)
        client.post("/api/v1/auth/login", json={"email": account.email, "password": "not the password at all"})
        login(client, account.email)
        client.patch(ME, json={"display_name": "Renamed"}, headers=account.headers)
        login(client, other_account.email)  # someone else's events must not show

        everything = client.get(f"{ME}/audit-events", headers=account.headers, params={"limit": 100})
        assert everything.status_code == 200
        items = everything.json()["items"]
        assert everything.json()["next_cursor"] is None
        types = [event["type"] for event in items]
        assert types[-1] == "registered"
        assert types[0] == "profile_updated"
        assert types.count("login_succeeded") == 2
        assert "login_failed" in types
        stamps = [event["occurred_at"] for event in items]
        assert stamps == sorted(stamps, reverse=True)
        for event in items:
            assert account.id in (event["actor_id"], event["subject_id"])
            assert other_account.id not in (event["actor_id"], event["subject_id"])

        paged = collect_pages(client, f"{ME}/audit-events", headers=account.headers, params=[("limit", 2)])
        assert [event["id"] for event in paged] == [event["id"] for event in items]
        assert len({event["id"] for event in paged}) == len(paged)

        first = client.get(f"{ME}/audit-events", headers=account.headers, params={"limit": 2}).json()
        assert len(first["items"]) == 2
        assert first["next_cursor"]

    def test_a_made_up_cursor_is_400(self, client, account):
        response = client.get(f"{ME}/audit-events", headers=account.headers, params={"cursor": "bm90LWEtY3Vyc29y"})
        problem = assert_problem(response, 400, VALIDATION)
        assert problem["errors"][0]["parameter"] == "cursor"

    def test_needs_a_token(self, client):
        assert_problem(client.get(f"{ME}/audit-events"), 401, UNAUTHORIZED)


def test_exported_json_is_a_plain_document(client, account):
    """The export parses as one JSON object with exactly the documented members."""
    body = json.loads(client.get(f"{ME}/export", headers=account.headers).content)
    assert set(body) == {
        "exported_at",
        "user",
        "sessions",
        "tasks",
        "audit_events",
        "reminders",
        "notifications",
        "webhook_endpoints",
        "jobs",
        "chatbots",
        "documents",
        "websites",
        "api_keys",
        "conversations",
        "usage",
        "subscription",
        "invoices",
        "payment_methods",
    }
