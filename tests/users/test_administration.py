"""The administrators' operations (brief 004): listing and searching accounts, reading,
changing (role, status, display name) and deleting them, the guard rails around one's own
account, and `charter create-admin` on the command line."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest
from sqlalchemy import delete, func, select

from persistence.accounts.models import PasswordResetToken, User
from tests.helpers import (
    CONFLICT,
    DEACTIVATED,
    FORBIDDEN,
    INVALID_CREDENTIALS,
    NOT_FOUND,
    PASSWORD,
    TEST_SECRET,
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
from tests.processes import CHARTER

USERS = "/api/v1/users"
AUDIT = "/api/v1/audit-events"
UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"


def user_path(user_id: str) -> str:
    return f"{USERS}/{user_id}"


def audit_of(client, admin, user_id: str, *types: str) -> list[dict]:
    params = [("user_id", user_id), ("limit", 100)] + [("type", t) for t in types]
    response = client.get(AUDIT, headers=admin.headers, params=params)
    assert response.status_code == 200, response.text
    return response.json()["items"]


class TestOnlyAdministrators:
    @pytest.mark.parametrize(
        "method, path, body",
        [
            ("GET", USERS, None),
            ("GET", "{target}", None),
            ("PATCH", "{target}", {"role": "admin"}),
            ("PATCH", "{self}", {"role": "admin"}),
            ("PATCH", "{target}", {"status": "deactivated"}),
            ("DELETE", "{target}", None),
            ("GET", AUDIT, None),
        ],
    )
    def test_others_get_403_and_nothing_changes(self, client, admin, account, other_account, method, path, body):
        path = path.replace("{target}", user_path(other_account.id)).replace("{self}", user_path(account.id))
        kwargs = {"json": body} if body is not None else {}
        response = client.request(method, path, headers=account.headers, **kwargs)
        assert_problem(response, 403, FORBIDDEN)

        for who in (account, other_account):
            seen = client.get(user_path(who.id), headers=admin.headers)
            assert seen.status_code == 200
            assert seen.json()["role"] == "user"
            assert seen.json()["status"] == "active"
            assert client.get("/api/v1/users/me", headers=who.headers).status_code == 200
        assert audit_of(client, admin, other_account.id, "role_changed", "user_deactivated", "account_deleted") == []

    @pytest.mark.parametrize(
        "method, path",
        [("GET", USERS), ("GET", "{id}"), ("PATCH", "{id}"), ("DELETE", "{id}"), ("GET", AUDIT)],
    )
    def test_401_without_a_token(self, client, account, method, path):
        path = path.replace("{id}", user_path(account.id))
        kwargs = {"json": {"status": "deactivated"}} if method == "PATCH" else {}
        assert_problem(client.request(method, path, **kwargs), 401, UNAUTHORIZED)
        assert client.get("/api/v1/users/me", headers=account.headers).json()["status"] == "active"


class TestListUsers:
    def test_newest_first_and_pagination_covers_everything_once(self, client, admin, database):
        tag = uuid.uuid4().hex[:10]
        created = [register_and_login(client, display_name=f"Listed {tag} {n}").id for n in range(5)]
        first = client.get(USERS, headers=admin.headers, params={"q": tag, "limit": 100})
        assert first.status_code == 200
        assert [user["id"] for user in first.json()["items"]] == created[::-1]
        assert first.json()["next_cursor"] is None

        paged = collect_pages(client, USERS, headers=admin.headers, params=[("q", tag), ("limit", 2)])
        assert [user["id"] for user in paged] == created[::-1]

        everyone = collect_pages(client, USERS, headers=admin.headers, params=[("limit", 25)])
        ids = [user["id"] for user in everyone]
        assert len(ids) == len(set(ids))
        assert len(ids) == database.read(lambda db: db.scalar(select(func.count()).select_from(User)))
        assert set(created) | {admin.id} <= set(ids)
        stamps = [user["created_at"] for user in everyone]
        assert stamps == sorted(stamps, reverse=True)

    def test_q_matches_email_and_display_name_case_insensitively(self, client, admin):
        tag = uuid.uuid4().hex[:10]
        by_email = register_and_login(client, email=f"finder-{tag}@example.com", display_name="Plain Name")
        by_name = register_and_login(client, display_name=f"Zebra Crossing {tag}")
        other = register_and_login(client, display_name="Nothing Alike")

        def search(q: str) -> set[str]:
            response = client.get(USERS, headers=admin.headers, params={"q": q, "limit": 100})
            assert response.status_code == 200, response.text
            return {user["id"] for user in response.json()["items"]}

        assert search(tag) == {by_email.id, by_name.id}
        assert search(tag.upper()) == {by_email.id, by_name.id}
        assert search(f"FINDER-{tag.upper()}@EXAMPLE") == {by_email.id}
        assert search(f"zEBRA cROSSING {tag.upper()}") == {by_name.id}
        assert other.id in search("NOTHING ALIKE")
        assert other.id not in search(tag)

    def test_q_is_case_insensitive_beyond_ascii(self, client, admin):
        tag = uuid.uuid4().hex[:10]
        accented = register_and_login(client, display_name=f"Élodie Ørsted {tag}")

        def search(q: str) -> set[str]:
            response = client.get(USERS, headers=admin.headers, params={"q": q, "limit": 100})
            assert response.status_code == 200, response.text
            return {user["id"] for user in response.json()["items"]}

        assert search(f"Élodie Ørsted {tag}") == {accented.id}
        assert search(f"élodie ørsted {tag}") == {accented.id}
        assert search(f"ÉLODIE ØRSTED {tag.upper()}") == {accented.id}

    def test_q_treats_percent_and_underscore_literally(self, client, admin):
        tag = uuid.uuid4().hex[:10]
        percent = register_and_login(client, display_name=f"{tag}%x")
        not_percent = register_and_login(client, display_name=f"{tag}abcx")
        underscore = register_and_login(client, display_name=f"{tag}_y")
        not_underscore = register_and_login(client, display_name=f"{tag}Zy")
        backslash = register_and_login(client, display_name=f"{tag}\\w")

        def search(q: str) -> set[str]:
            response = client.get(USERS, headers=admin.headers, params={"q": q, "limit": 100})
            assert response.status_code == 200, response.text
            return {user["id"] for user in response.json()["items"]}

        assert search(f"{tag}%x") == {percent.id}
        assert search(f"{tag}_y") == {underscore.id}
        assert search(f"{tag}%") == {percent.id}
        assert not_percent.id not in search(f"{tag}%")
        assert not_underscore.id not in search(f"{tag}_")
        assert search(f"{tag}\\w") == {backslash.id}
        assert search(f"{tag}\\") == {backslash.id}
        assert search(tag) == {percent.id, not_percent.id, underscore.id, not_underscore.id, backslash.id}

    def test_role_and_status_filter(self, client, admin):
        tag = uuid.uuid4().hex[:10]
        plain = register_and_login(client, display_name=f"Plain {tag}")
        promoted = register_and_login(client, display_name=f"Promoted {tag}")
        parked = register_and_login(client, display_name=f"Parked {tag}")
        assert client.patch(user_path(promoted.id), json={"role": "admin"}, headers=admin.headers).status_code == 200
        assert (
            client.patch(user_path(parked.id), json={"status": "deactivated"}, headers=admin.headers).status_code == 200
        )

        def ids(**params) -> list[str]:
            response = client.get(USERS, headers=admin.headers, params={"q": tag, "limit": 100, **params})
            assert response.status_code == 200, response.text
            return [user["id"] for user in response.json()["items"]]

        assert ids(role="admin") == [promoted.id]
        assert ids(role="user") == [parked.id, plain.id]
        assert ids(status="deactivated") == [parked.id]
        assert ids(status="active") == [promoted.id, plain.id]
        assert ids(role="user", status="active") == [plain.id]
        assert ids(role="admin", status="deactivated") == []

        admins = collect_pages(client, USERS, headers=admin.headers, params=[("role", "admin"), ("limit", 100)])
        assert {user["role"] for user in admins} == {"admin"}
        assert admin.id in {user["id"] for user in admins}

    def test_bad_filters_are_400(self, client, admin):
        assert_problem(client.get(USERS, headers=admin.headers, params={"role": "root"}), 400, VALIDATION)
        assert_problem(client.get(USERS, headers=admin.headers, params={"status": "gone"}), 400, VALIDATION)
        made_up = client.get(USERS, headers=admin.headers, params={"cursor": "bm90LWEtY3Vyc29y"})
        assert_problem(made_up, 400, VALIDATION)


class TestGetUser:
    def test_any_account_and_unknown_404(self, client, admin, account):
        response = client.get(user_path(account.id), headers=admin.headers)
        assert response.status_code == 200
        body = response.json()
        assert body["id"] == account.id
        assert body["email"] == account.email
        assert body["role"] == "user"
        assert "password_hash" not in body
        assert_problem(client.get(user_path(UNKNOWN_ID), headers=admin.headers), 404, NOT_FOUND)
        assert_problem(client.patch(user_path(UNKNOWN_ID), json={"role": "admin"}, headers=admin.headers), 404)


class TestChangeRole:
    def test_promotion_is_audited_and_takes_effect(self, client, admin, account):
        assert_problem(client.get(USERS, headers=account.headers), 403, FORBIDDEN)
        response = client.patch(user_path(account.id), json={"role": "admin"}, headers=admin.headers)
        assert response.status_code == 200, response.text
        assert response.json()["role"] == "admin"
        assert client.get("/api/v1/users/me", headers=account.headers).json()["role"] == "admin"

        events = audit_of(client, admin, account.id, "role_changed")
        assert len(events) == 1
        event = events[0]
        assert event["actor_id"] == admin.id
        assert event["subject_id"] == account.id
        assert event["details"]["from"] == "user"
        assert event["details"]["to"] == "admin"
        assert event["request_id"] == response.headers["x-request-id"]

        # The promoted account's existing token can now use the administrators' operations.
        assert client.get(USERS, headers=account.headers).status_code == 200
        assert client.get(user_path(admin.id), headers=account.headers).status_code == 200
        assert client.get(AUDIT, headers=account.headers).status_code == 200

        demoted = client.patch(user_path(account.id), json={"role": "user"}, headers=admin.headers)
        assert demoted.json()["role"] == "user"
        assert_problem(client.get(USERS, headers=account.headers), 403, FORBIDDEN)


class TestDeactivation:
    def test_deactivation_ends_sessions_and_blocks_login_until_reactivated(self, client, admin, account):
        second = login(client, account.email)
        response = client.patch(user_path(account.id), json={"status": "deactivated"}, headers=admin.headers)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "deactivated"

        for tokens in (account, second):
            assert_problem(client.get("/api/v1/users/me", headers=bearer(tokens.access_token)), 401, UNAUTHORIZED)
            refreshed = client.post("/api/v1/auth/refresh", json={"refresh_token": tokens.refresh_token})
            assert_problem(refreshed, 401)

        right = client.post("/api/v1/auth/login", json={"email": account.email, "password": PASSWORD})
        assert_problem(right, 403, DEACTIVATED)
        wrong = client.post("/api/v1/auth/login", json={"email": account.email, "password": "a wrong password here"})
        wrong_problem = assert_problem(wrong, 401, INVALID_CREDENTIALS)
        unknown = client.post("/api/v1/auth/login", json={"email": unique_email(), "password": "a wrong password"})
        assert wrong_problem["detail"] == assert_problem(unknown, 401, INVALID_CREDENTIALS)["detail"]

        deactivated = audit_of(client, admin, account.id, "user_deactivated")
        assert len(deactivated) == 1
        assert deactivated[0]["actor_id"] == admin.id
        assert deactivated[0]["subject_id"] == account.id
        assert deactivated[0]["details"]["sessions_ended"] == 2

        reactivated = client.patch(user_path(account.id), json={"status": "active"}, headers=admin.headers)
        assert reactivated.status_code == 200
        assert reactivated.json()["status"] == "active"
        fresh = login(client, account.email)
        assert client.get("/api/v1/users/me", headers=bearer(fresh.access_token)).status_code == 200
        # The sessions ended by the deactivation stay ended.
        assert_problem(client.get("/api/v1/users/me", headers=account.headers), 401, UNAUTHORIZED)

        events = audit_of(client, admin, account.id, "user_reactivated")
        assert len(events) == 1
        assert events[0]["actor_id"] == admin.id
        assert events[0]["subject_id"] == account.id
        assert events[0]["request_id"] == reactivated.headers["x-request-id"]

    def test_deactivated_accounts_cannot_reset_their_password(self, client, admin, account, database):
        client.patch(user_path(account.id), json={"status": "deactivated"}, headers=admin.headers)
        response = client.post("/api/v1/auth/password-reset", json={"email": account.email})
        assert response.status_code == 202
        tokens = database.read(
            lambda db: db.query(PasswordResetToken).filter(PasswordResetToken.user_id == uuid.UUID(account.id)).count()
        )
        assert tokens == 0


class TestOwnAccountGuardRails:
    def test_admin_cannot_change_own_role_or_status_or_delete_self_here(self, client, admin):
        for body in ({"role": "user"}, {"status": "deactivated"}, {"role": "user", "display_name": "Sneaky"}):
            assert_problem(client.patch(user_path(admin.id), json=body, headers=admin.headers), 409, CONFLICT)
        me = client.get("/api/v1/users/me", headers=admin.headers).json()
        assert me["role"] == "admin"
        assert me["status"] == "active"
        assert me["display_name"] == "Admin"

        renamed = client.patch(user_path(admin.id), json={"display_name": "Chief"}, headers=admin.headers)
        assert renamed.status_code == 200, renamed.text
        assert renamed.json()["display_name"] == "Chief"
        assert renamed.json()["role"] == "admin"

        assert_problem(client.delete(user_path(admin.id), headers=admin.headers), 409, CONFLICT)
        assert client.get(USERS, headers=admin.headers).status_code == 200


class TestDeleteUser:
    def test_deletes_account_tasks_and_tokens_and_audits(self, client, admin, account, other_account, database):
        for _ in range(2):
            create_task(client, account)
        create_task(client, other_account)
        response = client.delete(user_path(account.id), headers=admin.headers)
        assert response.status_code == 204, response.text

        assert_problem(client.get(user_path(account.id), headers=admin.headers), 404, NOT_FOUND)
        assert database.user(account.id) is None
        assert database.task_count(account.id) == 0
        assert database.session_count(account.id) == 0
        assert database.task_count(other_account.id) == 1
        assert_problem(client.get("/api/v1/users/me", headers=account.headers), 401, UNAUTHORIZED)
        assert_problem(client.post("/api/v1/auth/refresh", json={"refresh_token": account.refresh_token}), 401)

        events = audit_of(client, admin, account.id, "account_deleted")
        assert len(events) == 1
        assert events[0]["actor_id"] == admin.id
        assert events[0]["subject_id"] == account.id
        assert events[0]["details"]["by_administrator"] is True
        assert events[0]["request_id"] == response.headers["x-request-id"]

        assert_problem(client.delete(user_path(account.id), headers=admin.headers), 404, NOT_FOUND)
        assert_problem(client.delete(user_path(UNKNOWN_ID), headers=admin.headers), 404, NOT_FOUND)


# --------------------------------------------------------------------------------------------
# charter create-admin
# --------------------------------------------------------------------------------------------

STRONG_PASSWORD = "violet tugboat sings under marble thunder"


def run_create_admin(
    database_url: str, tmp_path: Path, *, email: str, password: str, display_name: str = "X"
) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "ENV": "test",
        "VAR_DIR": str(tmp_path),
        "BCRYPT_ROUNDS": "4",
        "JWT_SECRET": TEST_SECRET,
    }
    return subprocess.run(
        [str(CHARTER), "create-admin", "--email", email, "--display-name", display_name, "--password-stdin"],
        input=password + "\n",
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )


class TestCreateAdminCommand:
    def test_new_administrator_can_log_in_and_administer(self, client, database_url, tmp_path, database):
        email = unique_email("cli-admin")
        result = run_create_admin(database_url, tmp_path, email=email, password=STRONG_PASSWORD)
        assert result.returncode == 0, result.stderr
        assert email in result.stdout
        tokens = login(client, email, STRONG_PASSWORD)
        me = client.get("/api/v1/users/me", headers=bearer(tokens.access_token)).json()
        assert me["role"] == "admin"
        assert me["status"] == "active"
        assert me["display_name"] == "X"
        assert client.get(USERS, headers=bearer(tokens.access_token)).status_code == 200
        registered = [event for event in database.audit_events(me["id"]) if event.type == "registered"]
        assert len(registered) == 1
        assert registered[0].details.get("role") == "admin"

    def test_weak_password_exits_1_and_creates_nothing(self, database_url, tmp_path, database):
        email = unique_email("cli-weak")
        result = run_create_admin(database_url, tmp_path, email=email, password="password123")
        assert result.returncode == 1
        assert result.stderr.strip()
        assert database.user_by_email(email) is None

    def test_existing_account_is_promoted_with_its_password_only(self, client, database_url, tmp_path):
        wrong_target = register_and_login(client)
        refused = run_create_admin(database_url, tmp_path, email=wrong_target.email, password=STRONG_PASSWORD)
        assert refused.returncode == 1
        assert client.get("/api/v1/users/me", headers=wrong_target.headers).json()["role"] == "user"

        target = register_and_login(client)
        result = run_create_admin(database_url, tmp_path, email=target.email, password=PASSWORD)
        assert result.returncode == 0, result.stderr
        me = client.get("/api/v1/users/me", headers=target.headers).json()
        assert me["role"] == "admin"
        assert me["id"] == target.id
        assert client.get(USERS, headers=target.headers).status_code == 200

    @pytest.mark.parametrize("refused", ["email", "display_name"])
    def test_refuses_what_the_contract_refuses(self, database_url, tmp_path, database, refused):
        tag = uuid.uuid4().hex[:8]
        email = f"no-at-sign-{tag}" if refused == "email" else f"blank-{tag}@example.com"
        display_name = "   " if refused == "display_name" else "Valid Name"
        try:
            result = run_create_admin(
                database_url, tmp_path, email=email, password=STRONG_PASSWORD, display_name=display_name
            )
            assert result.returncode == 1, result.stdout
            assert database.user_by_email(email) is None
        finally:
            with database.session_factory.begin() as db:  # never leave an unlistable account behind
                db.execute(delete(User).where(User.email == email.lower()))

    def test_promotion_is_audited_truthfully(self, client, admin, database_url, tmp_path, database):
        target = register_and_login(client)
        client.patch(user_path(target.id), json={"role": "admin"}, headers=admin.headers)
        client.patch(user_path(target.id), json={"status": "deactivated"}, headers=admin.headers)
        result = run_create_admin(database_url, tmp_path, email=target.email, password=PASSWORD)
        assert result.returncode == 0, result.stderr
        events = [event for event in database.audit_events(target.id) if event.actor_id is None]
        assert client.get(user_path(target.id), headers=admin.headers).json()["status"] == "active"
        assert "user_reactivated" in [event.type for event in events]
        assert not [event for event in events if event.type == "role_changed" and event.details["from"] == "user"]
