"""`GET /api/v1/public/chatbots/{public_id}` (issue 18), through the contract-checking client:
what a chat widget shows (name, welcome message, suggested questions), with a strong `ETag`,
`If-None-Match` answered 304, `Cache-Control: public, max-age=60`; served from the cache (the
hit counter in /metrics moves) and forgotten as soon as the owner changes, pauses, hides or
deletes the chatbot; 404 for any chatbot not open to visitors; CORS by its allowed origins."""

from __future__ import annotations

import re

from prometheus_client import REGISTRY

from tests.helpers import NOT_FOUND, assert_problem, on_plan
from tests.public_chatbots.test_public_chatbots_api import CHATBOTS, ELSEWHERE, PUBLIC, SHOP, make_public_chatbot

ETAG = re.compile(r'^"[0-9a-f]{32}"$')


def hits() -> float:
    return (
        REGISTRY.get_sample_value("charter_cache_requests_total", {"cache": "public_chatbots", "outcome": "hit"}) or 0
    )


def read(client, public_id: str, headers: dict[str, str] | None = None):
    return client.get(f"{PUBLIC}/chatbots/{public_id}", headers=headers or {})


def test_the_settings_are_public_cacheable_and_served_from_the_cache(client, account, new_uow):
    chatbot = make_public_chatbot(client, account, new_uow)
    client.patch(
        f"{CHATBOTS}/{chatbot['id']}",
        json={"suggested_questions": ["How long do refunds take?"]},
        headers=account.headers,
    )

    first = read(client, chatbot["public_id"])
    before = hits()
    second = read(client, chatbot["public_id"])

    assert first.status_code == 200, first.text
    assert first.json() == {
        "public_id": chatbot["public_id"],
        "name": "Shop",
        "welcome_message": "Hi!",
        "suggested_questions": ["How long do refunds take?"],
    }
    assert ETAG.match(first.headers["ETag"])
    assert first.headers["Cache-Control"] == "public, max-age=60"
    assert (second.json(), second.headers["ETag"]) == (first.json(), first.headers["ETag"])
    assert hits() == before + 1


def test_if_none_match_with_the_current_tag_is_304_without_a_body(client, account, new_uow):
    chatbot = make_public_chatbot(client, account, new_uow)
    tag = read(client, chatbot["public_id"]).headers["ETag"]

    for condition in (tag, f"W/{tag}", f'"{"0" * 32}", {tag}', "*"):
        unchanged = read(client, chatbot["public_id"], {"If-None-Match": condition})
        assert unchanged.status_code == 304, condition
        assert unchanged.content == b""
        assert (unchanged.headers["ETag"], unchanged.headers["Cache-Control"]) == (tag, "public, max-age=60")
    other = read(client, chatbot["public_id"], {"If-None-Match": f'"{"0" * 32}"'})
    assert other.status_code == 200 and other.headers["ETag"] == tag


def test_a_change_by_the_owner_is_seen_at_once_with_a_new_tag(client, account, new_uow):
    chatbot = make_public_chatbot(client, account, new_uow)
    old = read(client, chatbot["public_id"])
    read(client, chatbot["public_id"])  # cached now

    changed = client.patch(
        f"{CHATBOTS}/{chatbot['id']}", json={"name": "Shop help", "welcome_message": None}, headers=account.headers
    )
    assert changed.status_code == 200, changed.text
    new = read(client, chatbot["public_id"])

    assert new.json()["name"] == "Shop help" and new.json()["welcome_message"] is None
    assert new.headers["ETag"] != old.headers["ETag"]
    assert read(client, chatbot["public_id"], {"If-None-Match": old.headers["ETag"]}).status_code == 200


def test_chatbots_closed_to_visitors_are_404_and_opening_one_is_seen_at_once(app, client, account, new_uow):
    on_plan(app, account.id)  # three chatbots: more than the free plan allows
    private = make_public_chatbot(client, account, new_uow, visibility="private")
    draft = make_public_chatbot(client, account, new_uow, status="draft")
    paused = make_public_chatbot(client, account, new_uow, status="paused")
    for public_id in (private["public_id"], draft["public_id"], paused["public_id"], "pcb_" + "A" * 22):
        for _ in range(2):  # the second from the cache: still 404
            assert_problem(read(client, public_id), 404, NOT_FOUND)

    opened = client.patch(f"{CHATBOTS}/{private['id']}", json={"visibility": "public"}, headers=account.headers)
    assert opened.status_code == 200, opened.text
    assert read(client, private["public_id"]).status_code == 200
    resumed = client.patch(f"{CHATBOTS}/{paused['id']}", json={"status": "active"}, headers=account.headers)
    assert resumed.status_code == 200, resumed.text
    assert read(client, paused["public_id"]).status_code == 200


def test_pausing_or_deleting_a_cached_chatbot_closes_it_at_once(client, account, new_uow):
    paused = make_public_chatbot(client, account, new_uow)
    deleted = make_public_chatbot(client, account, new_uow)
    for chatbot in (paused, deleted):
        assert read(client, chatbot["public_id"]).status_code == 200
        assert read(client, chatbot["public_id"]).status_code == 200  # cached

    client.patch(f"{CHATBOTS}/{paused['id']}", json={"status": "paused"}, headers=account.headers)
    assert client.delete(f"{CHATBOTS}/{deleted['id']}", headers=account.headers).status_code == 202

    assert_problem(read(client, paused["public_id"]), 404, NOT_FOUND)
    assert_problem(read(client, deleted["public_id"]), 404, NOT_FOUND)


def test_browsers_may_read_it_from_the_chatbots_allowed_origins_only(client, account, new_uow):
    chatbot = make_public_chatbot(client, account, new_uow)

    allowed = read(client, chatbot["public_id"], {"Origin": SHOP})
    refused = read(client, chatbot["public_id"], {"Origin": ELSEWHERE})

    assert allowed.status_code == 200 and allowed.headers["Access-Control-Allow-Origin"] == SHOP
    assert "Origin" in allowed.headers["Vary"]
    assert refused.status_code == 403 and "Access-Control-Allow-Origin" not in refused.headers


def test_metrics_count_the_cache_reads_by_cache_and_outcome(client, account, new_uow):
    chatbot = make_public_chatbot(client, account, new_uow)
    read(client, chatbot["public_id"])
    read(client, chatbot["public_id"])

    text = client.get("/metrics").text
    assert 'charter_cache_requests_total{cache="public_chatbots",outcome="hit"}' in text
    assert 'charter_cache_requests_total{cache="public_chatbots",outcome="miss"}' in text


def test_a_change_of_allowed_origins_is_seen_by_browsers_at_once(client, account, new_uow):
    chatbot = make_public_chatbot(client, account, new_uow)
    for _ in range(2):  # the second from the cache (origins included)
        assert read(client, chatbot["public_id"], {"Origin": SHOP}).status_code == 200

    moved = client.patch(f"{CHATBOTS}/{chatbot['id']}", json={"allowed_origins": [ELSEWHERE]}, headers=account.headers)
    assert moved.status_code == 200, moved.text

    assert read(client, chatbot["public_id"], {"Origin": SHOP}).status_code == 403
    assert read(client, chatbot["public_id"], {"Origin": ELSEWHERE}).status_code == 200
