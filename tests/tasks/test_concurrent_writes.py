"""Conditional writes under real concurrency (issue 11): requests that all carry the same
current `If-Match` reach a served app at the same moment (threads released by one barrier),
on SQLite and on PostgreSQL. Exactly one may win; every other answers 412 problem+json and
changes nothing. Writes without `If-Match` stay last-writer-wins, each bumping the version once.
"""

from __future__ import annotations

from collections import Counter

import httpx

from tests.helpers import PRECONDITION_FAILED, Account, create_task, register_and_login
from tests.served import Served, at_once

RACERS = 12


def _read(served: Served, account: Account, task_id: str) -> httpx.Response:
    """GET the task over HTTP (the raw answer: a deleted task is a 404)."""
    with served.client() as http:
        return http.get(f"{account.tasks_path}/{task_id}", headers=account.headers)


def _assert_losers_are_412(responses: list[httpx.Response], winner_status: int) -> list[httpx.Response]:
    statuses = Counter(response.status_code for response in responses)
    assert statuses == {winner_status: 1, 412: RACERS - 1}, statuses
    for response in responses:
        if response.status_code == 412:
            assert response.headers["content-type"].startswith("application/problem+json")
            assert response.json()["type"] == PRECONDITION_FAILED
    return [response for response in responses if response.status_code == winner_status]


def test_one_of_twelve_completions_with_the_same_if_match_wins(served: Served):
    with served.client() as http:
        account = register_and_login(http)
        task = create_task(http, account, title="contended")
    path = f"{account.tasks_path}/{task['id']}/complete"

    responses = at_once(
        RACERS, lambda http, _: http.patch(path, headers={**account.headers, "If-Match": '"1"'}), served=served
    )

    [winner] = _assert_losers_are_412(responses, 200)
    assert winner.json()["version"] == 2
    stored = _read(served, account, task["id"]).json()
    assert stored["completed"] is True and stored["version"] == 2


def test_one_of_twelve_replacements_with_the_same_if_match_wins(served: Served):
    with served.client() as http:
        account = register_and_login(http)
        task = create_task(http, account, title="contended")
    path = f"{account.tasks_path}/{task['id']}"

    responses = at_once(
        RACERS,
        lambda http, i: http.put(path, json={"title": f"writer {i}"}, headers={**account.headers, "If-Match": '"1"'}),
        served=served,
    )

    [winner] = _assert_losers_are_412(responses, 200)
    stored = _read(served, account, task["id"]).json()
    assert stored["version"] == 2
    assert stored["title"] == winner.json()["title"], "a loser's write reached the database"


def test_replacements_and_deletions_with_the_same_if_match_have_one_winner(served: Served):
    with served.client() as http:
        account = register_and_login(http)
        task = create_task(http, account, title="contended")
    path = f"{account.tasks_path}/{task['id']}"
    condition = {**account.headers, "If-Match": '"1"'}

    def write(http: httpx.Client, i: int) -> httpx.Response:
        if i % 2:
            return http.delete(path, headers=condition)
        return http.put(path, json={"title": f"writer {i}"}, headers=condition)

    responses = at_once(RACERS, write, served=served)

    winners = [r for r in responses if r.status_code in (200, 204)]
    assert len(winners) == 1, Counter(r.status_code for r in responses)
    stored = _read(served, account, task["id"])
    if winners[0].status_code == 204:
        # Deleted first: the others found no task (a missing resource is 404 before any
        # precondition, RFC 9110 section 13.2.1) or lost the version race (412).
        assert stored.status_code == 404
        assert {r.status_code for r in responses if r is not winners[0]} <= {404, 412}
    else:
        assert stored.status_code == 200 and stored.json()["version"] == 2
        assert stored.json()["title"] == winners[0].json()["title"]
        assert {r.status_code for r in responses if r is not winners[0]} == {412}


def test_twenty_unconditional_replacements_each_bump_the_version_once(served: Served):
    with served.client() as http:
        account = register_and_login(http)
        task = create_task(http, account, title="contended")
    path = f"{account.tasks_path}/{task['id']}"
    writers = 20

    responses = at_once(
        writers, lambda http, i: http.put(path, json={"title": f"writer {i}"}, headers=account.headers), served=served
    )

    assert [r.status_code for r in responses] == [200] * writers, [r.text for r in responses if r.status_code != 200]
    assert sorted(r.json()["version"] for r in responses) == list(range(2, 2 + writers))
    stored = _read(served, account, task["id"]).json()
    assert stored["version"] == 1 + writers
    last = max(responses, key=lambda r: r.json()["version"])
    assert stored["title"] == last.json()["title"], "the last writer's state is not the stored one"


def test_one_of_twelve_bulk_completions_with_the_same_version_wins(served: Served):
    with served.client() as http:
        account = register_and_login(http)
        task = create_task(http, account, title="contended")
    operation = {"op": "complete", "id": task["id"], "if_match_version": 1}

    responses = at_once(
        RACERS,
        lambda http, _: http.post(
            f"{account.tasks_path}/bulk", json={"operations": [operation]}, headers=account.headers
        ),
        served=served,
    )

    assert [r.status_code for r in responses] == [207] * RACERS
    results = [r.json()["results"][0] for r in responses]
    assert Counter(result["status"] for result in results) == {200: 1, 412: RACERS - 1}
    assert all(result["problem"]["type"] == PRECONDITION_FAILED for result in results if result["status"] == 412)
    assert _read(served, account, task["id"]).json()["version"] == 2


def test_twelve_creations_with_one_idempotency_key_create_one_task(served: Served):
    with served.client() as http:
        account = register_and_login(http)
    headers = {**account.headers, "Idempotency-Key": "race-0001"}

    responses = at_once(
        RACERS, lambda http, _: http.post(account.tasks_path, json={"title": "once"}, headers=headers), served=served
    )

    statuses = Counter(r.status_code for r in responses)
    assert set(statuses) <= {201, 409}, statuses
    # The first is processed; every other is either a replay of its answer or told it is in progress.
    created = [r for r in responses if r.status_code == 201]
    assert len({r.json()["id"] for r in created}) == 1
    assert sum(1 for r in created if r.headers.get("idempotent-replayed") != "true") == 1
    assert all(r.json()["type"] == "/problems/idempotency-in-progress" for r in responses if r.status_code == 409)
    with served.client() as http:
        listed = http.get(account.tasks_path, headers=account.headers).json()["items"]
    assert [task["title"] for task in listed] == ["once"]
