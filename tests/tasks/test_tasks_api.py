"""The todo-task operations (brief 002): create, read, replace, complete, delete and list by
keyset cursor, with validation, owner isolation and authentication edge cases.

Every answer also passes through the `client` fixture, which validates it against the contract.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from handlers.responses import timestamp
from tests.helpers import NOT_FOUND, UNAUTHORIZED, VALIDATION, assert_problem, create_task
from tests.tasks.conftest import frozen_clock, list_all, list_page, parameters, pointers, read, task_path

TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def make_cursor(position: Any) -> str:
    """A cursor in the service's own encoding (unpadded URL-safe base64 JSON)."""
    raw = json.dumps(position, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def newest_first(items: list[dict[str, Any]]) -> bool:
    keys = [(item["created_at"], item["id"]) for item in items]
    return keys == sorted(keys, reverse=True)


# --------------------------------------------------------------------------------------------
# Create
# --------------------------------------------------------------------------------------------


class TestCreate:
    def test_minimal_task_takes_defaults(self, client, account):
        response = client.post(account.tasks_path, json={"title": "Buy milk"}, headers=account.headers)
        assert response.status_code == 201
        body = response.json()
        uuid.UUID(body["id"])
        assert response.headers["location"] == f"{account.tasks_path}/{body['id']}"
        assert body["title"] == "Buy milk"
        assert body["description"] is None
        assert body["priority"] == "medium"
        assert body["due_at"] is None
        assert body["completed"] is False
        assert body["completed_at"] is None
        assert TIMESTAMP.match(body["created_at"])
        assert body["created_at"] == body["updated_at"]

    def test_location_leads_to_the_task(self, client, account):
        response = client.post(account.tasks_path, json={"title": "Follow me"}, headers=account.headers)
        fetched = client.get(response.headers["location"], headers=account.headers)
        assert fetched.status_code == 200
        assert fetched.json() == response.json()

    def test_all_fields_are_stored(self, client, account):
        body = create_task(
            client,
            account,
            title="Report",
            description="Two pages",
            priority="urgent",
            due_at="2026-12-01T17:00:00Z",
        )
        assert (body["title"], body["description"], body["priority"]) == ("Report", "Two pages", "urgent")
        assert body["due_at"] == "2026-12-01T17:00:00.000000Z"
        assert read(client, account, body["id"]) == body

    def test_due_at_with_offset_is_returned_in_utc(self, client, account):
        body = create_task(client, account, due_at="2026-12-01T18:00:00+01:00")
        assert body["due_at"] == "2026-12-01T17:00:00.000000Z"
        assert read(client, account, body["id"])["due_at"] == "2026-12-01T17:00:00.000000Z"

    def test_due_at_before_year_1000_keeps_four_digit_year(self, client, account):
        body = create_task(client, account, due_at="0999-01-01T00:00:00Z")
        assert body["due_at"] == "0999-01-01T00:00:00.000000Z"

    def test_due_at_with_negative_offset_and_fraction(self, client, account):
        body = create_task(client, account, due_at="2026-12-01T22:30:00.25-05:30")
        assert body["due_at"] == "2026-12-02T04:00:00.250000Z"

    @pytest.mark.parametrize("priority", ["low", "medium", "high", "urgent"])
    def test_every_priority_is_accepted(self, client, account, priority):
        assert create_task(client, account, priority=priority)["priority"] == priority

    def test_explicit_nulls_are_accepted(self, client, account):
        body = create_task(client, account, description=None, due_at=None)
        assert body["description"] is None and body["due_at"] is None

    def test_title_of_200_characters_is_accepted(self, client, account):
        title = "é" * 200
        assert create_task(client, account, title=title)["title"] == title

    def test_new_task_appears_in_the_list(self, client, account):
        body = create_task(client, account)
        assert [item["id"] for item in list_page(client, account)["items"]] == [body["id"]]


class TestCreateValidation:
    @pytest.mark.parametrize(
        ("body", "pointer"),
        [
            ({}, "/title"),
            ({"description": "no title"}, "/title"),
            ({"title": ""}, "/title"),
            ({"title": "   "}, "/title"),
            ({"title": "\t\n"}, "/title"),
            ({"title": "x" * 201}, "/title"),
            ({"title": 42}, "/title"),
            ({"title": None}, "/title"),
            ({"title": "ok", "owner_id": str(uuid.uuid4())}, "/owner_id"),
            ({"title": "ok", "completed": True}, "/completed"),
            ({"title": "ok", "completed_at": "2026-01-01T00:00:00Z"}, "/completed_at"),
            ({"title": "ok", "id": str(uuid.uuid4())}, "/id"),
            ({"title": "ok", "created_at": "2026-01-01T00:00:00Z"}, "/created_at"),
            ({"title": "ok", "priority": "critical"}, "/priority"),
            ({"title": "ok", "priority": "HIGH"}, "/priority"),
            ({"title": "ok", "priority": None}, "/priority"),
            ({"title": "ok", "due_at": "tomorrow"}, "/due_at"),
            ({"title": "ok", "due_at": "2026-12-01"}, "/due_at"),
            ({"title": "ok", "due_at": "2026-12-01T18:00:00"}, "/due_at"),  # no offset
            ({"title": "ok", "due_at": "2026-13-01T18:00:00Z"}, "/due_at"),
            ({"title": "ok", "due_at": 1764608400}, "/due_at"),
            ({"title": "ok", "due_at": "2026-12-31T23:59:60Z"}, "/due_at"),  # leap second
            ({"title": "ok", "due_at": "0001-01-01T00:30:00+01:00"}, "/due_at"),  # before year 1 in UTC
            ({"title": "ok", "due_at": "9999-12-31T23:59:59-01:00"}, "/due_at"),  # after year 9999 in UTC
            ({"title": "ok", "description": 7}, "/description"),
        ],
    )
    def test_invalid_body_names_the_field(self, client, account, body, pointer):
        response = client.post(account.tasks_path, json=body, headers=account.headers)
        problem = assert_problem(response, 400, VALIDATION)
        assert pointer in pointers(problem), problem
        assert list_page(client, account)["items"] == []  # nothing was created

    @pytest.mark.parametrize(("field", "length"), [("description", 5001), ("title", 2500)])
    def test_overlong_value_answers_a_contract_valid_problem(self, client, account, field, length):
        body = {"title": "ok", field: "x" * length}
        response = client.post(account.tasks_path, json=body, headers=account.headers, validate=False)
        problem = assert_problem(response, 400, VALIDATION)
        assert f"/{field}" in pointers(problem)
        # The contract bounds FieldError.message to 2000 characters (and Problem.detail to 4000).
        too_long = [len(error["message"]) for error in problem["errors"] if len(error["message"]) > 2000]
        assert not too_long, f"error messages of {too_long} characters break the contract (maxLength 2000)"
        client.check("POST", account.tasks_path, response)

    def test_mass_assignment_of_owner_is_refused(self, client, account, other_account):
        body = {"title": "sneaky", "owner_id": other_account.id}
        problem = assert_problem(client.post(account.tasks_path, json=body, headers=account.headers), 400)
        assert "/owner_id" in pointers(problem)
        assert list_page(client, other_account)["items"] == []
        assert list_page(client, account)["items"] == []

    def test_every_invalid_field_is_reported(self, client, account):
        body = {"title": "   ", "priority": "nope", "due_at": "soon"}
        problem = assert_problem(client.post(account.tasks_path, json=body, headers=account.headers), 400)
        assert {"/title", "/priority", "/due_at"} <= set(pointers(problem))

    @pytest.mark.parametrize("body", [[], "a title", 5, None])
    def test_body_must_be_an_object(self, client, account, body):
        response = client.post(
            account.tasks_path, content=json.dumps(body), headers=account.headers | {"Content-Type": "application/json"}
        )
        problem = assert_problem(response, 400, VALIDATION)
        assert "" in pointers(problem)

    def test_missing_body(self, client, account):
        response = client.post(account.tasks_path, headers=account.headers | {"Content-Type": "application/json"})
        assert "" in pointers(assert_problem(response, 400, VALIDATION))

    def test_malformed_json(self, client, account):
        response = client.post(
            account.tasks_path, content=b'{"title": ', headers=account.headers | {"Content-Type": "application/json"}
        )
        assert "" in pointers(assert_problem(response, 400, VALIDATION))

    def test_unknown_query_parameter(self, client, account):
        response = client.post(account.tasks_path, json={"title": "t"}, params={"force": "1"}, headers=account.headers)
        problem = assert_problem(response, 400, VALIDATION)
        assert ("force", "query") in parameters(problem)
        assert list_page(client, account)["items"] == []


# --------------------------------------------------------------------------------------------
# Get
# --------------------------------------------------------------------------------------------


class TestGet:
    def test_returns_the_task(self, client, account):
        created = create_task(client, account, description="d", priority="low")
        response = client.get(task_path(account, created["id"]), headers=account.headers)
        assert response.status_code == 200
        assert response.json() == created

    def test_unknown_task_is_404(self, client, account):
        create_task(client, account)
        assert_problem(client.get(task_path(account, str(uuid.uuid4())), headers=account.headers), 404, NOT_FOUND)

    @pytest.mark.parametrize("task_id", ["not-a-uuid", "123", "5b3f9f2e-9c5e-4a8e-8a8c-3a3d3b2c1a1"])
    def test_non_uuid_task_id_is_400(self, client, account, task_id):
        problem = assert_problem(client.get(task_path(account, task_id), headers=account.headers), 400, VALIDATION)
        assert ("task_id", "path") in parameters(problem)

    def test_non_uuid_user_id_is_400(self, client, account):
        response = client.get("/api/v1/users/not-a-uuid/tasks", headers=account.headers)
        problem = assert_problem(response, 400, VALIDATION)
        assert ("user_id", "path") in parameters(problem)

    def test_unknown_query_parameter(self, client, account):
        task = create_task(client, account)
        response = client.get(task_path(account, task["id"]), params={"expand": "all"}, headers=account.headers)
        assert ("expand", "query") in parameters(assert_problem(response, 400, VALIDATION))


# --------------------------------------------------------------------------------------------
# Replace (PUT)
# --------------------------------------------------------------------------------------------


class TestReplace:
    def test_sets_every_field(self, client, account):
        task = create_task(client, account)
        new = {"title": "New", "description": "Desc", "priority": "high", "due_at": "2027-01-01T09:00:00+02:00"}
        response = client.put(task_path(account, task["id"]), json=new, headers=account.headers)
        assert response.status_code == 200
        body = response.json()
        assert body["id"] == task["id"]
        assert (body["title"], body["description"], body["priority"]) == ("New", "Desc", "high")
        assert body["due_at"] == "2027-01-01T07:00:00.000000Z"
        assert body["completed"] is False and body["completed_at"] is None
        assert body["created_at"] == task["created_at"]
        assert body["updated_at"] > task["updated_at"]
        assert read(client, account, task["id"]) == body

    def test_omitted_optional_fields_are_reset(self, client, account):
        task = create_task(client, account, description="d", priority="urgent", due_at="2026-12-01T17:00:00Z")
        client.patch(f"{task_path(account, task['id'])}/complete", headers=account.headers)
        response = client.put(task_path(account, task["id"]), json={"title": "Only title"}, headers=account.headers)
        assert response.status_code == 200
        body = response.json()
        assert body["title"] == "Only title"
        assert body["description"] is None
        assert body["priority"] == "medium"
        assert body["due_at"] is None
        assert body["completed"] is False
        assert body["completed_at"] is None
        assert read(client, account, task["id"]) == body

    def test_completed_true_stamps_completed_at_and_false_clears_it(self, client, account):
        task = create_task(client, account)
        path = task_path(account, task["id"])
        done = client.put(path, json={"title": "t", "completed": True}, headers=account.headers).json()
        assert done["completed"] is True
        assert TIMESTAMP.match(done["completed_at"])
        assert done["completed_at"] == done["updated_at"]
        assert done["completed_at"] >= task["created_at"]

        again = client.put(path, json={"title": "t2", "completed": True}, headers=account.headers).json()
        assert again["completed_at"] == done["completed_at"]  # kept while the task stays done
        assert again["updated_at"] > done["updated_at"]

        reopened = client.put(path, json={"title": "t3", "completed": False}, headers=account.headers).json()
        assert reopened["completed"] is False
        assert reopened["completed_at"] is None
        assert read(client, account, task["id"]) == reopened

    def test_unknown_task_is_404(self, client, account):
        response = client.put(task_path(account, str(uuid.uuid4())), json={"title": "t"}, headers=account.headers)
        assert_problem(response, 404, NOT_FOUND)

    @pytest.mark.parametrize(
        ("body", "pointer"),
        [
            ({}, "/title"),
            ({"title": "   "}, "/title"),
            ({"title": "x" * 201}, "/title"),
            ({"title": "t", "priority": "someday"}, "/priority"),
            ({"title": "t", "due_at": "next week"}, "/due_at"),
            ({"title": "t", "due_at": "9999-12-31T23:59:59-01:00"}, "/due_at"),
            ({"title": "t", "completed": "yes"}, "/completed"),
            ({"title": "t", "completed_at": "2026-01-01T00:00:00Z"}, "/completed_at"),
            ({"title": "t", "owner_id": str(uuid.uuid4())}, "/owner_id"),
            ({"title": "t", "id": str(uuid.uuid4())}, "/id"),
        ],
    )
    def test_invalid_body_names_the_field_and_changes_nothing(self, client, account, body, pointer):
        task = create_task(client, account, description="keep me")
        response = client.put(task_path(account, task["id"]), json=body, headers=account.headers)
        assert pointer in pointers(assert_problem(response, 400, VALIDATION))
        assert read(client, account, task["id"]) == task

    def test_non_uuid_task_id_is_400(self, client, account):
        response = client.put(task_path(account, "nope"), json={"title": "t"}, headers=account.headers)
        assert ("task_id", "path") in parameters(assert_problem(response, 400, VALIDATION))


# --------------------------------------------------------------------------------------------
# Complete (PATCH …/complete)
# --------------------------------------------------------------------------------------------


class TestComplete:
    def test_marks_done_and_stamps_completed_at(self, client, account):
        task = create_task(client, account, priority="high", description="d")
        response = client.patch(
            f"{task_path(account, task['id'])}/complete", json={"completed": True}, headers=account.headers
        )
        assert response.status_code == 200
        body = response.json()
        assert body["completed"] is True
        assert TIMESTAMP.match(body["completed_at"])
        assert body["completed_at"] == body["updated_at"]
        assert body["updated_at"] > task["updated_at"]
        assert body["created_at"] == task["created_at"]
        # Other fields are untouched.
        assert (body["title"], body["description"], body["priority"]) == (task["title"], "d", "high")
        assert read(client, account, task["id"]) == body

    def test_without_body_marks_done(self, client, account):
        task = create_task(client, account)
        response = client.patch(f"{task_path(account, task['id'])}/complete", headers=account.headers)
        assert response.status_code == 200
        assert response.json()["completed"] is True
        assert response.json()["completed_at"] is not None
        assert read(client, account, task["id"])["completed"] is True

    def test_empty_object_marks_done(self, client, account):
        task = create_task(client, account)
        response = client.patch(f"{task_path(account, task['id'])}/complete", json={}, headers=account.headers)
        assert response.status_code == 200
        assert response.json()["completed"] is True

    def test_completing_twice_changes_nothing(self, client, account):
        task = create_task(client, account)
        path = f"{task_path(account, task['id'])}/complete"
        first = client.patch(path, headers=account.headers).json()
        second = client.patch(path, json={"completed": True}, headers=account.headers)
        assert second.status_code == 200
        assert second.json()["completed_at"] == first["completed_at"]
        assert second.json() == first

    def test_false_reopens(self, client, account):
        task = create_task(client, account)
        path = f"{task_path(account, task['id'])}/complete"
        done = client.patch(path, headers=account.headers).json()
        response = client.patch(path, json={"completed": False}, headers=account.headers)
        assert response.status_code == 200
        body = response.json()
        assert body["completed"] is False
        assert body["completed_at"] is None
        assert body["updated_at"] > done["updated_at"]
        assert read(client, account, task["id"]) == body

    def test_reopening_an_open_task_changes_nothing(self, client, account):
        task = create_task(client, account)
        response = client.patch(
            f"{task_path(account, task['id'])}/complete", json={"completed": False}, headers=account.headers
        )
        assert response.status_code == 200
        assert response.json() == task

    def test_done_again_after_reopening_gets_a_new_stamp(self, client, account):
        task = create_task(client, account)
        path = f"{task_path(account, task['id'])}/complete"
        first = client.patch(path, headers=account.headers).json()
        client.patch(path, json={"completed": False}, headers=account.headers)
        again = client.patch(path, headers=account.headers).json()
        assert again["completed"] is True
        assert again["completed_at"] > first["completed_at"]

    @pytest.mark.parametrize(
        ("body", "pointer"),
        [
            ({"completed": "yes"}, "/completed"),
            ({"completed": None}, "/completed"),
            ({"completed": 1}, "/completed"),
            ({"completed": True, "title": "x"}, "/title"),
            ({"completed_at": "2026-01-01T00:00:00Z"}, "/completed_at"),
            ([], ""),
        ],
    )
    def test_invalid_body(self, client, account, body, pointer):
        task = create_task(client, account)
        response = client.patch(f"{task_path(account, task['id'])}/complete", json=body, headers=account.headers)
        assert pointer in pointers(assert_problem(response, 400, VALIDATION))
        assert read(client, account, task["id"]) == task

    def test_unknown_task_is_404(self, client, account):
        response = client.patch(f"{task_path(account, str(uuid.uuid4()))}/complete", headers=account.headers)
        assert_problem(response, 404, NOT_FOUND)

    def test_non_uuid_task_id_is_400(self, client, account):
        response = client.patch(f"{task_path(account, 'xyz')}/complete", headers=account.headers)
        assert ("task_id", "path") in parameters(assert_problem(response, 400, VALIDATION))


# --------------------------------------------------------------------------------------------
# Delete
# --------------------------------------------------------------------------------------------


class TestDelete:
    def test_deletes_for_good(self, client, account):
        task = create_task(client, account)
        kept = create_task(client, account)
        path = task_path(account, task["id"])
        response = client.delete(path, headers=account.headers)
        assert response.status_code == 204
        assert response.content == b""
        assert_problem(client.get(path, headers=account.headers), 404, NOT_FOUND)
        assert_problem(client.delete(path, headers=account.headers), 404, NOT_FOUND)
        assert_problem(client.put(path, json={"title": "t"}, headers=account.headers), 404, NOT_FOUND)
        assert_problem(client.patch(f"{path}/complete", headers=account.headers), 404, NOT_FOUND)
        assert [item["id"] for item in list_page(client, account)["items"]] == [kept["id"]]
        assert read(client, account, kept["id"]) == kept

    def test_unknown_task_is_404(self, client, account):
        assert_problem(client.delete(task_path(account, str(uuid.uuid4())), headers=account.headers), 404, NOT_FOUND)

    def test_non_uuid_task_id_is_400(self, client, account):
        response = client.delete(task_path(account, "1"), headers=account.headers)
        assert ("task_id", "path") in parameters(assert_problem(response, 400, VALIDATION))


# --------------------------------------------------------------------------------------------
# Isolation between users
# --------------------------------------------------------------------------------------------


class TestIsolation:
    @pytest.fixture
    def task(self, client, account) -> dict[str, Any]:
        return create_task(client, account, description="private", priority="low", due_at="2026-12-01T17:00:00Z")

    @pytest.mark.parametrize("via", ["own_path", "owner_path"])
    def test_other_user_cannot_touch_the_task(self, client, account, other_account, task, via):
        base = other_account.tasks_path if via == "own_path" else account.tasks_path
        path = f"{base}/{task['id']}"
        headers = other_account.headers
        assert_problem(client.get(path, headers=headers), 404, NOT_FOUND)
        assert_problem(client.put(path, json={"title": "hijacked", "completed": True}, headers=headers), 404, NOT_FOUND)
        assert_problem(client.patch(f"{path}/complete", headers=headers), 404, NOT_FOUND)
        assert_problem(client.patch(f"{path}/complete", json={"completed": True}, headers=headers), 404, NOT_FOUND)
        assert_problem(client.delete(path, headers=headers), 404, NOT_FOUND)
        # Nothing changed: the owner still reads the same task.
        assert read(client, account, task["id"]) == task

    def test_other_user_cannot_list_or_create_under_owner_path(self, client, account, other_account, task):
        assert_problem(client.get(account.tasks_path, headers=other_account.headers), 404, NOT_FOUND)
        response = client.post(account.tasks_path, json={"title": "planted"}, headers=other_account.headers)
        assert_problem(response, 404, NOT_FOUND)
        assert [item["id"] for item in list_page(client, account)["items"]] == [task["id"]]
        assert list_page(client, other_account)["items"] == []

    def test_task_never_appears_in_another_users_list(self, client, account, other_account, task):
        mine = create_task(client, other_account)
        assert [item["id"] for item in list_all(client, other_account)] == [mine["id"]]
        assert [item["id"] for item in list_all(client, account, completed="false")] == [task["id"]]
        assert list_all(client, other_account, completed="true") == []

    def test_unknown_user_id_is_404(self, client, account, task):
        path = f"/api/v1/users/{uuid.uuid4()}/tasks"
        assert_problem(client.get(path, headers=account.headers), 404, NOT_FOUND)
        assert_problem(client.get(f"{path}/{task['id']}", headers=account.headers), 404, NOT_FOUND)

    def test_refused_answers_look_like_unknown_ids(self, client, account, other_account, task):
        foreign = client.get(f"{other_account.tasks_path}/{task['id']}", headers=other_account.headers).json()
        unknown = client.get(f"{other_account.tasks_path}/{uuid.uuid4()}", headers=other_account.headers).json()
        assert (foreign["type"], foreign["title"], foreign["detail"]) == (
            unknown["type"],
            unknown["title"],
            unknown["detail"],
        )

    def test_cursor_of_one_user_does_not_reveal_another_users_tasks(self, client, account, other_account):
        for _ in range(3):
            create_task(client, account)
        cursor = list_page(client, account, limit=1)["next_cursor"]
        assert cursor
        assert list_page(client, other_account, cursor=cursor)["items"] == []


# --------------------------------------------------------------------------------------------
# List and pagination
# --------------------------------------------------------------------------------------------


class TestList:
    def test_empty_list(self, client, account):
        assert list_page(client, account) == {"items": [], "next_cursor": None}

    def test_default_limit_is_20(self, client, account):
        created = [create_task(client, account)["id"] for _ in range(21)]
        page = list_page(client, account)
        assert len(page["items"]) == 20
        assert page["next_cursor"]
        rest = list_page(client, account, cursor=page["next_cursor"])
        assert len(rest["items"]) == 1 and rest["next_cursor"] is None
        assert {item["id"] for item in page["items"] + rest["items"]} == set(created)

    def test_pages_through_newest_first_without_duplicates(self, client, account):
        created = [create_task(client, account) for _ in range(7)]
        pages = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 3}
            if cursor:
                params["cursor"] = cursor
            page = list_page(client, account, **params)
            pages.append(page)
            cursor = page["next_cursor"]
            if cursor is None:
                break
            assert len(pages) < 5
        assert [len(page["items"]) for page in pages] == [3, 3, 1]
        assert [page["next_cursor"] is None for page in pages] == [False, False, True]
        items = [item for page in pages for item in page["items"]]
        ids = [item["id"] for item in items]
        assert len(ids) == len(set(ids)) == 7
        assert set(ids) == {task["id"] for task in created}
        assert newest_first(items)
        created_at = [item["created_at"] for item in items]
        assert created_at == sorted(created_at, reverse=True)
        # Newest first also means the last task created is on top and the first at the bottom.
        assert ids[0] == created[-1]["id"]
        assert ids[-1] == created[0]["id"]
        # The items are the full representations.
        by_id = {task["id"]: task for task in created}
        assert all(item == by_id[item["id"]] for item in items)

    @pytest.mark.parametrize("microsecond", [0, 123456])
    def test_tasks_created_at_the_same_instant_page_by_id(self, client, account, monkeypatch, microsecond):
        """The keyset is (created_at, id): ties on created_at must neither repeat nor skip tasks.
        The service's clock is frozen while creating, so every task gets the same created_at."""
        fixed = datetime(2026, 11, 22, 10, 0, 0, microsecond, tzinfo=UTC)

        with frozen_clock(monkeypatch, fixed):
            created = [create_task(client, account)["id"] for _ in range(7)]
        items = list_all(client, account, limit=3)
        assert {item["created_at"] for item in items} == {timestamp(fixed)}
        assert [item["id"] for item in items] == sorted(created, reverse=True)

    def test_exact_multiple_of_limit_ends_with_null_cursor(self, client, account):
        for _ in range(4):
            create_task(client, account)
        first = list_page(client, account, limit=2)
        second = list_page(client, account, limit=2, cursor=first["next_cursor"])
        assert len(second["items"]) == 2
        if second["next_cursor"] is not None:  # a lookahead design must not invent items
            assert list_page(client, account, limit=2, cursor=second["next_cursor"])["items"] == []
        assert list_page(client, account, limit=4)["next_cursor"] is None

    def test_limit_bounds(self, client, account):
        for _ in range(3):
            create_task(client, account)
        assert len(list_page(client, account, limit=1)["items"]) == 1
        page = list_page(client, account, limit=100)
        assert len(page["items"]) == 3 and page["next_cursor"] is None

    def test_task_created_while_paging_is_not_on_later_pages(self, client, account):
        created = [create_task(client, account)["id"] for _ in range(7)]
        first = list_page(client, account, limit=3)
        late = create_task(client, account)
        cursor = first["next_cursor"]
        items = list(first["items"])
        while cursor:
            page = list_page(client, account, limit=3, cursor=cursor)
            items += page["items"]
            cursor = page["next_cursor"]
        ids = [item["id"] for item in items]
        assert late["id"] not in ids
        assert len(ids) == len(set(ids))
        assert set(ids) == set(created)  # nothing skipped
        assert newest_first(items)
        # A fresh listing starts with the new task.
        assert list_page(client, account, limit=1)["items"][0]["id"] == late["id"]

    def test_deleting_while_paging_skips_nothing_else(self, client, account):
        created = [create_task(client, account)["id"] for _ in range(6)]
        first = list_page(client, account, limit=3)
        # Delete the last task of the first page: the cursor still points at its position.
        boundary = first["items"][-1]["id"]
        assert client.delete(task_path(account, boundary), headers=account.headers).status_code == 204
        second = list_page(client, account, limit=3, cursor=first["next_cursor"])
        ids = [item["id"] for item in first["items"] + second["items"]]
        assert set(ids) == set(created)
        assert second["next_cursor"] is None

    def test_completed_filter(self, client, account):
        tasks = [create_task(client, account) for _ in range(5)]
        done = {tasks[0]["id"], tasks[2]["id"], tasks[4]["id"]}
        for task_id in done:
            client.patch(f"{task_path(account, task_id)}/complete", headers=account.headers)
        only_done = list_page(client, account, completed="true")
        only_open = list_page(client, account, completed="false")
        assert {item["id"] for item in only_done["items"]} == done
        assert all(item["completed"] for item in only_done["items"])
        assert {item["id"] for item in only_open["items"]} == {tasks[1]["id"], tasks[3]["id"]}
        assert not any(item["completed"] for item in only_open["items"])
        assert len(list_page(client, account)["items"]) == 5
        assert newest_first(only_done["items"]) and newest_first(only_open["items"])

    def test_completed_filter_with_paging(self, client, account):
        tasks = [create_task(client, account) for _ in range(9)]
        done_ids = [task["id"] for index, task in enumerate(tasks) if index % 3 != 0]  # 6 done, 3 open
        for task_id in done_ids:
            client.patch(f"{task_path(account, task_id)}/complete", headers=account.headers)
        first = list_page(client, account, completed="true", limit=4)
        assert len(first["items"]) == 4 and first["next_cursor"]
        second = list_page(client, account, completed="true", limit=4, cursor=first["next_cursor"])
        assert len(second["items"]) == 2 and second["next_cursor"] is None
        items = first["items"] + second["items"]
        assert [item["id"] for item in items] == list(reversed(done_ids))
        assert all(item["completed"] for item in items)

        open_items = list_all(client, account, completed="false", limit=2)
        assert [item["id"] for item in open_items] == [tasks[6]["id"], tasks[3]["id"], tasks[0]["id"]]

    def test_completed_filter_accepts_json_booleans_only(self, client, account):
        problem = assert_problem(
            client.get(account.tasks_path, params={"completed": "maybe"}, headers=account.headers), 400, VALIDATION
        )
        assert ("completed", "query") in parameters(problem)


class TestListValidation:
    @pytest.mark.parametrize("limit", ["0", "101", "-1", "abc", "2.5"])
    def test_limit_out_of_range_or_not_an_integer(self, client, account, limit):
        response = client.get(account.tasks_path, params={"limit": limit}, headers=account.headers)
        problem = assert_problem(response, 400, VALIDATION)
        assert ("limit", "query") in parameters(problem)

    @pytest.mark.parametrize("name", ["page", "offset", "sort", "owner_id"])
    def test_unknown_query_parameter(self, client, account, name):
        response = client.get(account.tasks_path, params={name: "1"}, headers=account.headers)
        problem = assert_problem(response, 400, VALIDATION)
        entries = [e for e in problem["errors"] if e.get("parameter") == name]
        assert entries and entries[0]["in"] == "query"

    @pytest.mark.parametrize(
        "cursor",
        [
            "notacursor",
            "AAAA",
            make_cursor({"c": "2026-01-01T00:00:00", "i": str(uuid.uuid4())}),  # naive timestamp
            make_cursor({"c": "yesterday", "i": str(uuid.uuid4())}),
            make_cursor({"c": "2026-01-01T00:00:00+00:00", "i": "not-a-uuid"}),
            make_cursor({"c": "2026-01-01T00:00:00+00:00"}),
            make_cursor({"i": str(uuid.uuid4())}),
            make_cursor(["2026-01-01T00:00:00+00:00", str(uuid.uuid4())]),
            make_cursor("just a string"),
            make_cursor(None),
            make_cursor({"c": "0001-01-01T00:00:00+01:00", "i": str(uuid.uuid4())}),  # overflows in UTC
        ],
    )
    def test_invalid_cursor_names_the_parameter(self, client, account, cursor):
        response = client.get(account.tasks_path, params={"cursor": cursor}, headers=account.headers)
        problem = assert_problem(response, 400, VALIDATION)
        assert ("cursor", "query") in parameters(problem)

    @pytest.mark.parametrize(
        "position",
        [
            {"c": "2026-01-01T00:00:00+00:00", "i": 5},
            {"c": "2026-01-01T00:00:00+00:00", "i": ["x"]},
            {"c": "2026-01-01T00:00:00+00:00", "i": None},
            {"c": 5, "i": str(uuid.uuid4())},
        ],
    )
    def test_well_encoded_cursor_with_wrong_types_is_400(self, client, account, position):
        response = client.get(account.tasks_path, params={"cursor": make_cursor(position)}, headers=account.headers)
        problem = assert_problem(response, 400, VALIDATION)
        assert ("cursor", "query") in parameters(problem)

    @pytest.mark.parametrize("cursor", ["has space", "a+b/c=", "x" * 513])
    def test_cursor_outside_the_contract_pattern(self, client, account, cursor):
        response = client.get(account.tasks_path, params={"cursor": cursor}, headers=account.headers)
        problem = assert_problem(response, 400, VALIDATION)
        assert ("cursor", "query") in parameters(problem)

    def test_empty_cursor_is_refused(self, client, account):
        response = client.get(account.tasks_path, params={"cursor": ""}, headers=account.headers)
        assert ("cursor", "query") in parameters(assert_problem(response, 400, VALIDATION))


# --------------------------------------------------------------------------------------------
# Authentication
# --------------------------------------------------------------------------------------------


OPERATIONS = [
    ("GET", "", None),
    ("POST", "", {"title": "t"}),
    ("GET", "/{task_id}", None),
    ("PUT", "/{task_id}", {"title": "t"}),
    ("DELETE", "/{task_id}", None),
    ("PATCH", "/{task_id}/complete", None),
    ("PATCH", "/{task_id}/complete", {"completed": True}),
]


class TestAuthentication:
    @pytest.fixture
    def task(self, client, account) -> dict[str, Any]:
        return create_task(client, account)

    @pytest.mark.parametrize(("method", "suffix", "body"), OPERATIONS)
    def test_missing_token_is_401(self, client, account, task, method, suffix, body):
        path = account.tasks_path + suffix.format(task_id=task["id"])
        kwargs: dict[str, Any] = {"json": body} if body is not None else {}
        response = client.request(method, path, **kwargs)
        assert_problem(response, 401, UNAUTHORIZED)
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert read(client, account, task["id"]) == task
        assert len(list_page(client, account)["items"]) == 1

    @pytest.mark.parametrize(
        "authorization", ["Bearer not.a.jwt", "Bearer ", "Basic dXNlcjpwYXNz", "bearer-token-without-scheme"]
    )
    @pytest.mark.parametrize(("method", "suffix", "body"), OPERATIONS[:4])
    def test_bad_token_is_401(self, client, account, task, method, suffix, body, authorization):
        path = account.tasks_path + suffix.format(task_id=task["id"])
        kwargs: dict[str, Any] = {"json": body} if body is not None else {}
        response = client.request(method, path, headers={"Authorization": authorization}, **kwargs)
        assert_problem(response, 401, UNAUTHORIZED)
        assert read(client, account, task["id"]) == task

    def test_token_of_a_logged_out_session_is_401(self, client, account, task):
        assert client.post("/api/v1/auth/logout", headers=account.headers).status_code == 204
        assert_problem(client.get(account.tasks_path, headers=account.headers), 401, UNAUTHORIZED)
        assert_problem(client.get(task_path(account, task["id"]), headers=account.headers), 401, UNAUTHORIZED)
