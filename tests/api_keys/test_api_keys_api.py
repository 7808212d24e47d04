"""API keys through HTTP (issue 16): made once and shown once, listed without their secret,
accepted as a bearer credential within their scopes (403 outside them), refused at once when
revoked or expired (401), scoped to their owner, kept from managing keys, sessions, passwords
and administration, gone with the account and present in its export."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from persistence.api_keys.models import ApiKey
from services.api_keys import MAX_ACTIVE_KEYS_PER_USER
from tests.api_keys.conftest import key_headers, make_key
from tests.helpers import assert_problem, collect_pages, create_task, on_plan


def test_the_key_is_shown_once_and_never_listed_or_read_again(client, account, database):
    created = client.post(
        "/api/v1/api-keys",
        json={"name": "CI reporter", "scopes": ["tasks:read", "chat"]},
        headers=account.headers,
    )

    assert created.status_code == 201, created.text
    body = created.json()
    key = body["key"]
    assert created.headers["location"] == f"/api/v1/api-keys/{body['id']}"
    assert created.headers["cache-control"] == "no-store"
    assert body["prefix"] == key[:20] and key.startswith("chk_")
    assert body["scopes"] == ["chat", "tasks:read"]
    assert body["expires_at"] is None and body["last_used_at"] is None
    listed = client.get("/api/v1/api-keys", headers=account.headers)
    read = client.get(f"/api/v1/api-keys/{body['id']}", headers=account.headers)
    assert [item["id"] for item in listed.json()["items"]] == [body["id"]]
    assert read.json() == {name: value for name, value in body.items() if name != "key"}
    for answer in (listed, read):
        assert key not in answer.text and key[21:] not in answer.text
        assert "key" not in (answer.json()["items"][0] if "items" in answer.json() else answer.json())
    stored = database.read(lambda db: db.scalar(select(ApiKey.secret_hash).where(ApiKey.id == uuid.UUID(body["id"]))))
    assert key not in str(stored) and key[21:] not in str(stored)


def test_a_chat_key_cannot_read_tasks(client, account):
    key = make_key(client, account, "chat")["key"]

    response = client.get(account.tasks_path, headers=key_headers(key))

    problem = assert_problem(response, 403, "/problems/insufficient-scope")
    assert "tasks:read" in problem["detail"]


def test_a_tasks_read_key_reads_tasks_as_its_owner_but_cannot_create_one(client, account, database):
    task = create_task(client, account)
    key = make_key(client, account, "tasks:read")["key"]

    listed = client.get(account.tasks_path, headers=key_headers(key))
    read = client.get(f"{account.tasks_path}/{task['id']}", headers=key_headers(key))
    created = client.post(account.tasks_path, json={"title": "not by this key"}, headers=key_headers(key))

    assert listed.status_code == 200 and [item["id"] for item in listed.json()["items"]] == [task["id"]]
    assert read.status_code == 200 and read.json()["id"] == task["id"]
    problem = assert_problem(created, 403, "/problems/insufficient-scope")
    assert "tasks:write" in problem["detail"]
    assert database.task_count(account.id) == 1  # refused before anything was written


def test_a_tasks_write_key_creates_the_owners_task(client, account, database):
    key = make_key(client, account, "tasks:write")["key"]

    created = client.post(account.tasks_path, json={"title": "made by a key"}, headers=key_headers(key))

    assert created.status_code == 201, created.text
    assert database.task_count(account.id) == 1


def test_a_key_on_another_users_resources_is_404_as_for_its_owner(client, account, other_account):
    create_task(client, other_account)
    key = make_key(client, account, "tasks:read")["key"]

    response = client.get(other_account.tasks_path, headers=key_headers(key))

    assert_problem(response, 404, "/problems/not-found")


def test_a_revoked_key_is_refused_at_once(client, account):
    created = make_key(client, account, "tasks:read")
    assert client.get(account.tasks_path, headers=key_headers(created["key"])).status_code == 200

    revoked = client.delete(f"/api/v1/api-keys/{created['id']}", headers=account.headers)

    assert revoked.status_code == 204
    assert_problem(client.get(account.tasks_path, headers=key_headers(created["key"])), 401, "/problems/unauthorized")
    assert_problem(client.get(f"/api/v1/api-keys/{created['id']}", headers=account.headers), 404)
    assert_problem(client.delete(f"/api/v1/api-keys/{created['id']}", headers=account.headers), 404)
    assert client.get("/api/v1/api-keys", headers=account.headers).json()["items"] == []


def test_an_expired_key_is_refused(client, account, app_clock):
    now = datetime.now(UTC)
    created = make_key(client, account, "tasks:read", expires_at=(now + timedelta(hours=1)).isoformat())

    app_clock(now + timedelta(minutes=59))
    assert client.get(account.tasks_path, headers=key_headers(created["key"])).status_code == 200
    app_clock(now + timedelta(hours=1, seconds=1))
    response = client.get(account.tasks_path, headers=key_headers(created["key"]))

    assert_problem(response, 401, "/problems/unauthorized")
    listed = client.get("/api/v1/api-keys", headers=account.headers).json()["items"]
    assert [item["id"] for item in listed] == [created["id"]]  # expired keys stay listed until revoked


def test_last_used_at_is_recorded(client, account):
    created = make_key(client, account, "tasks:read")
    client.get(account.tasks_path, headers=key_headers(created["key"]))

    read = client.get(f"/api/v1/api-keys/{created['id']}", headers=account.headers).json()

    assert read["last_used_at"] is not None
    assert read["last_used_at"] >= read["created_at"]


def test_another_users_key_id_is_404_and_the_key_keeps_working(client, account, other_account):
    created = make_key(client, account, "tasks:read")

    assert_problem(client.get(f"/api/v1/api-keys/{created['id']}", headers=other_account.headers), 404)
    assert_problem(client.delete(f"/api/v1/api-keys/{created['id']}", headers=other_account.headers), 404)
    assert client.get("/api/v1/api-keys", headers=other_account.headers).json()["items"] == []
    assert client.get(account.tasks_path, headers=key_headers(created["key"])).status_code == 200


def test_a_key_cannot_make_keys_end_sessions_change_passwords_or_administer(client, admin, database):
    every_scope = ["tasks:read", "tasks:write", "chatbots:read", "chatbots:write", "knowledge:read", "chat"]
    key = make_key(client, admin, *every_scope)["key"]
    headers = key_headers(key)

    calls = [
        client.post("/api/v1/api-keys", json={"name": "more", "scopes": ["chat"]}, headers=headers),
        client.get("/api/v1/api-keys", headers=headers),
        client.get("/api/v1/auth/sessions", headers=headers),
        client.post("/api/v1/auth/logout", headers=headers),
        client.post(
            "/api/v1/auth/password",
            json={"current_password": admin.password, "new_password": "another correct horse battery"},
            headers=headers,
        ),
        client.get("/api/v1/users", headers=headers),  # an administrator's operation
        client.get("/api/v1/audit-events", headers=headers),
        client.delete("/api/v1/users/me", headers=headers),
    ]

    for response in calls:
        assert_problem(response, 403, "/problems/insufficient-scope")
    count = database.read(
        lambda db: db.scalar(select(func.count()).select_from(ApiKey).where(ApiKey.owner_id == uuid.UUID(admin.id)))
    )
    assert count == 1
    assert database.user(admin.id) is not None


def test_a_wrong_or_malformed_key_is_401(client, account):
    key = make_key(client, account, "tasks:read")["key"]
    wrong_secret = key[:-1] + ("A" if key[-1] != "A" else "B")
    presented = [
        wrong_secret,
        "chk_0000000000000000" + key[20:],
        key[:-1],
        key + "A",
        "chk_",
        "chk_not-a-key",
        key.replace("chk_", "CHK_", 1),
    ]

    for candidate in presented:
        response = client.get(account.tasks_path, headers=key_headers(candidate))
        assert_problem(response, 401, "/problems/unauthorized")


def test_bad_input_is_refused_and_makes_no_key(client, account):
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    bodies = [
        {"name": "k", "scopes": []},
        {"name": "k", "scopes": ["tasks:admin"]},
        {"name": "k", "scopes": ["tasks:read", "tasks:read"]},
        {"name": "", "scopes": ["chat"]},
        {"name": "x" * 101, "scopes": ["chat"]},
        {"name": "k", "scopes": ["chat"], "expires_at": past},
        {"name": "k", "scopes": ["chat"], "expires_at": "tomorrow"},
        {"name": "k", "scopes": ["chat"], "owner_id": account.id},
        {"scopes": ["chat"]},
    ]

    for body in bodies:
        response = client.post("/api/v1/api-keys", json=body, headers=account.headers)
        assert_problem(response, 400, "/problems/validation-error")
    assert client.get("/api/v1/api-keys", headers=account.headers).json()["items"] == []


def test_the_cap_of_active_keys_is_409(client, account, app):
    on_plan(app, account.id)  # the cap, not a quota: a plan that allows 25
    for number in range(MAX_ACTIVE_KEYS_PER_USER):
        make_key(client, account, "chat", name=f"key {number}")

    refused = client.post("/api/v1/api-keys", json={"name": "one more", "scopes": ["chat"]}, headers=account.headers)

    assert_problem(refused, 409, "/problems/api-key-limit-reached")
    keys = collect_pages(client, "/api/v1/api-keys", headers=account.headers, params={"limit": 10})
    assert len(keys) == MAX_ACTIVE_KEYS_PER_USER
    assert len({key["id"] for key in keys}) == MAX_ACTIVE_KEYS_PER_USER


def test_keys_are_in_the_export_without_secrets_and_go_with_the_account(client, account, database):
    kept = make_key(client, account, "tasks:read", name="kept")
    revoked = make_key(client, account, "chat", name="revoked")
    client.delete(f"/api/v1/api-keys/{revoked['id']}", headers=account.headers)

    export = client.get("/api/v1/users/me/export", headers=account.headers)

    assert export.status_code == 200
    exported = {item["id"]: item for item in export.json()["api_keys"]}
    assert set(exported) == {kept["id"], revoked["id"]}
    assert exported[kept["id"]]["revoked_at"] is None and exported[revoked["id"]]["revoked_at"] is not None
    for created in (kept, revoked):
        assert created["key"] not in export.text and created["key"][21:] not in export.text
    hashes = database.read(
        lambda db: list(db.scalars(select(ApiKey.secret_hash).where(ApiKey.owner_id == uuid.UUID(account.id))))
    )
    assert len(hashes) == 2
    assert all(digest not in export.text for digest in hashes)

    assert client.delete("/api/v1/users/me", headers=account.headers).status_code == 204

    assert_problem(client.get(account.tasks_path, headers=key_headers(kept["key"])), 401, "/problems/unauthorized")
    left = database.read(
        lambda db: db.scalar(select(func.count()).select_from(ApiKey).where(ApiKey.owner_id == uuid.UUID(account.id)))
    )
    assert left == 0
