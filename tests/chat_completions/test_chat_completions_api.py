"""`POST /api/v1/chatbots/{chatbot_id}/chat/completions` through the ASGI app, every answer checked
against the contract by the `client` fixture: a grounded, cited answer that stores nothing; unknown
fields ignored and text parts read; "don't know" without citations; what the provider is given
(the chatbot's instructions then the client's system messages, the last six turns, `max_tokens`
as a word limit) and how it ended (`length`, `error`); wrong input 400 naming the field; only
an active chatbot answers (409); another user's chatbot 404; no credentials 401; data-only
event encoding."""

from __future__ import annotations

import dataclasses
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from sqlalchemy import func, select

from persistence.conversations.models import Conversation, Message
from server.integration.event_stream import encode_event
from services import conversations, knowledge
from services.conversations import DONT_KNOW, AnswerRequest, ProviderEvent, markers
from tests.conversations.conftest import RETURNS_PAGE, SHIPPING_MANUAL, index
from tests.helpers import VALIDATION, assert_problem

CHATBOTS = "/api/v1/chatbots"
QUESTION = "How long do refunds take?"


def completions(chatbot_id: str) -> str:
    return f"{CHATBOTS}/{chatbot_id}/chat/completions"


def make_chatbot(client, account, status: str = "active", **settings) -> str:
    response = client.post(CHATBOTS, json={"name": "Shop", **settings}, headers=account.headers)
    assert response.status_code == 201, response.text
    chatbot_id = response.json()["id"]
    for step in {"draft": [], "active": ["active"]}.get(status, ["active", status]):
        changed = client.patch(f"{CHATBOTS}/{chatbot_id}", json={"status": step}, headers=account.headers)
        assert changed.status_code == 200, changed.text
    return chatbot_id


@pytest.fixture
def bot(client, account, new_uow) -> str:
    """An active chatbot of `account` with instructions, knowing a returns page and a manual."""
    chatbot_id = make_chatbot(client, account, instructions="Be polite.")
    page = knowledge.KnowledgeSource("web_page", uuid.uuid4(), title="Returns", url="https://shop.example/returns")
    manual = knowledge.KnowledgeSource("document", uuid.uuid4(), title="Shipping manual")
    index(new_uow, uuid.UUID(chatbot_id), page, RETURNS_PAGE)
    index(new_uow, uuid.UUID(chatbot_id), manual, SHIPPING_MANUAL, page=2, heading="Shipping")
    return chatbot_id


def ask(client, account, chatbot_id: str, **body):
    body.setdefault("messages", [{"role": "user", "content": QUESTION}])
    return client.post(completions(chatbot_id), json=body, headers=account.headers)


def _counts(new_uow) -> tuple[int, int]:
    with new_uow() as uow:
        return (
            uow.session.scalar(select(func.count()).select_from(Conversation)),
            uow.session.scalar(select(func.count()).select_from(Message)),
        )


def test_a_grounded_cited_answer_that_stores_nothing(client, account, bot, new_uow):
    before = _counts(new_uow)
    response = ask(client, account, bot)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert re.fullmatch(r"chatcmpl-[0-9a-f]{32}", body["id"])
    assert body["object"] == "chat.completion" and body["model"] == "charter"
    [choice] = body["choices"]
    assert choice["index"] == 0 and choice["finish_reason"] == "stop"
    assert choice["message"]["role"] == "assistant"
    content = choice["message"]["content"]
    # The refund sentence, cited with the number of the returns page. Which number that is
    # depends on the passages' rank, and on SQLite FTS5's bm25 statistics span the whole index
    # (every test's chatbots), so the number is read, not assumed.
    [returns] = [item for item in body["citations"] if item["source"]["url"] == "https://shop.example/returns"]
    assert returns["quote"] == RETURNS_PAGE
    number = returns["number"]
    assert content == f"Refunds are paid within 14 days of the return reaching our warehouse. [{number}]"
    assert markers(content) == [number]
    words_out = len(re.findall(r"\w+", content))
    assert body["usage"]["completion_tokens"] == words_out
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + words_out
    assert _counts(new_uow) == before


def test_unknown_fields_are_ignored_and_text_parts_are_read(client, account, bot):
    plain = ask(client, account, bot).json()
    parts = ask(
        client,
        account,
        bot,
        model="gpt-4o",
        n=1,
        top_p=0.5,
        user="someone",
        stream_options={"include_usage": True},
        seed=7,
        messages=[{"role": "user", "name": "ann", "content": [{"type": "text", "text": QUESTION}]}],
    )
    assert parts.status_code == 200, parts.text
    assert parts.json()["model"] == "gpt-4o"
    assert parts.json()["choices"] == plain["choices"] and parts.json()["citations"] == plain["citations"]


def test_no_matching_passage_is_dont_know_without_citations(client, account, bot):
    body = ask(client, account, bot, messages=[{"role": "user", "content": "Who painted the Mona Lisa?"}]).json()
    assert body["choices"][0]["message"]["content"] == DONT_KNOW
    assert body["citations"] == []


@dataclass
class Scripted:
    """A provider that records what it is asked and answers from a script."""

    events: list[ProviderEvent]
    fail_after: int | None = None
    requests: list[AnswerRequest] = field(default_factory=list)
    name: str = "scripted"

    def answer(self, request: AnswerRequest) -> Iterator[ProviderEvent]:
        self.requests.append(request)
        for number, event in enumerate(self.events):
            if number == self.fail_after:
                raise ConnectionError("the provider went away")
            yield event


@pytest.fixture
def provider(app) -> Iterator[Scripted]:
    """The app's answer provider swapped for a `Scripted` one (no fallback)."""
    context = app.app.extensions["charter"].jobs.context
    original = context["conversations"]
    scripted = Scripted([("delta", "Fourteen days [1]."), ("finish", "stop")])
    context["conversations"] = dataclasses.replace(original, provider=scripted, fallback=None)
    yield scripted
    context["conversations"] = original


def test_the_provider_gets_the_instructions_then_the_system_messages_and_the_last_turns(client, account, bot, provider):
    turns = [
        {"role": "user" if n % 2 == 0 else "assistant", "content": f"turn {n}"} for n in range(8)
    ]  # eight turns: the first two are dropped
    messages = [
        {"role": "system", "content": "Answer in one sentence."},
        *turns,
        {"role": "system", "content": [{"type": "text", "text": "Use British spelling."}]},
        {"role": "user", "content": f"  {QUESTION}  "},
    ]
    response = ask(client, account, bot, messages=messages, max_tokens=50, temperature=1.5)
    assert response.status_code == 200, response.text
    [request] = provider.requests
    assert request.question == QUESTION
    assert request.instructions == "Be polite.\n\nAnswer in one sentence.\n\nUse British spelling."
    assert [(turn.role, turn.content) for turn in request.history] == [
        (turn["role"], turn["content"]) for turn in turns[2:]
    ]
    assert request.max_words == 50
    assert [passage.number for passage in request.passages] == list(range(1, len(request.passages) + 1))
    assert response.json()["choices"][0]["message"]["content"] == "Fourteen days [1]."


def test_max_tokens_cuts_the_answer_in_words(client, account, bot, provider):
    provider.events = [("delta", "one two "), ("delta", "three four "), ("delta", "five six"), ("finish", "stop")]
    body = ask(client, account, bot, max_completion_tokens=5, max_tokens=100).json()
    assert body["choices"][0]["message"]["content"] == "one two three four "
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 4


def test_a_provider_failing_mid_answer_ends_it_with_error_keeping_the_text(client, account, bot, provider):
    provider.events = [("delta", "Fourteen "), ("delta", "days."), ("finish", "stop")]
    provider.fail_after = 1
    body = ask(client, account, bot).json()
    assert body["choices"][0]["message"]["content"] == "Fourteen "
    assert body["choices"][0]["finish_reason"] == "error"


@pytest.mark.parametrize(
    ("body", "pointer"),
    [
        ({"messages": []}, "/messages"),
        ({"messages": "hello"}, "/messages"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "/messages/0/role"),
        ({"messages": [{"content": "x"}]}, "/messages/0/role"),
        ({"messages": [{"role": "user", "content": 5}]}, "/messages/0/content"),
        ({"stream": "yes"}, "/stream"),
        ({"max_tokens": 0}, "/max_tokens"),
        ({"temperature": 3}, "/temperature"),
        ({"model": 4}, "/model"),
        (
            {"messages": [{"role": "user", "content": QUESTION}, {"role": "assistant", "content": "Well,"}]},
            "/messages/1/role",
        ),
        ({"messages": [{"role": "user", "content": "   "}]}, "/messages/0/content"),
        ({"messages": [{"role": "user", "content": "x" * 4001}]}, "/messages/0/content"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
            "/messages/0/content/0",
        ),
        ({"messages": [{"role": "system", "content": "x" * 4001}, {"role": "user", "content": "Hi"}]}, "/messages"),
    ],
)
def test_wrong_input_is_400_naming_the_field(client, account, bot, body, pointer):
    problem = assert_problem(ask(client, account, bot, **body), 400, VALIDATION)
    assert pointer in [error["pointer"] for error in problem["errors"]], problem


@pytest.mark.parametrize("status", ["draft", "paused", "archived"])
def test_only_an_active_chatbot_answers(client, account, status):
    chatbot_id = make_chatbot(client, account, status)
    problem = assert_problem(ask(client, account, chatbot_id), 409, "/problems/chatbot-not-active")
    assert status in problem["detail"]


def test_another_users_chatbot_is_not_found_and_credentials_are_needed(client, account, other_account, bot):
    assert_problem(ask(client, other_account, bot), 404)
    assert_problem(ask(client, account, str(uuid.uuid4())), 404)
    anonymous = client.post(completions(bot), json={"messages": [{"role": "user", "content": QUESTION}]})
    assert_problem(anonymous, 401)


def test_data_only_events_and_raw_data():
    assert encode_event(None, {"a": "b\nc"}) == b'data: {"a":"b\\nc"}\n\n'
    assert encode_event(None, b"[DONE]") == b"data: [DONE]\n\n"
    assert encode_event("delta", b"x\ny") == b"event: delta\ndata: x\ndata: y\n\n"
    assert conversations.MAX_ANSWER_WORDS == 300  # the README's "at most 300 words"
