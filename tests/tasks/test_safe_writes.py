"""Safe writes: every task answer carries its version as a strong ETag; GET honours
If-None-Match (304), PUT / PATCH …/complete / DELETE honour If-Match (412 when stale, strong
comparison); POST …/tasks and POST …/tasks/bulk honour Idempotency-Key (replay, 422 on reuse
with another body, 409 while in progress, released on failure, per user, expiring)."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from persistence.idempotency.models import IdempotencyRecord
from tests.helpers import (
    NOT_FOUND,
    PRECONDITION_FAILED,
    VALIDATION,
    assert_problem,
    create_task,
    session_factory,
)
from tests.tasks.conftest import bulk, bulk_create, list_all, read, task_path

KEY_REUSED = "/problems/idempotency-key-reused"
IN_PROGRESS = "/problems/idempotency-in-progress"
UNREPRESENTABLE = "0001-01-01T00:00:00+01:00"


def complete(client, account, task_id: str, completed: bool | None = None, **headers: str):
    kwargs: dict[str, Any] = {"json": {"completed": completed}} if completed is not None else {}
    return client.patch(f"{task_path(account, task_id)}/complete", headers={**account.headers, **headers}, **kwargs)


def replace(client, account, task_id: str, body: dict[str, Any], **headers: str):
    return client.put(task_path(account, task_id), json=body, headers={**account.headers, **headers})


def get(client, account, task_id: str, **headers: str):
    return client.get(task_path(account, task_id), headers={**account.headers, **headers})


def assert_etag_matches(response) -> dict[str, Any]:
    body = response.json()
    assert response.headers["etag"] == f'"{body["version"]}"'
    return body


# --------------------------------------------------------------------------------------------
# ETag and versions
# --------------------------------------------------------------------------------------------


class TestVersions:
    def test_every_answer_carries_the_version_as_etag(self, client, account):
        created = client.post(account.tasks_path, json={"title": "Versioned"}, headers=account.headers)
        assert created.status_code == 201
        task = assert_etag_matches(created)
        assert task["version"] == 1
        assert assert_etag_matches(get(client, account, task["id"]))["version"] == 1

        replaced = replace(client, account, task["id"], {"title": "Versioned", "priority": "high"})
        assert assert_etag_matches(replaced)["version"] == 2
        done = complete(client, account, task["id"])
        assert assert_etag_matches(done)["version"] == 3

        again = complete(client, account, task["id"])  # already done: no change, no new version
        assert assert_etag_matches(again)["version"] == 3
        assert again.json()["updated_at"] == done.json()["updated_at"]
        assert again.json()["completed_at"] == done.json()["completed_at"]

        reopened = complete(client, account, task["id"], completed=False)
        assert assert_etag_matches(reopened)["version"] == 4
        assert assert_etag_matches(complete(client, account, task["id"], completed=False))["version"] == 4
        assert assert_etag_matches(get(client, account, task["id"]))["version"] == 4
        assert [item["version"] for item in list_all(client, account)] == [4]

    def test_every_replace_is_a_new_version(self, client, account):
        task = create_task(client, account, title="Same")
        for expected in (2, 3, 4):
            response = replace(client, account, task["id"], {"title": "Same"})
            assert assert_etag_matches(response)["version"] == expected

    def test_refused_change_keeps_the_version(self, client, account):
        task = create_task(client, account)
        assert_problem(replace(client, account, task["id"], {"title": ""}), 400, VALIDATION)
        assert_problem(replace(client, account, task["id"], {"title": "x", "due_at": UNREPRESENTABLE}), 400, VALIDATION)
        assert read(client, account, task["id"]) == task


# --------------------------------------------------------------------------------------------
# If-None-Match on GET
# --------------------------------------------------------------------------------------------


class TestIfNoneMatch:
    @pytest.mark.parametrize("header", ['"1"', "*", 'W/"1"', '"7", "1"', '"7",W/"1"'])
    def test_matching_tag_is_304_without_body(self, client, account, header):
        task = create_task(client, account)
        response = get(client, account, task["id"], **{"If-None-Match": header})
        assert response.status_code == 304
        assert response.content == b""
        assert response.headers["etag"] == '"1"'

    @pytest.mark.parametrize("header", ['"1"', 'W/"1"', '"7", "8"', '"2 "', "2"])
    def test_stale_or_other_tag_is_200(self, client, account, header):
        task = create_task(client, account)
        replace(client, account, task["id"], {"title": "Changed"})
        response = get(client, account, task["id"], **{"If-None-Match": header})
        assert response.status_code == 200
        assert assert_etag_matches(response)["version"] == 2
        assert response.json()["title"] == "Changed"

    def test_current_tag_after_a_change_is_304(self, client, account):
        task = create_task(client, account)
        changed = replace(client, account, task["id"], {"title": "Changed"})
        response = get(client, account, task["id"], **{"If-None-Match": changed.headers["etag"]})
        assert response.status_code == 304
        assert response.headers["etag"] == '"2"'

    def test_unknown_task_is_404_even_with_star(self, client, account):
        response = get(client, account, str(uuid.uuid4()), **{"If-None-Match": "*"})
        assert_problem(response, 404, NOT_FOUND)


# --------------------------------------------------------------------------------------------
# If-Match on PUT, PATCH …/complete, DELETE
# --------------------------------------------------------------------------------------------


def change(client, account, operation: str, task_id: str, if_match: str):
    """Make a change under `If-Match` and return the answer."""
    headers = {"If-Match": if_match}
    if operation == "put":
        return replace(client, account, task_id, {"title": "Changed", "priority": "urgent"}, **headers)
    if operation == "complete":
        return complete(client, account, task_id, **headers)
    return client.delete(task_path(account, task_id), headers={**account.headers, **headers})


SUCCESS = {"put": 200, "complete": 200, "delete": 204}
OPERATIONS = ["put", "complete", "delete"]


class TestIfMatch:
    @pytest.mark.parametrize("operation", OPERATIONS)
    @pytest.mark.parametrize("if_match", ['"1"', "*", '"5", "1"', '"1","5"', ' "1" '])
    def test_matching_condition_applies(self, client, account, operation, if_match):
        task = create_task(client, account)
        response = change(client, account, operation, task["id"], if_match)
        assert response.status_code == SUCCESS[operation], response.text
        if operation == "delete":
            assert_problem(get(client, account, task["id"]), 404, NOT_FOUND)
        else:
            assert assert_etag_matches(response)["version"] == 2
            assert read(client, account, task["id"]) == response.json()

    @pytest.mark.parametrize("operation", OPERATIONS)
    def test_stale_tag_is_412_and_changes_nothing(self, client, account, operation):
        task = create_task(client, account)
        current = replace(client, account, task["id"], {"title": "Second", "tags": ["kept"]}).json()
        assert current["version"] == 2
        response = change(client, account, operation, task["id"], '"1"')
        problem = assert_problem(response, 412, PRECONDITION_FAILED)
        assert "2" in problem["detail"]
        assert read(client, account, task["id"]) == current

    @pytest.mark.parametrize("operation", OPERATIONS)
    @pytest.mark.parametrize("if_match", ['W/"1"', '"5", "6"', "1", "abc", '"1x"', 'W/"1", "2"'])
    def test_weak_or_foreign_tag_is_412(self, client, account, operation, if_match):
        """If-Match compares strongly: a weak tag never matches, even of the current version."""
        task = create_task(client, account)
        response = change(client, account, operation, task["id"], if_match)
        assert_problem(response, 412, PRECONDITION_FAILED)
        assert read(client, account, task["id"]) == task

    @pytest.mark.parametrize("operation", OPERATIONS)
    def test_unknown_task_is_404_not_412(self, client, account, operation):
        response = change(client, account, operation, str(uuid.uuid4()), '"1"')
        assert_problem(response, 404, NOT_FOUND)

    def test_lost_update_is_prevented(self, client, account):
        """Two clients read version 1; the first write wins, the second is refused."""
        task = create_task(client, account, title="Shared")
        etag = get(client, account, task["id"]).headers["etag"]
        first = replace(client, account, task["id"], {"title": "First writer"}, **{"If-Match": etag})
        assert first.status_code == 200
        second = replace(client, account, task["id"], {"title": "Second writer"}, **{"If-Match": etag})
        assert_problem(second, 412, PRECONDITION_FAILED)
        assert read(client, account, task["id"])["title"] == "First writer"
        retried = replace(
            client, account, task["id"], {"title": "Second writer"}, **{"If-Match": first.headers["etag"]}
        )
        assert assert_etag_matches(retried)["version"] == 3

    def test_complete_of_a_done_task_under_a_stale_tag_is_412(self, client, account):
        task = create_task(client, account)
        done = complete(client, account, task["id"]).json()
        assert_problem(complete(client, account, task["id"], **{"If-Match": '"1"'}), 412, PRECONDITION_FAILED)
        assert complete(client, account, task["id"], **{"If-Match": '"2"'}).json() == done


# --------------------------------------------------------------------------------------------
# Idempotency-Key
# --------------------------------------------------------------------------------------------


def fingerprint(method: str, path: str, body: Any) -> str:
    """The request fingerprint as server/integration/idempotency.py computes it."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{method} {path}\n{canonical}".encode()).hexdigest()


def store_record(app, account, key: str, *, fingerprint: str, state: str, expires_in: timedelta, **answer: Any):
    """Put an idempotency record for `account` and `key` straight into the database."""
    now = datetime.now(UTC)
    with session_factory(app).begin() as db:
        db.add(
            IdempotencyRecord(
                owner_id=uuid.UUID(account.id),
                key=key,
                fingerprint=fingerprint,
                state=state,
                created_at=now - timedelta(days=2),
                expires_at=now + expires_in,
                **answer,
            )
        )


def stored_record(app, account, key: str) -> IdempotencyRecord | None:
    with session_factory(app)() as db:
        return db.scalars(
            select(IdempotencyRecord).where(
                IdempotencyRecord.owner_id == uuid.UUID(account.id), IdempotencyRecord.key == key
            )
        ).one_or_none()


def post_task(client, account, body: dict[str, Any], key: str | None):
    headers = {**account.headers, **({"Idempotency-Key": key} if key else {})}
    return client.post(account.tasks_path, json=body, headers=headers)


def new_key() -> str:
    return f"key-{uuid.uuid4()}"


class TestIdempotentCreate:
    def test_retry_gets_the_first_answer_and_creates_once(self, client, app, account):
        key, body = new_key(), {"title": "Pay rent", "priority": "high", "tags": ["Home"]}
        first = post_task(client, account, body, key)
        assert first.status_code == 201
        assert "idempotent-replayed" not in first.headers
        for _ in range(2):
            retry = post_task(client, account, body, key)
            assert retry.status_code == 201
            assert retry.headers["idempotent-replayed"] == "true"
            assert retry.json() == first.json()
            assert retry.headers["location"] == first.headers["location"]
            assert retry.headers["etag"] == first.headers["etag"] == '"1"'
            assert retry.headers["content-type"].startswith("application/json")
        assert [item["id"] for item in list_all(client, account)] == [first.json()["id"]]
        # The record holds the answer, under the fingerprint this module computes.
        record = stored_record(app, account, key)
        assert record is not None and record.state == "completed" and record.response_status == 201
        assert record.fingerprint == fingerprint("POST", account.tasks_path, body)

    def test_replay_ignores_the_order_of_members(self, client, account):
        key = new_key()
        first = post_task(client, account, {"title": "Ordered", "priority": "low"}, key)
        retry = post_task(client, account, {"priority": "low", "title": "Ordered"}, key)
        assert retry.headers["idempotent-replayed"] == "true"
        assert retry.json() == first.json()

    def test_replay_is_the_first_answer_not_the_current_state(self, client, account):
        key, body = new_key(), {"title": "Snapshot"}
        first = post_task(client, account, body, key)
        replace(client, account, first.json()["id"], {"title": "Changed since"})
        retry = post_task(client, account, body, key)
        assert retry.status_code == 201 and retry.json() == first.json()
        assert len(list_all(client, account)) == 1

    def test_same_key_with_another_body_is_422(self, client, account):
        key = new_key()
        first = post_task(client, account, {"title": "Original"}, key)
        response = post_task(client, account, {"title": "Something else"}, key)
        assert_problem(response, 422, KEY_REUSED)
        assert [item["title"] for item in list_all(client, account)] == ["Original"]
        # The key still answers the first request.
        assert post_task(client, account, {"title": "Original"}, key).json() == first.json()

    def test_same_key_on_another_path_is_422(self, client, account):
        key = new_key()
        post_task(client, account, {"title": "Original"}, key)
        response = bulk(client, account, [{"op": "create", "task": {"title": "Original"}}], **{"Idempotency-Key": key})
        assert_problem(response, 422, KEY_REUSED)
        assert len(list_all(client, account)) == 1

    def test_keys_are_per_user(self, client, account, other_account):
        key, body = new_key(), {"title": "Same key, same body"}
        mine = post_task(client, account, body, key)
        theirs = post_task(client, other_account, body, key)
        assert theirs.status_code == 201
        assert "idempotent-replayed" not in theirs.headers
        assert theirs.json()["id"] != mine.json()["id"]
        assert theirs.headers["location"].startswith(other_account.tasks_path)
        assert [item["id"] for item in list_all(client, other_account)] == [theirs.json()["id"]]
        assert [item["id"] for item in list_all(client, account)] == [mine.json()["id"]]
        # Each user's retry replays their own answer.
        assert post_task(client, other_account, body, key).json() == theirs.json()
        assert post_task(client, account, body, key).json() == mine.json()

    def test_failed_request_does_not_use_up_the_key(self, client, app, account):
        key = new_key()
        bad = {"title": "Bad date", "due_at": UNREPRESENTABLE}
        assert_problem(post_task(client, account, bad, key), 400, VALIDATION)
        assert stored_record(app, account, key) is None
        assert_problem(post_task(client, account, bad, key), 400, VALIDATION)  # runs again, not a 409
        fixed = post_task(client, account, {"title": "Good date", "due_at": "2030-01-01T00:00:00Z"}, key)
        assert fixed.status_code == 201
        assert "idempotent-replayed" not in fixed.headers
        assert [item["id"] for item in list_all(client, account)] == [fixed.json()["id"]]
        replay = post_task(client, account, {"title": "Good date", "due_at": "2030-01-01T00:00:00Z"}, key)
        assert replay.headers["idempotent-replayed"] == "true"

    def test_request_in_progress_is_409(self, client, app, account):
        key, body = new_key(), {"title": "Slow"}
        store_record(
            app,
            account,
            key,
            fingerprint=fingerprint("POST", account.tasks_path, body),
            state="in_progress",
            expires_in=timedelta(hours=1),
        )
        assert_problem(post_task(client, account, body, key), 409, IN_PROGRESS)
        assert_problem(post_task(client, account, body, key), 409, IN_PROGRESS)  # the claim is not released
        assert_problem(post_task(client, account, {"title": "Other"}, key), 422, KEY_REUSED)
        assert list_all(client, account) == []
        record = stored_record(app, account, key)
        assert record is not None and record.state == "in_progress"

    @pytest.mark.parametrize("state", ["completed", "in_progress"])
    def test_expired_record_is_replaced_not_replayed(self, client, app, account, state):
        key, body = new_key(), {"title": "After a day"}
        answer = (
            {
                "response_status": 201,
                "response_headers": {"Location": "/nowhere", "ETag": '"9"', "Content-Type": "application/json"},
                "response_body": json.dumps({"stale": True}),
            }
            if state == "completed"
            else {}
        )
        store_record(
            app,
            account,
            key,
            fingerprint=fingerprint("POST", account.tasks_path, body),
            state=state,
            expires_in=-timedelta(minutes=1),
            **answer,
        )
        response = post_task(client, account, body, key)
        assert response.status_code == 201
        assert "idempotent-replayed" not in response.headers
        assert response.json()["title"] == "After a day"
        assert [item["id"] for item in list_all(client, account)] == [response.json()["id"]]
        # The key now answers with the new task, and with a body of its own.
        assert post_task(client, account, body, key).json() == response.json()
        record = stored_record(app, account, key)
        assert record is not None and record.expires_at > datetime.now(UTC) + timedelta(hours=23)

    def test_expired_record_of_another_body_is_not_a_conflict(self, client, app, account):
        key = new_key()
        store_record(app, account, key, fingerprint="0" * 64, state="in_progress", expires_in=-timedelta(seconds=1))
        response = post_task(client, account, {"title": "Fresh"}, key)
        assert response.status_code == 201

    def test_without_a_key_every_post_creates(self, client, account):
        body = {"title": "Twice"}
        assert post_task(client, account, body, None).status_code == 201
        assert post_task(client, account, body, None).status_code == 201
        assert len(list_all(client, account)) == 2


class TestIdempotentBulk:
    def test_retry_replays_the_207_and_applies_nothing_twice(self, client, account):
        (x,) = bulk_create(client, account, [{"title": "x"}])
        operations = [
            {"op": "create", "task": {"title": "made once"}},
            {"op": "replace", "id": x["id"], "task": {"title": "x2"}},
            {"op": "complete", "id": x["id"]},
            {"op": "complete", "id": str(uuid.uuid4())},  # a failed item is part of the answer
        ]
        key = new_key()
        first = bulk(client, account, operations, **{"Idempotency-Key": key})
        assert first.status_code == 207
        assert [result["status"] for result in first.json()["results"]] == [201, 200, 200, 404]
        assert "idempotent-replayed" not in first.headers
        retry = bulk(client, account, operations, **{"Idempotency-Key": key})
        assert retry.status_code == 207
        assert retry.headers["idempotent-replayed"] == "true"
        assert retry.json() == first.json()
        titles = sorted(item["title"] for item in list_all(client, account))
        assert titles == ["made once", "x2"]
        assert read(client, account, x["id"])["version"] == 3  # replace and complete, once each

    def test_same_key_with_other_operations_is_422(self, client, account):
        key = new_key()
        bulk(client, account, [{"op": "create", "task": {"title": "a"}}], **{"Idempotency-Key": key})
        response = bulk(client, account, [{"op": "create", "task": {"title": "b"}}], **{"Idempotency-Key": key})
        assert_problem(response, 422, KEY_REUSED)
        assert [item["title"] for item in list_all(client, account)] == ["a"]

    def test_refused_bulk_does_not_use_up_the_key(self, client, account):
        key = new_key()
        too_many = [{"op": "create", "task": {"title": f"t{i}"}} for i in range(101)]
        assert_problem(bulk(client, account, too_many, **{"Idempotency-Key": key}), 400, VALIDATION)
        response = bulk(client, account, too_many[:2], **{"Idempotency-Key": key})
        assert response.status_code == 207 and "idempotent-replayed" not in response.headers
        assert len(list_all(client, account)) == 2
