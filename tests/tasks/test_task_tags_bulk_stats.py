"""Tags (normalised on every write, listed with counts), bulk changes (207 Multi-Status, one
result per operation, each applied or rolled back on its own) and task statistics.

Every test registers its own account, so the counts are exact.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update

from persistence.tasks.models import Task
from tests.helpers import (
    NOT_FOUND,
    PRECONDITION_FAILED,
    VALIDATION,
    assert_problem,
    collect_pages,
    create_task,
    instant,
    session_factory,
)
from tests.tasks.conftest import (
    bulk,
    bulk_create,
    ids,
    list_all,
    list_page,
    parameters,
    pointers,
    read,
    rfc3339,
    task_path,
)

UNREPRESENTABLE = "0001-01-01T00:00:00+01:00"
"""A valid RFC 3339 date-time that is before the year 1 in UTC: Python cannot represent it."""


def tags_of(client, account, **params: Any) -> dict[str, Any]:
    response = client.get(f"/api/v1/users/{account.id}/tags", headers=account.headers, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def all_tags(client, account, **params: Any) -> list[tuple[str, int]]:
    """Every (tag, task_count) of `account`, following the cursors."""
    items = collect_pages(client, f"/api/v1/users/{account.id}/tags", headers=account.headers, params=params)
    return [(item["tag"], item["task_count"]) for item in items]


# --------------------------------------------------------------------------------------------
# Tags on tasks
# --------------------------------------------------------------------------------------------


class TestTaskTags:
    def test_create_normalises_tags(self, client, account):
        task = create_task(client, account, tags=["  Work  ", "work", "Deep   Focus", "HOME", "home ", "zz"])
        assert task["tags"] == ["deep focus", "home", "work", "zz"]
        assert read(client, account, task["id"])["tags"] == task["tags"]

    def test_non_ascii_tags_are_lower_cased(self, client, account):
        task = create_task(client, account, tags=["ÄRGER  Über", "ärger über"])
        assert task["tags"] == ["ärger über"]
        assert read(client, account, task["id"])["tags"] == ["ärger über"]

    def test_bulk_create_and_replace_normalise_tags(self, client, account):
        (task,) = bulk_create(client, account, [{"title": "t", "tags": [" B ", "a", "A"]}])
        assert task["tags"] == ["a", "b"]
        response = bulk(
            client, account, [{"op": "replace", "id": task["id"], "task": {"title": "t", "tags": ["C  D"]}}]
        )
        assert response.json()["results"][0]["task"]["tags"] == ["c d"]
        assert read(client, account, task["id"])["tags"] == ["c d"]

    def test_replace_normalises_tags(self, client, account):
        task = create_task(client, account, tags=["one"])
        response = client.put(
            task_path(account, task["id"]),
            json={"title": task["title"], "tags": ["Zeta", "  alpha   beta ", "ZETA", "zeta"]},
            headers=account.headers,
        )
        assert response.status_code == 200, response.text
        assert response.json()["tags"] == ["alpha beta", "zeta"]
        assert read(client, account, task["id"])["tags"] == ["alpha beta", "zeta"]

    def test_no_tags_is_an_empty_list(self, client, account):
        assert create_task(client, account)["tags"] == []
        assert create_task(client, account, tags=[])["tags"] == []

    def test_twenty_tags_are_accepted(self, client, account):
        tags = [f"Tag {index:02d}" for index in range(19, -1, -1)]
        task = create_task(client, account, tags=tags)
        assert task["tags"] == sorted(tag.lower() for tag in tags)
        assert len(task["tags"]) == 20

    def test_twenty_one_tags_are_refused_by_the_contract(self, client, account):
        body = {"title": "Too many", "tags": [f"tag{index}" for index in range(21)]}
        problem = assert_problem(client.post(account.tasks_path, json=body, headers=account.headers), 400, VALIDATION)
        assert "/tags" in pointers(problem)
        assert list_page(client, account)["items"] == []

    def test_twenty_one_tags_on_replace_change_nothing(self, client, account):
        task = create_task(client, account, tags=["keep"])
        body = {"title": "Too many", "tags": [f"tag{index}" for index in range(21)]}
        response = client.put(task_path(account, task["id"]), json=body, headers=account.headers)
        assert_problem(response, 400, VALIDATION)
        assert read(client, account, task["id"]) == task

    def test_tag_of_forty_characters_is_accepted_and_forty_one_refused(self, client, account):
        assert create_task(client, account, tags=["x" * 40])["tags"] == ["x" * 40]
        body = {"title": "Long tag", "tags": ["ok", "x" * 41]}
        problem = assert_problem(client.post(account.tasks_path, json=body, headers=account.headers), 400, VALIDATION)
        assert any(pointer and pointer.startswith("/tags") for pointer in pointers(problem))

    def test_tag_over_forty_characters_once_lower_cased_is_refused(self, client, account):
        # "İ" lower-cases to two characters: 40 in the request, 80 once normalised.
        body = {"title": "Grows", "tags": ["\u0130" * 40]}
        problem = assert_problem(client.post(account.tasks_path, json=body, headers=account.headers), 400, VALIDATION)
        assert "/tags" in pointers(problem)
        assert list_page(client, account)["items"] == []

    @pytest.mark.parametrize("tag", ["", "   ", "a\tb", "bad\nline"])
    def test_empty_or_control_character_tag_is_refused(self, client, account, tag):
        body = {"title": "Blank tag", "tags": [tag]}
        assert_problem(client.post(account.tasks_path, json=body, headers=account.headers), 400, VALIDATION)

    def test_put_without_tags_clears_them(self, client, account):
        task = create_task(client, account, tags=["a", "b"])
        response = client.put(task_path(account, task["id"]), json={"title": task["title"]}, headers=account.headers)
        assert response.status_code == 200
        assert response.json()["tags"] == []
        assert read(client, account, task["id"])["tags"] == []
        assert all_tags(client, account) == []

    def test_complete_keeps_tags(self, client, account):
        task = create_task(client, account, tags=["Keep", "these"])
        done = client.patch(f"{task_path(account, task['id'])}/complete", headers=account.headers).json()
        assert done["tags"] == ["keep", "these"] and done["completed"] is True
        reopened = client.patch(
            f"{task_path(account, task['id'])}/complete", json={"completed": False}, headers=account.headers
        ).json()
        assert reopened["tags"] == ["keep", "these"]

    def test_tag_change_bumps_the_version(self, client, account):
        task = create_task(client, account, tags=["a"])
        assert task["version"] == 1
        body = {"title": task["title"], "tags": ["a", "b"]}
        response = client.put(task_path(account, task["id"]), json=body, headers=account.headers)
        assert response.json()["version"] == 2
        assert response.headers["etag"] == '"2"'
        body["tags"] = ["b"]
        response = client.put(task_path(account, task["id"]), json=body, headers=account.headers)
        assert response.json()["version"] == 3
        assert response.json()["tags"] == ["b"]

    def test_keeping_some_tags_while_changing_others(self, client, account):
        task = create_task(client, account, tags=["keep", "drop"])
        body = {"title": task["title"], "tags": ["KEEP", "new"]}
        response = client.put(task_path(account, task["id"]), json=body, headers=account.headers)
        assert response.status_code == 200, response.text
        assert response.json()["tags"] == ["keep", "new"]
        assert all_tags(client, account) == [("keep", 1), ("new", 1)]


# --------------------------------------------------------------------------------------------
# GET /users/{user_id}/tags
# --------------------------------------------------------------------------------------------


class TestTagList:
    def test_no_tags(self, client, account):
        create_task(client, account)
        assert tags_of(client, account) == {"items": [], "next_cursor": None}

    def test_alphabetical_with_counts_and_only_the_callers(self, client, account, other_account):
        first, _, third, _ = bulk_create(
            client,
            account,
            [
                {"title": "one", "tags": ["work", "home"]},
                {"title": "two", "tags": ["Work"]},
                {"title": "three", "tags": ["errands", "work"]},
                {"title": "four"},
            ],
        )
        create_task(client, other_account, tags=["secret", "work", "alpha"])
        page = tags_of(client, account)
        assert page == {
            "items": [
                {"tag": "errands", "task_count": 1},
                {"tag": "home", "task_count": 1},
                {"tag": "work", "task_count": 3},
            ],
            "next_cursor": None,
        }
        assert all_tags(client, other_account) == [("alpha", 1), ("secret", 1), ("work", 1)]

        # A deleted task's tags no longer count; a tag no task carries disappears.
        assert client.delete(task_path(account, first["id"]), headers=account.headers).status_code == 204
        assert all_tags(client, account) == [("errands", 1), ("work", 2)]
        client.put(task_path(account, third["id"]), json={"title": "three"}, headers=account.headers)
        assert all_tags(client, account) == [("work", 1)]
        assert all_tags(client, other_account) == [("alpha", 1), ("secret", 1), ("work", 1)]

    def test_pages_of_one(self, client, account):
        bulk_create(
            client,
            account,
            [{"title": "a", "tags": ["delta", "alpha"]}, {"title": "b", "tags": ["charlie", "alpha", "bravo"]}],
        )
        first = tags_of(client, account, limit=1)
        assert first["items"] == [{"tag": "alpha", "task_count": 2}]
        assert first["next_cursor"]
        assert all_tags(client, account, limit=1) == [("alpha", 2), ("bravo", 1), ("charlie", 1), ("delta", 1)]
        assert all_tags(client, account, limit=3) == all_tags(client, account, limit=100)

    def test_cursor_of_the_task_list_is_refused(self, client, account):
        bulk_create(client, account, [{"title": "a"}, {"title": "b"}])
        cursor = list_page(client, account, limit=1)["next_cursor"]
        response = client.get(f"/api/v1/users/{account.id}/tags", params={"cursor": cursor}, headers=account.headers)
        assert ("cursor", "query") in parameters(assert_problem(response, 400, VALIDATION))

    def test_another_users_tags_are_404(self, client, account, other_account):
        create_task(client, other_account, tags=["secret"])
        response = client.get(f"/api/v1/users/{other_account.id}/tags", headers=account.headers)
        assert_problem(response, 404, NOT_FOUND)


# --------------------------------------------------------------------------------------------
# POST /users/{user_id}/tasks/bulk
# --------------------------------------------------------------------------------------------


def statuses(response) -> list[int]:
    return [result["status"] for result in response.json()["results"]]


class TestBulk:
    def test_every_operation_in_order(self, client, account):
        x, y, z, w = bulk_create(
            client,
            account,
            [{"title": "x", "tags": ["old"], "priority": "low"}, {"title": "y"}, {"title": "z"}, {"title": "w"}],
        )
        assert statuses(bulk(client, account, [{"op": "complete", "id": z["id"]}])) == [200]
        response = bulk(
            client,
            account,
            [
                {"op": "create", "task": {"title": "New one", "tags": ["B", "a"], "priority": "high"}},
                {
                    "op": "replace",
                    "id": x["id"],
                    "task": {"title": "Renamed", "priority": "urgent"},
                    "if_match_version": 1,
                },
                {"op": "complete", "id": y["id"]},
                {"op": "complete", "id": z["id"], "completed": False, "if_match_version": 2},
                {"op": "delete", "id": w["id"], "if_match_version": 1},
            ],
        )
        assert response.status_code == 207
        results = response.json()["results"]
        assert [(r["index"], r["op"], r["status"]) for r in results] == [
            (0, "create", 201),
            (1, "replace", 200),
            (2, "complete", 200),
            (3, "complete", 200),
            (4, "delete", 204),
        ]
        assert not any("problem" in result for result in results)
        created = results[0]["task"]
        assert results[0]["id"] == created["id"]
        assert (created["title"], created["tags"], created["priority"], created["version"]) == (
            "New one",
            ["a", "b"],
            "high",
            1,
        )
        replaced = results[1]["task"]
        assert results[1]["id"] == x["id"]
        assert (replaced["title"], replaced["priority"], replaced["tags"], replaced["version"]) == (
            "Renamed",
            "urgent",
            [],
            2,
        )
        assert results[2]["task"]["completed"] is True and results[2]["task"]["completed_at"]
        assert results[2]["task"]["version"] == 2
        assert results[3]["task"]["completed"] is False and results[3]["task"]["completed_at"] is None
        assert results[3]["task"]["version"] == 3
        assert results[4]["id"] == w["id"] and "task" not in results[4]

        # Read back: every change was committed.
        assert read(client, account, created["id"]) == created
        assert read(client, account, x["id"]) == replaced
        assert read(client, account, y["id"]) == results[2]["task"]
        assert read(client, account, z["id"]) == results[3]["task"]
        assert_problem(client.get(task_path(account, w["id"]), headers=account.headers), 404, NOT_FOUND)

    def test_failures_are_per_item_and_the_rest_applies(self, client, account, other_account):
        x, y = bulk_create(client, account, [{"title": "x"}, {"title": "y"}])
        foreign = create_task(client, other_account, title="not yours")
        unknown = str(uuid.uuid4())
        response = bulk(
            client,
            account,
            [
                {"op": "complete", "id": unknown},
                {"op": "replace", "id": x["id"], "task": {"title": "Never"}, "if_match_version": 5},
                {"op": "create", "task": {"title": "Bad date", "due_at": UNREPRESENTABLE}},
                {"op": "create", "task": {"title": "Good"}},
                {"op": "delete", "id": foreign["id"]},
                {"op": "complete", "id": y["id"]},
                {"op": "delete", "id": y["id"], "if_match_version": 1},  # y is at version 2 now
                {"op": "replace", "id": foreign["id"], "task": {"title": "Stolen"}},
            ],
        )
        assert response.status_code == 207
        results = response.json()["results"]
        assert statuses(response) == [404, 412, 400, 201, 404, 200, 412, 404]
        assert [result["index"] for result in results] == list(range(8))
        expected_types = {404: NOT_FOUND, 412: PRECONDITION_FAILED, 400: VALIDATION}
        for result in results:
            if result["status"] >= 400:
                problem = result["problem"]
                assert problem["status"] == result["status"]
                assert problem["type"] == expected_types[result["status"]]
                assert problem["title"] and problem["detail"]
                assert "task" not in result
            else:
                assert "problem" not in result
        assert results[0]["id"] == unknown
        assert results[1]["id"] == x["id"]
        assert results[4]["id"] == foreign["id"]
        assert pointers(results[2]["problem"]) == ["/operations/2/task/due_at"]

        # The good operations applied; the failed ones left nothing behind.
        titles = sorted(item["title"] for item in list_all(client, account))
        assert titles == ["Good", "x", "y"]
        assert read(client, account, x["id"]) == x
        after_y = read(client, account, y["id"])
        assert after_y["completed"] is True and after_y["version"] == 2
        assert read(client, other_account, foreign["id"]) == foreign

    def test_failed_replace_leaves_no_trace(self, client, account):
        (task,) = bulk_create(
            client, account, [{"title": "Original", "description": "d", "priority": "low", "tags": ["keep"]}]
        )
        response = bulk(
            client,
            account,
            [
                {
                    "op": "replace",
                    "id": task["id"],
                    "task": {
                        "title": "Changed",
                        "description": "new",
                        "priority": "urgent",
                        "tags": ["gone"],
                        "due_at": UNREPRESENTABLE,
                    },
                },
                # A later operation on the same task flushes it: the failed one must not leak.
                {"op": "complete", "id": task["id"]},
            ],
        )
        assert statuses(response) == [400, 200]
        done = response.json()["results"][1]["task"]
        assert (done["title"], done["description"], done["priority"], done["tags"]) == (
            "Original",
            "d",
            "low",
            ["keep"],
        )
        assert done["version"] == 2 and done["completed"] is True
        assert read(client, account, task["id"]) == done
        assert tags_of(client, account)["items"] == [{"tag": "keep", "task_count": 1}]

    def test_failed_tags_leave_no_trace(self, client, account):
        (task,) = bulk_create(client, account, [{"title": "Original", "tags": ["keep"]}])
        operations = [
            {"op": "replace", "id": task["id"], "task": {"title": "Changed", "tags": ["\u0130" * 40]}},
            {"op": "create", "task": {"title": "Also bad", "tags": ["ok", "\u0130" * 40]}},
            {"op": "complete", "id": task["id"]},
        ]
        response = bulk(client, account, operations)
        assert statuses(response) == [400, 400, 200]
        done = response.json()["results"][2]["task"]
        assert (done["title"], done["tags"], done["version"]) == ("Original", ["keep"], 2)
        assert [item["title"] for item in list_all(client, account)] == ["Original"]

    def test_tag_problem_points_into_the_operation(self, client, account):
        response = bulk(client, account, [{"op": "create", "task": {"title": "Bad", "tags": ["\u0130" * 40]}}])
        assert statuses(response) == [400]
        assert pointers(response.json()["results"][0]["problem"]) == ["/operations/0/task/tags"]

    def test_operations_see_the_effects_of_earlier_ones(self, client, account):
        x, y = bulk_create(client, account, [{"title": "x"}, {"title": "y"}])
        response = bulk(
            client,
            account,
            [
                {"op": "replace", "id": x["id"], "task": {"title": "x2"}, "if_match_version": 1},
                {"op": "complete", "id": x["id"], "if_match_version": 2},
                {"op": "delete", "id": x["id"], "if_match_version": 3},
                {"op": "complete", "id": x["id"]},  # deleted just before
                {"op": "delete", "id": y["id"]},
                {"op": "delete", "id": y["id"]},
            ],
        )
        assert statuses(response) == [200, 200, 204, 404, 204, 404]
        assert list_page(client, account)["items"] == []

    def test_101_operations_are_refused(self, client, account):
        response = bulk(client, account, [{"op": "create", "task": {"title": f"t{i}"}} for i in range(101)])
        problem = assert_problem(response, 400, VALIDATION)
        assert "/operations" in pointers(problem)
        assert list_page(client, account)["items"] == []

    def test_100_operations_are_accepted(self, client, account):
        response = bulk(client, account, [{"op": "create", "task": {"title": f"t{i}"}} for i in range(100)])
        assert statuses(response) == [201] * 100
        assert len(list_page(client, account, limit=100)["items"]) == 100

    def test_no_operation_is_refused(self, client, account):
        assert_problem(bulk(client, account, []), 400, VALIDATION)

    @pytest.mark.parametrize(
        "bad",
        [
            {"op": "create"},
            {"op": "replace", "id": "TASK"},
            {"op": "replace", "task": {"title": "no id"}},
            {"op": "complete"},
            {"op": "delete"},
            {"op": "archive", "id": "TASK"},
            {"id": "TASK"},
            {"op": "delete", "id": "TASK", "extra": 1},
            {"op": "create", "task": {}},
            {"op": "complete", "id": "not-a-uuid"},
            {"op": "complete", "id": "TASK", "if_match_version": 0},
        ],
    )
    def test_malformed_operation_refuses_the_whole_request(self, client, account, bad):
        (task,) = bulk_create(client, account, [{"title": "existing"}])
        bad = {key: task["id"] if value == "TASK" else value for key, value in bad.items()}
        operations = [
            {"op": "create", "task": {"title": "First"}},
            {"op": "complete", "id": task["id"]},
            bad,
            {"op": "delete", "id": task["id"]},
        ]
        problem = assert_problem(bulk(client, account, operations), 400, VALIDATION)
        assert any(pointer and pointer.startswith("/operations") for pointer in pointers(problem)), problem
        assert ids(list_all(client, account)) == [task["id"]]
        assert read(client, account, task["id"]) == task

    def test_another_users_path_is_404(self, client, account, other_account):
        response = client.post(
            f"{other_account.tasks_path}/bulk",
            json={"operations": [{"op": "create", "task": {"title": "sneaky"}}]},
            headers=account.headers,
        )
        assert_problem(response, 404, NOT_FOUND)
        assert list_page(client, other_account)["items"] == []
        assert list_page(client, account)["items"] == []


# --------------------------------------------------------------------------------------------
# GET /users/{user_id}/tasks/stats
# --------------------------------------------------------------------------------------------


def stats_of(client, account) -> dict[str, Any]:
    response = client.get(f"{account.tasks_path}/stats", headers=account.headers)
    assert response.status_code == 200, response.text
    return response.json()


def set_completed_at(app, task_id: str, when: datetime) -> None:
    with session_factory(app).begin() as db:
        db.execute(update(Task).where(Task.id == uuid.UUID(task_id)).values(completed_at=when))


class TestStats:
    def test_no_tasks(self, client, account):
        before = datetime.now(UTC)
        stats = stats_of(client, account)
        computed_at = instant(stats.pop("computed_at"))
        assert before - timedelta(seconds=1) <= computed_at <= datetime.now(UTC) + timedelta(seconds=1)
        assert stats == {
            "total": 0,
            "completed": 0,
            "open": 0,
            "by_priority": {"low": 0, "medium": 0, "high": 0, "urgent": 0},
            "overdue": 0,
            "due_next_7_days": 0,
            "completed_last_7_days": 0,
            "completed_last_30_days": 0,
            "completion_rate": 0,
        }

    def test_known_set(self, client, app, account, other_account):
        now = datetime.now(UTC)

        def due(days: float) -> str:
            return rfc3339(now + timedelta(days=days))

        tasks = bulk_create(
            client,
            account,
            [
                {"title": "open, no due", "priority": "low"},  # 0
                {"title": "open, overdue", "priority": "medium", "due_at": due(-1)},  # 1
                {"title": "open, due in 3 days", "priority": "medium", "due_at": due(3)},  # 2
                {"title": "open, due in 10 days", "priority": "high", "due_at": due(10)},  # 3
                {"title": "done now, was due", "priority": "urgent", "due_at": due(-2)},  # 4
                {"title": "done 10 days ago, due soon", "priority": "high", "due_at": due(2)},  # 5
                {"title": "done 40 days ago", "priority": "low"},  # 6
                {"title": "open, due in 6.9 days", "priority": "medium", "due_at": due(6.9)},  # 7
                {"title": "reopened", "priority": "urgent", "due_at": due(-3)},  # 8
            ],
        )
        done = [tasks[i]["id"] for i in (4, 5, 6, 8)]
        assert statuses(bulk(client, account, [{"op": "complete", "id": task_id} for task_id in done])) == [200] * 4
        reopen = [{"op": "complete", "id": tasks[8]["id"], "completed": False}]
        assert statuses(bulk(client, account, reopen)) == [200]
        set_completed_at(app, tasks[5]["id"], now - timedelta(days=10))
        set_completed_at(app, tasks[6]["id"], now - timedelta(days=40))
        # Another user's tasks never count.
        bulk_create(client, other_account, [{"title": "theirs", "priority": "urgent", "due_at": due(-1)}] * 3)

        stats = stats_of(client, account)
        stats.pop("computed_at")
        assert stats == {
            "total": 9,
            "completed": 3,
            "open": 6,
            "by_priority": {"low": 2, "medium": 3, "high": 2, "urgent": 2},
            "overdue": 2,  # 1 and the reopened 8; not 4, which is done
            "due_next_7_days": 2,  # 2 and 7; not 5, which is done
            "completed_last_7_days": 1,
            "completed_last_30_days": 2,
            "completion_rate": pytest.approx(3 / 9, abs=1e-4),
        }
        assert stats_of(client, other_account)["overdue"] == 3

    def test_completion_rate(self, client, account):
        tasks = bulk_create(client, account, [{"title": f"t{i}"} for i in range(7)])
        assert statuses(bulk(client, account, [{"op": "complete", "id": t["id"]} for t in tasks[:3]])) == [200] * 3
        assert stats_of(client, account)["completion_rate"] == pytest.approx(3 / 7, abs=1e-4)
        assert statuses(bulk(client, account, [{"op": "complete", "id": t["id"]} for t in tasks[3:]])) == [200] * 4
        stats = stats_of(client, account)
        assert (stats["completed"], stats["open"], stats["completion_rate"]) == (7, 0, 1)
        assert (stats["completed_last_7_days"], stats["completed_last_30_days"]) == (7, 7)

    def test_deleting_and_reopening_update_the_stats(self, client, account):
        first, _ = bulk_create(client, account, [{"title": "a", "priority": "high"}, {"title": "b"}])
        client.patch(f"{task_path(account, first['id'])}/complete", headers=account.headers)
        assert stats_of(client, account)["completed_last_7_days"] == 1
        client.patch(f"{task_path(account, first['id'])}/complete", json={"completed": False}, headers=account.headers)
        stats = stats_of(client, account)
        assert (stats["completed"], stats["completed_last_7_days"], stats["completion_rate"]) == (0, 0, 0)
        client.delete(task_path(account, first["id"]), headers=account.headers)
        stats = stats_of(client, account)
        assert (stats["total"], stats["by_priority"]["high"], stats["by_priority"]["medium"]) == (1, 0, 1)

    def test_another_users_stats_are_404(self, client, account, other_account):
        response = client.get(f"{other_account.tasks_path}/stats", headers=account.headers)
        assert_problem(response, 404, NOT_FOUND)
