"""The answer cache through the app (issue 18), every answer checked against the contract: an
uploaded document changes the chatbot's knowledge, so the same question is answered afresh
with the new document among its citations; before that, the same question in a new
conversation is answered from the cache (the `answers` hit counter moves), also when it is
streamed (server-sent events, from the cache) and on a public chatbot's visitor path. An app
whose REDIS_URL points at a closed port still answers every question."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from prometheus_client import REGISTRY
from starlette.testclient import TestClient

from server.app import create_app
from tests.helpers import ContractClient, make_settings, register_and_login, run_job
from tests.processes import free_port
from tests.public_chatbots.test_public_chatbots_api import ask as visitor_ask
from tests.public_chatbots.test_public_chatbots_api import make_public_chatbot, peer_client, started

CHATBOTS = "/api/v1/chatbots"
CONVERSATIONS = "/api/v1/conversations"
QUESTION = "What warranty does the kettle have?"
"""Words of these tests' own: the full-text ranking's statistics are the whole session
database's, so documents about the other tests' refunds would move those tests' ranks."""
REFUNDS = "How long do refunds take?"
"""The public chatbots' question (`make_public_chatbot` knows the returns page)."""


def answer_reads(outcome: str) -> float:
    return REGISTRY.get_sample_value("charter_cache_requests_total", {"cache": "answers", "outcome": outcome}) or 0


def active_chatbot(client, account) -> str:
    created = client.post(CHATBOTS, json={"name": "Docs bot"}, headers=account.headers)
    assert created.status_code == 201, created.text
    chatbot_id = created.json()["id"]
    assert (
        client.patch(f"{CHATBOTS}/{chatbot_id}", json={"status": "active"}, headers=account.headers).status_code == 200
    )
    return chatbot_id


def upload_and_process(app, client, account, chatbot_id: str, name: str, text: str) -> str:
    response = client.post(
        f"{CHATBOTS}/{chatbot_id}/documents",
        files={"file": (name, text.encode(), "text/plain")},
        headers=account.headers,
    )
    assert response.status_code == 202, response.text
    document, job = response.json()["document"], response.json()["job"]
    run_job(app, job["id"])
    ready = client.get(f"{CHATBOTS}/{chatbot_id}/documents/{document['id']}", headers=account.headers)
    assert ready.json()["status"] == "ready", ready.text
    return document["id"]


def ask_new(client, account, chatbot_id: str, content: str = QUESTION, headers: dict[str, str] | None = None):
    """Ask `content` as the first question of a new conversation. A streamed answer is read
    whole and not checked by openapi-core (it has no event-stream support: the tests check the
    events themselves)."""
    conversation = client.post(f"{CHATBOTS}/{chatbot_id}/conversations", json={}, headers=account.headers)
    assert conversation.status_code == 201, conversation.text
    streamed = (headers or {}).get("Accept") == "text/event-stream"
    return client.request(
        "POST",
        f"{CONVERSATIONS}/{conversation.json()['id']}/messages",
        validate=not streamed,
        json={"content": content},
        headers={**account.headers, **(headers or {})},
    )


def sources(answer: dict) -> set[str]:
    return {item["source"]["id"] for item in answer["citations"]}


def events_of(text: str) -> list[tuple[str, dict]]:
    events = []
    for block in text.split("\n\n"):
        lines = [line for line in block.splitlines() if line and not line.startswith(":")]
        name = next((line[7:] for line in lines if line.startswith("event: ")), None)
        data = "\n".join(line[6:] for line in lines if line.startswith("data: "))
        if name:
            events.append((name, json.loads(data)))
    return events


def test_an_uploaded_document_gets_the_same_question_answered_afresh_with_its_citation(app, client, account):
    chatbot_id = active_chatbot(client, account)
    old = upload_and_process(
        app, client, account, chatbot_id, "kettle.txt", "The kettle warranty lasts two years from the purchase."
    )
    first = ask_new(client, account, chatbot_id)
    assert first.status_code == 201, first.text
    hits = answer_reads("hit")
    again = ask_new(client, account, chatbot_id, content="WHAT warranty does the   kettle have")

    assert answer_reads("hit") == hits + 1
    assert (again.json()["content"], again.json()["citations"]) == (first.json()["content"], first.json()["citations"])
    assert sources(first.json()) == {old}

    new = upload_and_process(
        app,
        client,
        account,
        chatbot_id,
        "policy.txt",
        "From 2027 the kettle warranty lasts three years: a longer kettle warranty.",
    )
    fresh = ask_new(client, account, chatbot_id)

    assert fresh.status_code == 201, fresh.text
    assert new in sources(fresh.json())
    assert answer_reads("hit") == hits + 1  # answered afresh, not from the cache


def test_a_cached_answer_is_streamed_from_the_cache(app, client, account):
    chatbot_id = active_chatbot(client, account)
    upload_and_process(app, client, account, chatbot_id, "kettle.txt", "The kettle warranty lasts two years.")
    first = ask_new(client, account, chatbot_id).json()
    hits = answer_reads("hit")

    streamed = ask_new(client, account, chatbot_id, headers={"Accept": "text/event-stream"})

    assert streamed.status_code == 201 and streamed.headers["Content-Type"].startswith("text/event-stream")
    events = events_of(streamed.text)
    names = [name for name, _data in events]
    assert names[0] == "message_start" and names[1] == "citations" and names[-1] == "message_end"
    assert set(names[2:-1]) == {"delta"}
    deltas = "".join(data["text"] for name, data in events if name == "delta")
    end = events[-1][1]
    assert deltas == end["content"] == first["content"]
    assert events[1][1]["citations"] == end["citations"] == first["citations"]
    assert answer_reads("hit") == hits + 1


def test_visitors_first_questions_are_answered_from_the_cache_too(app, client, account, new_uow, openapi):
    chatbot = make_public_chatbot(client, account, new_uow)
    visitor = peer_client(app, openapi)
    first_id, first_token = started(visitor, chatbot["public_id"])
    first = visitor_ask(visitor, first_id, first_token, REFUNDS)
    hits = answer_reads("hit")
    second_id, second_token = started(visitor, chatbot["public_id"])
    second = visitor_ask(visitor, second_id, second_token, "HOW long do refunds take")

    assert (first.status_code, second.status_code) == (201, 201)
    assert (second.json()["content"], second.json()["citations"]) == (
        first.json()["content"],
        first.json()["citations"],
    )
    assert answer_reads("hit") == hits + 1
    # The owner's own first question to the chatbot shares the answer: same owner, same knowledge.
    owners = client.post(f"{CHATBOTS}/{chatbot['id']}/conversations", json={}, headers=account.headers).json()
    mine = client.post(
        f"{CONVERSATIONS}/{owners['id']}/messages", json={"content": REFUNDS}, headers=account.headers
    ).json()
    assert mine["content"] == first.json()["content"] and answer_reads("hit") == hits + 2
    assert first.json()["citations"] and "Refunds are paid" in first.json()["content"]


@pytest.fixture(scope="module")
def redis_down(database_url, tmp_path_factory, openapi) -> Iterator[tuple]:
    """An app of its own whose REDIS_URL names a port nothing listens on (jobs on SQLite), and
    its contract-checking client."""
    settings = make_settings(
        database_url,
        tmp_path_factory.mktemp("var-redis-down"),
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
        job_queue="sqlite",
    )
    app = create_app(settings)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield app, ContractClient(test_client, openapi)


def test_an_app_whose_redis_is_down_still_answers(redis_down):
    app, client = redis_down
    account = register_and_login(client)
    chatbot_id = active_chatbot(client, account)
    document = upload_and_process(app, client, account, chatbot_id, "kettle.txt", "The kettle warranty is two years.")
    errors = answer_reads("error")

    answers = [ask_new(client, account, chatbot_id) for _ in range(2)]

    assert [answer.status_code for answer in answers] == [201, 201]
    assert [sources(answer.json()) for answer in answers] == [{document}, {document}]
    assert answers[0].json()["content"].startswith("The kettle warranty is two years.")
    assert answer_reads("error") >= errors + 2  # each a miss: counted, logged, answered
