"""The conversations operations through the ASGI app (every answer checked against the contract
by the `client` fixture): from an uploaded document processed by its job, and from passages
indexed directly, to a cited answer whose `[n]` markers match its citations; the stored
citations coming back from `GET …/messages`; "don't know" with no citations; a paused chatbot
(409, nothing stored); other users (404) and administrators; feedback; cursor paging; safe
writes on the title; deletion (audited); the chatbot's deletion; the data export; account
deletion; an unknown ANSWER_PROVIDER refused at start-up."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator

import pytest
from pydantic import ValidationError
from sqlalchemy import func, select

from adapters.file_storage import MemoryFileStore
from persistence.conversations.models import Conversation, Message
from server.settings import Settings
from services import conversations
from services import jobs as job_services
from tests.conversations.conftest import RETURNS_PAGE, SHIPPING_MANUAL, index
from tests.helpers import NOT_FOUND, PRECONDITION_FAILED, VALIDATION, assert_problem, collect_pages, pages, run_job

CHATBOTS = "/api/v1/chatbots"
CONVERSATIONS = "/api/v1/conversations"


@pytest.fixture
def store(app) -> Iterator[MemoryFileStore]:
    """The app's document store swapped for one in memory."""
    context = app.app.extensions["charter"].jobs.context
    original = context["documents"]
    memory = MemoryFileStore()
    context["documents"] = dataclasses.replace(original, store=memory)
    yield memory
    context["documents"] = original


def make_chatbot(client, account, status: str = "active", **settings) -> str:
    response = client.post(CHATBOTS, json={"name": "Shop", **settings}, headers=account.headers)
    assert response.status_code == 201, response.text
    chatbot_id = response.json()["id"]
    if status != "draft":
        changed = client.patch(f"{CHATBOTS}/{chatbot_id}", json={"status": "active"}, headers=account.headers)
        assert changed.status_code == 200, changed.text
    if status not in ("draft", "active"):
        changed = client.patch(f"{CHATBOTS}/{chatbot_id}", json={"status": status}, headers=account.headers)
        assert changed.status_code == 200, changed.text
    return chatbot_id


def start(client, account, chatbot_id: str, **body) -> dict:
    response = client.post(f"{CHATBOTS}/{chatbot_id}/conversations", json=body, headers=account.headers)
    assert response.status_code == 201, response.text
    assert response.headers["Location"] == f"{CONVERSATIONS}/{response.json()['id']}"
    assert response.headers["ETag"] == '"1"'
    return response.json()


def ask(client, account, conversation_id: str, content: str, headers: dict[str, str] | None = None):
    return client.post(
        f"{CONVERSATIONS}/{conversation_id}/messages", json={"content": content}, headers=headers or account.headers
    )


def messages(client, account, conversation_id: str) -> list[dict]:
    return collect_pages(client, f"{CONVERSATIONS}/{conversation_id}/messages", headers=account.headers)


def assert_grounded(answer: dict) -> None:
    """Every `[n]` of the answer names one of its citations, and it cites at least one."""
    cited = conversations.markers(answer["content"])
    assert cited, answer
    assert set(cited) <= {citation["number"] for citation in answer["citations"]}
    assert [citation["number"] for citation in answer["citations"]] == list(range(1, len(answer["citations"]) + 1))


def test_an_uploaded_document_answers_a_question_with_citations_stored_with_the_answer(app, client, account, store):
    chatbot_id = make_chatbot(client, account)
    uploaded = client.post(
        f"{CHATBOTS}/{chatbot_id}/documents",
        files={"file": ("returns.txt", (RETURNS_PAGE + "\n\n" + SHIPPING_MANUAL).encode(), "text/plain")},
        data={"title": "Returns policy"},
        headers=account.headers,
    )
    assert uploaded.status_code == 202, uploaded.text
    document, job = uploaded.json()["document"], uploaded.json()["job"]
    assert run_job(app, job["id"]).outcome is job_services.Outcome.SUCCEEDED
    conversation = start(client, account, chatbot_id, title="Refunds")

    response = ask(client, account, conversation["id"], "  How long do refunds take?  ")

    assert response.status_code == 201, response.text
    answer = response.json()
    assert (answer["role"], answer["provider"], answer["finish_reason"], answer["fallback"]) == (
        "assistant",
        "extractive",
        "stop",
        False,
    )
    assert "Refunds are paid within 14 days of the return reaching our warehouse. [1]" in answer["content"]
    assert_grounded(answer)
    [citation] = answer["citations"]
    assert citation["source"]["type"] == "document" and citation["source"]["id"] == document["id"]
    assert citation["source"]["title"] == "Returns policy"
    assert "Refunds are paid within 14 days" in citation["quote"]
    assert answer["usage"]["passages"] == 1 and answer["usage"]["words_out"] > 0
    assert answer["feedback"] is None and answer["latency_ms"] >= 0

    question, stored = messages(client, account, conversation["id"])
    assert (question["role"], question["content"], question["citations"], question["usage"]) == (
        "user",
        "How long do refunds take?",
        [],
        None,
    )
    assert stored == answer and answer["reply_to"] == question["id"]
    read = client.get(f"{CONVERSATIONS}/{conversation['id']}", headers=account.headers).json()
    assert (read["message_count"], read["title"], read["version"]) == (2, "Refunds", 1)
    assert read["last_message_at"] == answer["created_at"]


def test_passages_of_pages_and_documents_are_cited_by_number(client, account, new_uow):
    chatbot_id = make_chatbot(client, account)
    from services import knowledge

    page = knowledge.KnowledgeSource("web_page", uuid.uuid4(), title="Returns", url="https://shop.example/returns")
    manual = knowledge.KnowledgeSource("document", uuid.uuid4(), title="Shipping manual")
    index(new_uow, uuid.UUID(chatbot_id), page, RETURNS_PAGE)
    index(new_uow, uuid.UUID(chatbot_id), manual, SHIPPING_MANUAL, page=2, heading="Shipping")
    conversation = start(client, account, chatbot_id)

    answer = ask(client, account, conversation["id"], "How many days do refunds and shipping take?").json()

    assert_grounded(answer)
    sources = {citation["source"]["type"]: citation for citation in answer["citations"]}
    assert sources["web_page"]["source"] == {
        "type": "web_page",
        "id": str(page.id),
        "url": "https://shop.example/returns",
        "title": "Returns",
        "page": None,
        "heading": None,
    }
    assert (sources["document"]["source"]["page"], sources["document"]["source"]["heading"]) == (2, "Shipping")
    for citation in answer["citations"]:  # each sentence is followed by the number of its passage
        marker = f"[{citation['number']}]"
        assert marker in answer["content"]
        sentence = answer["content"].split(marker)[0].split("] ")[-1].strip()
        assert sentence in citation["quote"]
    assert messages(client, account, conversation["id"])[1]["citations"] == answer["citations"]


def test_no_relevant_passage_is_a_dont_know_without_citations(client, account, new_uow):
    chatbot_id = make_chatbot(client, account)
    conversation = start(client, account, chatbot_id)
    empty = ask(client, account, conversation["id"], "How long do refunds take?").json()
    assert (empty["content"], empty["citations"], empty["usage"]["passages"]) == (conversations.DONT_KNOW, [], 0)

    from services import knowledge

    page = knowledge.KnowledgeSource("web_page", uuid.uuid4(), title="Returns", url="https://shop.example/returns")
    index(new_uow, uuid.UUID(chatbot_id), page, RETURNS_PAGE)
    unrelated = ask(client, account, conversation["id"], "Do you sell pancakes?").json()
    assert (unrelated["content"], unrelated["citations"]) == (conversations.DONT_KNOW, [])


@pytest.mark.parametrize("status", ["draft", "paused", "archived"])
def test_a_chatbot_that_is_not_active_does_not_answer_and_nothing_is_stored(client, account, status):
    chatbot_id = make_chatbot(client, account, status=status)
    conversation = start(client, account, chatbot_id)
    problem = assert_problem(ask(client, account, conversation["id"], "Hello?"), 409, "/problems/chatbot-not-active")
    assert status in problem["detail"]
    assert messages(client, account, conversation["id"]) == []


def test_bad_messages_are_problems_that_store_nothing(client, account):
    conversation = start(client, account, make_chatbot(client, account))
    for body in ({}, {"content": ""}, {"content": "x" * 4001}, {"content": "hi", "role": "assistant"}):
        response = client.post(f"{CONVERSATIONS}/{conversation['id']}/messages", json=body, headers=account.headers)
        assert_problem(response, 400, VALIDATION)
    assert_problem(ask(client, account, conversation["id"], "   "), 400, VALIDATION)
    assert messages(client, account, conversation["id"]) == []
    assert_problem(ask(client, account, str(uuid.uuid4()), "Hello?"), 404, NOT_FOUND)


def test_other_users_get_404_for_everything_and_administrators_see_it(client, account, other_account, admin):
    chatbot_id = make_chatbot(client, account)
    conversation = start(client, account, chatbot_id)
    answer = ask(client, account, conversation["id"], "Hello?").json()
    path = f"{CONVERSATIONS}/{conversation['id']}"
    headers = other_account.headers
    for response in (
        client.get(path, headers=headers),
        client.patch(path, json={"title": "Mine"}, headers=headers),
        client.delete(path, headers=headers),
        client.get(f"{path}/messages", headers=headers),
        client.post(f"{path}/messages", json={"content": "Hi"}, headers=headers),
        client.post(f"{path}/messages/{answer['id']}/feedback", json={"rating": "down"}, headers=headers),
        client.get(f"{CHATBOTS}/{chatbot_id}/conversations", headers=headers),
        client.post(f"{CHATBOTS}/{chatbot_id}/conversations", json={}, headers=headers),
    ):
        assert_problem(response, 404, NOT_FOUND)
    assert len(messages(client, account, conversation["id"])) == 2  # nothing changed

    assert client.get(path, headers=admin.headers).json()["id"] == conversation["id"]
    listed = collect_pages(client, f"{CHATBOTS}/{chatbot_id}/conversations", headers=admin.headers)
    assert [item["id"] for item in listed] == [conversation["id"]]
    assert len(messages(client, admin, conversation["id"])) == 2
    assert client.get(path).status_code == 401


def test_feedback_is_one_per_answer_and_a_second_replaces_it(client, account):
    conversation = start(client, account, make_chatbot(client, account))
    answer = ask(client, account, conversation["id"], "Hello?").json()
    path = f"{CONVERSATIONS}/{conversation['id']}/messages"

    first = client.post(
        f"{path}/{answer['id']}/feedback", json={"rating": "up", "comment": " Great "}, headers=account.headers
    )
    assert first.status_code == 200, first.text
    assert (first.json()["feedback"]["rating"], first.json()["feedback"]["comment"]) == ("up", "Great")
    second = client.post(f"{path}/{answer['id']}/feedback", json={"rating": "down"}, headers=account.headers)
    assert second.json()["feedback"]["rating"] == "down" and second.json()["feedback"]["comment"] is None
    question, stored = messages(client, account, conversation["id"])
    assert stored["feedback"] == second.json()["feedback"] and question["feedback"] is None

    assert_problem(
        client.post(f"{path}/{question['id']}/feedback", json={"rating": "up"}, headers=account.headers),
        409,
        "/problems/conflict",
    )
    assert_problem(client.post(f"{path}/{uuid.uuid4()}/feedback", json={"rating": "up"}, headers=account.headers), 404)
    bad = client.post(f"{path}/{answer['id']}/feedback", json={"rating": "meh"}, headers=account.headers)
    assert_problem(bad, 400, VALIDATION)
    assert messages(client, account, conversation["id"])[1]["feedback"]["rating"] == "down"


def test_messages_page_oldest_first_and_conversations_newest_first(client, account):
    chatbot_id = make_chatbot(client, account)
    conversation = start(client, account, chatbot_id)
    for number in range(3):
        assert ask(client, account, conversation["id"], f"Question {number}?").status_code == 201
    listed = list(
        pages(client, f"{CONVERSATIONS}/{conversation['id']}/messages", headers=account.headers, params={"limit": 2})
    )
    assert [len(page["items"]) for page in listed] == [2, 2, 2]
    flat = [item for page in listed for item in page["items"]]
    assert [item["role"] for item in flat] == ["user", "assistant"] * 3
    assert [item["content"] for item in flat[::2]] == ["Question 0?", "Question 1?", "Question 2?"]
    assert all(answer["reply_to"] == question["id"] for question, answer in zip(flat[::2], flat[1::2], strict=True))

    others = [start(client, account, chatbot_id, title=f"Chat {number}") for number in range(2)]
    conversations_listed = collect_pages(
        client, f"{CHATBOTS}/{chatbot_id}/conversations", headers=account.headers, params={"limit": 1}
    )
    assert [item["id"] for item in conversations_listed] == [others[1]["id"], others[0]["id"], conversation["id"]]
    bad = client.get(
        f"{CONVERSATIONS}/{conversation['id']}/messages", params={"cursor": "bm9wZQ"}, headers=account.headers
    )
    assert_problem(bad, 400)


def test_the_title_changes_with_if_match_and_deletion_is_audited(client, account, database):
    conversation = start(client, account, make_chatbot(client, account), title="  First  ")
    assert conversation["title"] == "First"
    path = f"{CONVERSATIONS}/{conversation['id']}"

    renamed = client.patch(path, json={"title": "Second"}, headers={**account.headers, "If-Match": '"1"'})
    assert renamed.status_code == 200 and renamed.headers["ETag"] == '"2"'
    assert (renamed.json()["title"], renamed.json()["version"]) == ("Second", 2)
    stale = client.patch(path, json={"title": "Third"}, headers={**account.headers, "If-Match": '"1"'})
    assert_problem(stale, 412, PRECONDITION_FAILED)
    same = client.patch(path, json={"title": "Second"}, headers=account.headers)
    assert same.json()["version"] == 2
    untitled = client.patch(path, json={"title": None}, headers=account.headers)
    assert (untitled.json()["title"], untitled.json()["version"]) == (None, 3)
    not_modified = client.get(path, headers={**account.headers, "If-None-Match": '"3"'})
    assert not_modified.status_code == 304

    assert_problem(client.delete(path, headers={**account.headers, "If-Match": '"2"'}), 412, PRECONDITION_FAILED)
    assert client.delete(path, headers={**account.headers, "If-Match": '"3"'}).status_code == 204
    assert_problem(client.get(path, headers=account.headers), 404, NOT_FOUND)
    [event] = [event for event in database.audit_events(account.id) if event.type == "conversation_deleted"]
    assert event.details["conversation_id"] == conversation["id"]
    assert str(event.actor_id) == str(event.subject_id) == account.id


def test_an_idempotent_retry_answers_the_first_answer_without_asking_again(client, account):
    conversation = start(client, account, make_chatbot(client, account))
    key = {"Idempotency-Key": f"ask-{uuid.uuid4()}"}
    first = ask(client, account, conversation["id"], "Hello?", headers={**account.headers, **key})
    again = ask(client, account, conversation["id"], "Hello?", headers={**account.headers, **key})
    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true" and again.json() == first.json()
    assert len(messages(client, account, conversation["id"])) == 2


def test_a_deleted_chatbot_takes_its_conversations_with_it(app, client, account, database):
    chatbot_id = make_chatbot(client, account)
    conversation = start(client, account, chatbot_id)
    ask(client, account, conversation["id"], "Hello?")
    job = client.delete(f"{CHATBOTS}/{chatbot_id}", headers=account.headers).json()
    assert_problem(client.get(f"{CONVERSATIONS}/{conversation['id']}", headers=account.headers), 404, NOT_FOUND)
    assert_problem(ask(client, account, conversation["id"], "Still there?"), 404, NOT_FOUND)

    assert run_job(app, job["id"]).outcome is job_services.Outcome.SUCCEEDED
    conversation_id = uuid.UUID(conversation["id"])
    assert database.read(lambda db: db.get(Conversation, conversation_id)) is None
    count = select(func.count()).select_from(Message).where(Message.conversation_id == conversation_id)
    assert database.read(lambda db: db.scalar(count)) == 0


def test_conversations_are_in_the_export_and_go_with_the_account(client, account, database):
    conversation = start(client, account, make_chatbot(client, account), title="Exported")
    answer = ask(client, account, conversation["id"], "Hello?").json()
    export = client.get("/api/v1/users/me/export", headers=account.headers).json()
    [exported] = export["conversations"]
    assert exported["conversation"]["title"] == "Exported"
    assert [message["id"] for message in exported["messages"]][1] == answer["id"]

    assert client.request("DELETE", "/api/v1/users/me", headers=account.headers).status_code == 204
    conversation_id = uuid.UUID(conversation["id"])
    assert database.read(lambda db: db.get(Conversation, conversation_id)) is None
    count = select(func.count()).select_from(Message).where(Message.conversation_id == conversation_id)
    assert database.read(lambda db: db.scalar(count)) == 0


def test_an_unknown_answer_provider_stops_the_start_saying_which_exist(tmp_path):
    with pytest.raises(
        ValidationError, match="ANSWER_PROVIDER 'gpt' is not an answer provider; use one of: extractive"
    ):
        Settings(answer_provider="gpt", var_dir=tmp_path)
    assert Settings(var_dir=tmp_path).answer_provider == "extractive"
