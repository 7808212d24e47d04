"""Reminders, recurrence and notifications over HTTP, through the `client` fixture (every answer
checked against the contract): the owner sets, lists and deletes reminders; bad input is a
problem and changes nothing; a fired in-app reminder is a notification the owner lists, reads
and reads all; the data export holds both, and deleting the account deletes both."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from persistence.unit_of_work import UnitOfWork
from services import reminders
from services.clock import FrozenClock
from tests.helpers import NOT_FOUND, VALIDATION, assert_problem, create_task, register_and_login, session_factory

NOTIFICATIONS = "/api/v1/users/me/notifications"
NOT_SCHEDULABLE = "/problems/reminder-not-schedulable"
UNSUPPORTED = "/problems/unsupported-recurrence"


def soon(minutes: float = 60) -> str:
    return (datetime.now(UTC) + timedelta(minutes=minutes)).isoformat()


def reminders_path(account, task_id: str) -> str:
    return f"{account.tasks_path}/{task_id}/reminders"


def fire_now(app, reminder_id: str, *, minutes_ahead: float = 120) -> bool:
    """Fire a reminder as the worker would, with a clock `minutes_ahead` in the future."""
    clock = FrozenClock(datetime.now(UTC) + timedelta(minutes=minutes_ahead))
    with UnitOfWork(session_factory(app)) as uow:
        return reminders.fire(uow=uow, clock=clock, engine=None, reminder_id=uuid.UUID(reminder_id))


def test_the_owner_sets_lists_and_deletes_reminders(client, account, other_account):
    task = create_task(client, account, due_at=soon(120))
    path = reminders_path(account, task["id"])
    created = client.post(
        path, json={"minutes_before_due": 30, "channels": ["in_app", "email"]}, headers=account.headers
    )
    assert created.status_code == 201, created.text
    reminder = created.json()
    assert created.headers["Location"] == f"{path}/{reminder['id']}"
    assert (reminder["minutes_before_due"], reminder["channels"], reminder["status"], reminder["fired_at"]) == (
        30,
        ["in_app", "email"],
        "pending",
        None,
    )
    due = datetime.fromisoformat(task["due_at"].replace("Z", "+00:00"))
    assert datetime.fromisoformat(reminder["remind_at"].replace("Z", "+00:00")) == due - timedelta(minutes=30)
    fixed = client.post(path, json={"remind_at": soon(10)}, headers=account.headers).json()
    assert fixed["channels"] == ["in_app"]

    first = client.get(path, headers=account.headers, params={"limit": 1})
    assert first.status_code == 200
    second = client.get(path, headers=account.headers, params={"limit": 1, "cursor": first.json()["next_cursor"]})
    assert [item["id"] for item in first.json()["items"] + second.json()["items"]] == [fixed["id"], reminder["id"]]
    assert second.json()["next_cursor"] is None

    other_path = reminders_path(other_account, task["id"])
    assert_problem(client.get(path, headers=other_account.headers), 404, NOT_FOUND)
    assert_problem(client.get(other_path, headers=other_account.headers), 404, NOT_FOUND)
    assert_problem(client.post(other_path, json={"remind_at": soon()}, headers=other_account.headers), 404)

    assert client.delete(f"{path}/{reminder['id']}", headers=account.headers).status_code == 204
    assert_problem(client.delete(f"{path}/{reminder['id']}", headers=account.headers), 404, NOT_FOUND)
    assert [item["id"] for item in client.get(path, headers=account.headers).json()["items"]] == [fixed["id"]]


def test_bad_reminders_are_problems_and_store_nothing(client, account):
    undated = create_task(client, account)
    path = reminders_path(account, undated["id"])
    cases = [
        ({"minutes_before_due": 5}, 422, NOT_SCHEDULABLE),
        ({"remind_at": soon(-1)}, 422, NOT_SCHEDULABLE),
        ({"remind_at": soon(), "minutes_before_due": 5}, 400, VALIDATION),
        ({}, 400, VALIDATION),
        ({"remind_at": soon(), "channels": ["sms"]}, 400, VALIDATION),
        ({"remind_at": soon(), "channels": []}, 400, VALIDATION),
        ({"remind_at": soon(), "channels": ["email", "email"]}, 400, VALIDATION),
        ({"minutes_before_due": -1}, 400, VALIDATION),
    ]
    for body, status, problem in cases:
        assert_problem(client.post(path, json=body, headers=account.headers), status, problem)
    assert client.get(path, headers=account.headers).json()["items"] == []


def test_a_recurring_task_over_http(client, account):
    refused = client.post(
        account.tasks_path,
        json={"title": "standup", "due_at": soon(), "recurrence": "FREQ=DAILY;BYHOUR=9"},
        headers=account.headers,
    )
    problem = assert_problem(refused, 400, UNSUPPORTED)
    assert "BYHOUR" in problem["detail"]
    assert problem["errors"][0]["pointer"] == "/recurrence"
    assert client.get(account.tasks_path, headers=account.headers).json()["items"] == []

    task = create_task(
        client, account, title="standup", due_at="2027-01-04T09:00:00Z", recurrence="FREQ=WEEKLY;BYDAY=MO,WE"
    )
    assert task["recurrence"] == "FREQ=WEEKLY;BYDAY=MO,WE"
    done = client.patch(f"{account.tasks_path}/{task['id']}/complete", headers=account.headers)
    assert done.status_code == 200, done.text
    listed = client.get(account.tasks_path, headers=account.headers, params={"completed": "false"}).json()["items"]
    assert [(item["title"], item["due_at"], item["recurrence"]) for item in listed] == [
        ("standup", "2027-01-06T09:00:00.000000Z", "FREQ=WEEKLY;BYDAY=MO,WE")
    ]


def test_fired_reminders_are_notifications_the_owner_reads(app, client, account, other_account):
    task = create_task(client, account, title="call the plumber")
    path = reminders_path(account, task["id"])
    made = [client.post(path, json={"remind_at": soon(1)}, headers=account.headers).json() for _ in range(3)]
    assert [fire_now(app, reminder["id"]) for reminder in made] == [True, True, True]
    assert [fire_now(app, reminder["id"]) for reminder in made] == [False, False, False]

    unread = client.get(NOTIFICATIONS, headers=account.headers, params={"unread": "true"})
    assert unread.status_code == 200, unread.text
    items = unread.json()["items"]
    assert sorted(item["reminder_id"] for item in items) == sorted(reminder["id"] for reminder in made)
    assert {(item["type"], item["title"], item["task_id"], item["read_at"]) for item in items} == {
        ("task_reminder", "Reminder: call the plumber", task["id"], None)
    }
    assert client.get(NOTIFICATIONS, headers=other_account.headers).json()["items"] == []
    assert [r["status"] for r in client.get(path, headers=account.headers).json()["items"]] == ["fired"] * 3

    one = items[0]["id"]
    assert_problem(client.post(f"{NOTIFICATIONS}/{one}/read", headers=other_account.headers), 404, NOT_FOUND)
    read = client.post(f"{NOTIFICATIONS}/{one}/read", headers=account.headers)
    assert read.status_code == 200, read.text
    read_at = read.json()["read_at"]
    assert read_at is not None
    assert client.post(f"{NOTIFICATIONS}/{one}/read", headers=account.headers).json()["read_at"] == read_at
    assert len(client.get(NOTIFICATIONS, headers=account.headers, params={"unread": "true"}).json()["items"]) == 2
    assert [
        item["id"]
        for item in client.get(NOTIFICATIONS, headers=account.headers, params={"unread": "false"}).json()["items"]
    ] == [one]

    page = client.get(NOTIFICATIONS, headers=account.headers, params={"limit": 2})
    rest = client.get(NOTIFICATIONS, headers=account.headers, params={"limit": 2, "cursor": page.json()["next_cursor"]})
    assert len(page.json()["items"]) + len(rest.json()["items"]) == 3
    assert_problem(client.get(NOTIFICATIONS, headers=account.headers, params={"cursor": "bm9wZQ"}), 400, VALIDATION)

    assert client.post(f"{NOTIFICATIONS}/read-all", headers=account.headers).json() == {"marked": 2}
    assert client.post(f"{NOTIFICATIONS}/read-all", headers=account.headers).json() == {"marked": 0}
    assert client.get(NOTIFICATIONS, headers=account.headers, params={"unread": "true"}).json()["items"] == []

    assert client.delete(f"{account.tasks_path}/{task['id']}", headers=account.headers).status_code == 204
    kept = client.get(NOTIFICATIONS, headers=account.headers).json()["items"]
    assert {(item["task_id"], item["reminder_id"]) for item in kept} == {(None, None)}


def test_the_export_holds_reminders_and_notifications_and_deleting_the_account_deletes_them(app, client, database):
    account = register_and_login(client)
    task = create_task(client, account)
    path = reminders_path(account, task["id"])
    fired = client.post(path, json={"remind_at": soon(1)}, headers=account.headers).json()
    pending = client.post(path, json={"remind_at": soon(600), "channels": ["email"]}, headers=account.headers).json()
    assert fire_now(app, fired["id"], minutes_ahead=2)

    export = client.get("/api/v1/users/me/export", headers=account.headers)
    assert export.status_code == 200, export.text
    body = export.json()
    assert sorted(r["id"] for r in body["reminders"]) == sorted([fired["id"], pending["id"]])
    assert [n["reminder_id"] for n in body["notifications"]] == [fired["id"]]

    assert client.delete("/api/v1/users/me", headers=account.headers).status_code == 204
    with UnitOfWork(session_factory(app)) as uow:
        owner = uuid.UUID(account.id)
        assert (uow.reminders.all_of_owner(owner), uow.notifications.all_of_owner(owner)) == ([], [])


def test_a_reminder_retried_with_its_idempotency_key_is_set_once(client, account):
    task = create_task(client, account)
    path = reminders_path(account, task["id"])
    body = {"remind_at": soon(30), "channels": ["email"]}
    headers = {**account.headers, "Idempotency-Key": f"reminder-{uuid.uuid4()}"}
    first = client.post(path, json=body, headers=headers)
    again = client.post(path, json=body, headers=headers)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert [item["id"] for item in client.get(path, headers=account.headers).json()["items"]] == [first.json()["id"]]
    other = client.post(path, json={**body, "channels": ["in_app"]}, headers=headers)
    assert_problem(other, 422, "/problems/idempotency-key-reused")
