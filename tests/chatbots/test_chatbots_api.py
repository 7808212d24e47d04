"""The chatbot operations through the ASGI app (every answer checked against the contract by the
`client` fixture): create with Location and ETag, list (paginated; administrators see all and
filter by owner), get with If-None-Match, patch with If-Match and the status transitions, delete
as a job, another user's chatbot as 404, validation problems that change nothing, the cap, the
audit events and the export section."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select

from persistence.chatbots.models import Chatbot
from services import chatbots as chatbot_services
from services import jobs as job_services
from tests.helpers import (
    FORBIDDEN,
    NOT_FOUND,
    PRECONDITION_FAILED,
    VALIDATION,
    assert_problem,
    collect_pages,
    on_plan,
    register_and_login,
    run_job,
)

BASE = "/api/v1/chatbots"
STATUS_CONFLICT = "/problems/chatbot-status-conflict"
LIMIT_REACHED = "/problems/chatbot-limit-reached"


def create(client, account, **fields):
    response = client.post(BASE, json={"name": "Support assistant", **fields}, headers=account.headers)
    assert response.status_code == 201, response.text
    return response


def patch(client, account, chatbot_id, body, **headers):
    return client.patch(f"{BASE}/{chatbot_id}", json=body, headers={**account.headers, **headers})


def stored(database, chatbot_id) -> Chatbot | None:
    return database.read(lambda db: db.get(Chatbot, uuid.UUID(chatbot_id)))


def test_a_chatbot_is_created_as_a_draft_with_location_etag_and_defaults(client, account):
    response = create(
        client,
        account,
        instructions="Answer from the documentation only.",
        suggested_questions=["How do I start?"],
        allowed_origins=["https://Help.Example.com:443", "https://help.example.com", "https://app.example.com:8443"],
        min_score=0.25,
    )
    chatbot = response.json()
    assert response.headers["Location"] == f"{BASE}/{chatbot['id']}"
    assert response.headers["ETag"] == '"1"'
    assert chatbot["owner_id"] == account.id
    assert (chatbot["status"], chatbot["visibility"], chatbot["version"]) == ("draft", "private", 1)
    assert (chatbot["welcome_message"], chatbot["passages_per_answer"], chatbot["min_score"]) == (None, 5, 0.25)
    assert chatbot["allowed_origins"] == ["https://help.example.com", "https://app.example.com:8443"]
    assert chatbot["knowledge"] == {"sources": 0, "pages": 0, "documents": 0, "passages": 0, "status": "empty"}
    assert client.get(response.headers["Location"], headers=account.headers).json() == chatbot


def test_get_answers_304_to_its_current_etag_and_200_after_a_change(client, account):
    chatbot_id = create(client, account).json()["id"]
    unchanged = client.get(f"{BASE}/{chatbot_id}", headers={**account.headers, "If-None-Match": '"1"'})
    assert unchanged.status_code == 304 and unchanged.content == b""
    assert unchanged.headers["ETag"] == '"1"'
    assert patch(client, account, chatbot_id, {"name": "Renamed"}).headers["ETag"] == '"2"'
    changed = client.get(f"{BASE}/{chatbot_id}", headers={**account.headers, "If-None-Match": '"1"'})
    assert changed.status_code == 200 and changed.json()["name"] == "Renamed"


def test_patch_changes_the_members_sent_and_a_stale_if_match_is_412_changing_nothing(client, account, database):
    chatbot_id = create(client, account, welcome_message="Hello").json()["id"]
    changed = patch(
        client,
        account,
        chatbot_id,
        {"visibility": "public", "suggested_questions": ["A?", "B?"], "passages_per_answer": 20},
        **{"If-Match": '"1"'},
    )
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert (body["visibility"], body["suggested_questions"], body["passages_per_answer"]) == (
        "public",
        ["A?", "B?"],
        20,
    )
    assert (body["welcome_message"], body["version"], changed.headers["ETag"]) == ("Hello", 2, '"2"')

    stale = patch(client, account, chatbot_id, {"name": "Lost update"}, **{"If-Match": '"1"'})
    assert_problem(stale, 412, PRECONDITION_FAILED)
    weak = patch(client, account, chatbot_id, {"name": "Lost update"}, **{"If-Match": 'W/"2"'})
    assert_problem(weak, 412, PRECONDITION_FAILED)
    row = stored(database, chatbot_id)
    assert (row.name, row.version) == ("Support assistant", 2)

    nothing = patch(client, account, chatbot_id, {"visibility": "public"}, **{"If-Match": '"2"'})
    assert (nothing.status_code, nothing.json()["version"]) == (200, 2)
    assert (
        patch(client, account, chatbot_id, {"welcome_message": None}, **{"If-Match": "*"}).json()["welcome_message"]
        is None
    )


def test_allowed_transitions_pass_and_a_refused_one_is_409_naming_both_states_and_changing_nothing(
    client, account, database
):
    chatbot_id = create(client, account).json()["id"]
    refused = patch(client, account, chatbot_id, {"status": "paused", "name": "Not this either"})
    problem = assert_problem(refused, 409, STATUS_CONFLICT)
    assert "from draft to paused" in problem["detail"]
    assert (stored(database, chatbot_id).status, stored(database, chatbot_id).name) == ("draft", "Support assistant")

    for status in ("active", "paused", "active", "archived", "draft"):
        answer = patch(client, account, chatbot_id, {"status": status})
        assert (answer.status_code, answer.json()["status"]) == (200, status), answer.text

    patch(client, account, chatbot_id, {"status": "archived"})
    back = patch(client, account, chatbot_id, {"status": "active"})
    assert "from archived to active" in assert_problem(back, 409, STATUS_CONFLICT)["detail"]
    assert stored(database, chatbot_id).status == "archived"


@pytest.mark.parametrize(
    ("body", "pointer"),
    [
        ({"name": ""}, "/name"),
        ({"name": "   "}, "/name"),
        ({"name": "x" * 101}, "/name"),
        ({"instructions": "x" * 8001}, "/instructions"),
        ({"suggested_questions": [f"Q{n}?" for n in range(11)]}, "/suggested_questions"),
        ({"suggested_questions": ["x" * 201]}, "/suggested_questions/0"),
        ({"status": "deleted"}, "/status"),
        ({"visibility": "friends"}, "/visibility"),
        ({"allowed_origins": ["http://example.com"]}, "/allowed_origins/0"),
        ({"allowed_origins": ["https://example.com/path"]}, "/allowed_origins/0"),
        ({"allowed_origins": ["https://example.com:70000"]}, "/allowed_origins/0"),
        ({"allowed_origins": ["https://exa mple.com"]}, "/allowed_origins/0"),
        ({"allowed_origins": [f"https://site{n}.example.com" for n in range(21)]}, "/allowed_origins"),
        ({"passages_per_answer": 0}, "/passages_per_answer"),
        ({"passages_per_answer": 21}, "/passages_per_answer"),
        ({"min_score": 1.5}, "/min_score"),
        ({"min_score": -0.1}, "/min_score"),
        ({"knowledge": {"sources": 3}}, None),
        ({"owner_id": str(uuid.uuid4())}, None),
    ],
)
def test_invalid_changes_are_400_problems_that_change_nothing(client, account, database, body, pointer):
    chatbot_id = create(client, account).json()["id"]
    problem = assert_problem(patch(client, account, chatbot_id, body), 400, VALIDATION)
    if pointer is not None:
        assert pointer in [error.get("pointer") for error in problem["errors"]], problem
    row = stored(database, chatbot_id)
    assert (row.version, row.name, row.status, row.allowed_origins) == (1, "Support assistant", "draft", [])


def test_invalid_creations_are_400_problems_that_create_nothing(client, account):
    for body in ({}, {"name": "Bot", "status": "active"}, {"name": "Bot", "allowed_origins": ["https://"]}):
        assert_problem(client.post(BASE, json=body, headers=account.headers), 400, VALIDATION)
    assert client.get(BASE, headers=account.headers).json()["items"] == []


def test_the_list_is_paginated_newest_first_and_holds_only_the_callers_own(client, account, other_account, app):
    on_plan(app, account.id)  # three chatbots: more than the free plan allows
    ids = [create(client, account, name=f"Bot {n}").json()["id"] for n in range(3)]
    create(client, other_account)
    first = client.get(BASE, params={"limit": 2}, headers=account.headers).json()
    second = client.get(BASE, params={"limit": 2, "cursor": first["next_cursor"]}, headers=account.headers).json()
    assert [item["id"] for item in first["items"] + second["items"]] == ids[::-1]
    assert second["next_cursor"] is None
    assert_problem(client.get(BASE, params={"cursor": "bm9wZQ"}, headers=account.headers), 400, VALIDATION)
    own = client.get(BASE, params={"owner_id": account.id}, headers=account.headers).json()["items"]
    assert [item["id"] for item in own] == ids[::-1]
    assert_problem(client.get(BASE, params={"owner_id": other_account.id}, headers=account.headers), 403, FORBIDDEN)


def test_another_users_chatbot_is_404_everywhere_and_unchanged(client, account, other_account, database):
    chatbot_id = create(client, account).json()["id"]
    for method, body in [("GET", None), ("PATCH", {"name": "Taken"}), ("DELETE", None)]:
        kwargs = {"headers": other_account.headers, **({"json": body} if body is not None else {})}
        assert_problem(client.request(method, f"{BASE}/{chatbot_id}", **kwargs), 404, NOT_FOUND)
    assert client.get(BASE, headers=other_account.headers).json()["items"] == []
    row = stored(database, chatbot_id)
    assert (row.name, row.version, row.deleting_since) == ("Support assistant", 1, None)
    assert_problem(client.get(f"{BASE}/{uuid.uuid4()}", headers=account.headers), 404, NOT_FOUND)


def test_an_administrator_sees_every_chatbot_filters_by_owner_and_changes_anyones(
    client, account, other_account, admin
):
    mine = create(client, account).json()
    theirs = create(client, other_account).json()
    everyone = {item["id"] for item in collect_pages(client, BASE, headers=admin.headers, params={"limit": 100})}
    assert {mine["id"], theirs["id"]} <= everyone
    filtered = client.get(BASE, params={"owner_id": other_account.id}, headers=admin.headers).json()["items"]
    assert [item["id"] for item in filtered] == [theirs["id"]]

    assert client.get(f"{BASE}/{mine['id']}", headers=admin.headers).json()["owner_id"] == account.id
    paused = patch(client, admin, mine["id"], {"status": "archived"})
    assert (paused.status_code, paused.json()["status"], paused.json()["owner_id"]) == (200, "archived", account.id)
    deleted = client.delete(f"{BASE}/{theirs['id']}", headers=admin.headers)
    assert deleted.status_code == 202, deleted.text
    assert deleted.json()["owner_id"] == other_account.id
    assert_problem(client.get(f"{BASE}/{theirs['id']}", headers=other_account.headers), 404, NOT_FOUND)


def test_delete_answers_202_with_its_job_and_the_job_removes_the_chatbot(client, account, app, database):
    chatbot_id = create(client, account).json()["id"]
    assert_problem(
        client.delete(f"{BASE}/{chatbot_id}", headers={**account.headers, "If-Match": '"9"'}), 412, PRECONDITION_FAILED
    )
    assert stored(database, chatbot_id).deleting_since is None

    response = client.delete(f"{BASE}/{chatbot_id}", headers={**account.headers, "If-Match": '"1"'})
    assert response.status_code == 202, response.text
    job = response.json()
    assert response.headers["Location"] == f"/api/v1/jobs/{job['id']}"
    assert (job["kind"], job["status"], job["subject"]) == (
        "chatbots.delete",
        "queued",
        {"type": "chatbot", "id": chatbot_id},
    )
    assert_problem(client.get(f"{BASE}/{chatbot_id}", headers=account.headers), 404, NOT_FOUND)
    assert_problem(client.delete(f"{BASE}/{chatbot_id}", headers=account.headers), 404, NOT_FOUND)
    assert client.get(BASE, headers=account.headers).json()["items"] == []
    assert stored(database, chatbot_id) is not None  # until the job runs

    assert run_job(app, job["id"]).outcome == job_services.Outcome.SUCCEEDED
    assert stored(database, chatbot_id) is None
    done = client.get(response.headers["Location"], headers=account.headers).json()
    assert (done["status"], done["result"]) == ("succeeded", {"chatbot_id": chatbot_id, "deleted": True})


def test_the_fifty_first_chatbot_is_a_409_problem_and_creates_nothing(client, account, database, app):
    on_plan(app, account.id)  # the cap, not a quota: a plan that allows 50
    for number in range(chatbot_services.MAX_CHATBOTS_PER_USER):
        create(client, account, name=f"Bot {number}")
    refused = client.post(BASE, json={"name": "One too many"}, headers=account.headers)
    assert "50" in assert_problem(refused, 409, LIMIT_REACHED)["detail"]
    count = database.read(
        lambda db: db.scalar(select(func.count()).select_from(Chatbot).where(Chatbot.owner_id == uuid.UUID(account.id)))
    )
    assert count == chatbot_services.MAX_CHATBOTS_PER_USER


def test_an_idempotency_key_replays_the_creation(client, account):
    headers = {**account.headers, "Idempotency-Key": f"create-{uuid.uuid4()}"}
    first = client.post(BASE, json={"name": "Once"}, headers=headers)
    again = client.post(BASE, json={"name": "Once"}, headers=headers)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert len(client.get(BASE, headers=account.headers).json()["items"]) == 1


def test_changes_are_audited_for_the_owner(client, account, database):
    chatbot_id = create(client, account).json()["id"]
    patch(client, account, chatbot_id, {"status": "active", "instructions": "Be brief."})
    assert client.delete(f"{BASE}/{chatbot_id}", headers=account.headers).status_code == 202
    events = [event for event in database.audit_events(account.id) if event.type.startswith("chatbot_")]
    assert [event.type for event in events] == ["chatbot_created", "chatbot_updated", "chatbot_deleted"]
    assert all(event.details["chatbot_id"] == chatbot_id for event in events)
    assert events[1].details["changed"] == ["instructions", "status"]
    own = client.get("/api/v1/users/me/audit-events", headers=account.headers).json()["items"]
    assert {"chatbot_created", "chatbot_updated", "chatbot_deleted"} <= {item["type"] for item in own}


def test_the_export_holds_the_callers_chatbots_and_not_those_being_deleted(client, account, other_account):
    kept = create(client, account, name="Kept").json()
    gone = create(client, account, name="Gone").json()
    create(client, other_account, name="Not mine")
    assert client.delete(f"{BASE}/{gone['id']}", headers=account.headers).status_code == 202
    export = client.get("/api/v1/users/me/export", headers=account.headers)
    assert export.status_code == 200, export.text
    assert export.json()["chatbots"] == [client.get(f"{BASE}/{kept['id']}", headers=account.headers).json()]


def test_deleting_the_account_deletes_its_chatbots(client, database):
    account = register_and_login(client)
    chatbot_id = create(client, account).json()["id"]
    deleted = client.delete("/api/v1/users/me", headers=account.headers)
    assert deleted.status_code == 204, deleted.text
    assert stored(database, chatbot_id) is None
