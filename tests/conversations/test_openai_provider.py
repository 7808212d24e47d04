"""The `openai` answer provider glued in (issue 16), through the HTTP API: the app's conversations
configuration is the one `server.worker.make_conversation_config` builds for
ANSWER_PROVIDER=openai, pointed at the fake OpenAI-compatible server on 127.0.0.1
(`tests.llm_double.FakeLLM`). Every answer is checked against the contract by the `client`.

Proved: a cited answer whose ``[n]`` name the right passages (a number naming none dropped), and
the request the fake received (the chatbot's instructions, the numbered passages with their
sources, the question; streamed); the model's token usage stored; the server down → the
extractive provider answers with `fallback: true` after exactly the configured attempts; the
breaker then open → the next answer falls back without contacting the fake; a stream that stalls
mid-way → the partial text kept with `finish_reason: error`; the server's `length` → `length`;
ANSWER_PROVIDER=openai without LLM_BASE_URL refused at start.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from pydantic import ValidationError

from server.worker import make_conversation_config
from services import knowledge
from services.conversations import ConversationConfig
from tests.conversations.conftest import RETURNS_PAGE, SHIPPING_MANUAL, index, stored_messages
from tests.conversations.test_conversations_api import CONVERSATIONS, ask, make_chatbot, start
from tests.helpers import make_settings
from tests.llm_double import FakeLLM, Script

INSTRUCTIONS = "You are Shopbot, the shop's assistant. Answer in one sentence."
RETURNS_URL = "https://shop.example/returns"
GENERATED = "Refunds are paid within 14 days [1], never [9] later [1, 7]."
"""What the model writes in the cited-answer test: one valid marker, two numbers naming no passage."""


@dataclass(frozen=True)
class Chat:
    """An active chatbot (with instructions) of `account` knowing the returns page and the
    shipping manual, and a conversation with it."""

    chatbot_id: str
    conversation_id: str


@pytest.fixture
def llm() -> Iterator[FakeLLM]:
    with FakeLLM() as fake:
        yield fake


@pytest.fixture
def openai_app(app, llm: FakeLLM, tmp_path) -> Iterator[ConversationConfig]:
    """The session app answering with ANSWER_PROVIDER=openai on the fake: 2 attempts, no backoff,
    a 0.5 s idle timeout, a breaker opening after 2 failures for 60 s. A configuration of its own
    per test (so each starts with a closed breaker), put back afterwards."""
    settings = make_settings(
        "sqlite://",
        tmp_path,
        answer_provider="openai",
        llm_base_url=llm.base_url,
        llm_api_key=llm.api_key,
        llm_model="fake-model-1",
        llm_timeout_seconds=0.5,
        llm_retry_attempts=2,
        llm_retry_wait_seconds=0,
        llm_retry_max_wait_seconds=0,
        llm_breaker_failures=2,
        llm_breaker_reset_seconds=60,
    )
    config = make_conversation_config(settings)
    context = app.app.extensions["charter"].jobs.context
    original = context["conversations"]
    context["conversations"] = config
    try:
        yield config
    finally:
        context["conversations"] = original
        config.provider.chat.close()  # type: ignore[attr-defined]


@pytest.fixture
def chat(openai_app, client, account, new_uow) -> Chat:
    chatbot_id = make_chatbot(client, account, instructions=INSTRUCTIONS)
    page = knowledge.KnowledgeSource("web_page", uuid.uuid4(), title="Returns", url=RETURNS_URL)
    manual = knowledge.KnowledgeSource("document", uuid.uuid4(), title="Shipping manual")
    index(new_uow, uuid.UUID(chatbot_id), page, RETURNS_PAGE)
    index(new_uow, uuid.UUID(chatbot_id), manual, SHIPPING_MANUAL, page=2, heading="Shipping")
    return Chat(chatbot_id, start(client, account, chatbot_id)["id"])


def answered(client, account, chat: Chat, question: str) -> dict:
    response = ask(client, account, chat.conversation_id, question)
    assert response.status_code == 201, response.text
    return response.json()


def test_a_cited_answer_maps_its_markers_to_the_passages_it_was_given(client, account, chat, llm):
    llm.script(Script.reply(GENERATED, chunk_chars=2))

    answer = answered(client, account, chat, "When are refunds paid?")

    # The fake received the chatbot's instructions, the grounding rules, the numbered passages
    # with their sources, and the question, as a streamed request for the configured model.
    assert llm.request_count == 1
    sent = llm.requests[0].body
    assert (sent["model"], sent["stream"]) == ("fake-model-1", True)
    system, question = sent["messages"][0], sent["messages"][-1]
    assert system["role"] == "system"
    assert system["content"].startswith(INSTRUCTIONS + "\n\n")
    assert f"[1] Source: Returns — {RETURNS_URL}\n{RETURNS_PAGE}" in system["content"]
    assert "cite the passage it comes from with its number in square brackets" in system["content"]
    assert question == {"role": "user", "content": "When are refunds paid?"}

    # [9] and the 7 of [1, 7] name no passage: dropped from the text; [1] names the returns page.
    assert answer["content"] == "Refunds are paid within 14 days [1], never  later [1]."
    assert answer["citations"][0]["number"] == 1
    assert answer["citations"][0]["source"]["url"] == RETURNS_URL
    assert [citation["number"] for citation in answer["citations"]] == list(
        range(1, len(answer["citations"]) + 1)
    )  # every passage given is listed, as the extractive provider lists them
    assert len(answer["citations"]) == system["content"].count(" Source: ")
    assert (answer["provider"], answer["fallback"], answer["finish_reason"]) == ("openai", False, "stop")
    words = sum(len(str(message["content"]).split()) for message in sent["messages"])
    assert answer["usage"]["tokens_in"] == words  # the fake counts words as tokens
    assert answer["usage"]["tokens_out"] == len(GENERATED.split())

    # Stored as given: GET …/messages shows the same answer.
    listed = client.get(f"{CONVERSATIONS}/{chat.conversation_id}/messages", headers=account.headers)
    assert listed.status_code == 200
    assert listed.json()["items"][-1] == answer


def test_the_default_reply_cites_every_passage_sent(client, account, chat, llm):
    answer = answered(client, account, chat, "How long does shipping to Europe take?")

    system = llm.requests[0].body["messages"][0]["content"]
    numbers = len(answer["citations"])
    assert numbers >= 1
    assert "[1] Source: Shipping manual — Shipping — page 2\n" in system
    expected = " and ".join(f"[{number}]" for number in range(1, numbers + 1))
    assert answer["content"] == f"Answer from the passages {expected}."
    assert answer["citations"][0]["source"]["title"] == "Shipping manual"


def test_the_server_down_the_extractive_provider_answers_then_the_breaker_skips_the_server(
    client, account, chat, llm, openai_app
):
    llm.script(Script.fail(500), Script.fail(503))

    down = answered(client, account, chat, "When are refunds paid?")

    assert llm.request_count == 2  # LLM_RETRY_ATTEMPTS=2, then the fallback
    assert (down["provider"], down["fallback"], down["finish_reason"]) == ("extractive", True, "stop")
    assert down["content"] == "Refunds are paid within 14 days of the return reaching our warehouse. [1]"
    assert "tokens_in" not in down["usage"]
    assert openai_app.provider.chat.breaker_state == "open"  # 2 failures in a row

    still_open = answered(client, account, chat, "When are refunds paid?")

    assert llm.request_count == 2  # the open breaker failed fast: the server was not contacted
    assert (still_open["provider"], still_open["fallback"]) == ("extractive", True)
    assert still_open["content"] == down["content"]
    assert [message["fallback"] for message in stored(account, client, chat)] == [False, True, False, True]


def test_the_server_stopped_the_extractive_provider_answers(client, account, chat, llm):
    llm.__exit__(None, None, None)  # nothing listens on its port any more

    answer = answered(client, account, chat, "When are refunds paid?")

    assert (answer["provider"], answer["fallback"], answer["finish_reason"]) == ("extractive", True, "stop")
    assert answer["content"].endswith("[1]")


def test_a_stream_that_stalls_keeps_the_partial_text_with_finish_reason_error(client, account, chat, llm, new_uow):
    llm.script(Script.reply("Refunds are paid within 14 days [1].", chunk_chars=5, stall_after=3, stall_seconds=20))

    answer = answered(client, account, chat, "When are refunds paid?")

    assert llm.request_count == 1  # never retried after the first token
    assert (answer["provider"], answer["fallback"], answer["finish_reason"]) == ("openai", False, "error")
    assert answer["content"] == "Refunds are pai"  # three 5-character deltas, then nothing
    assert stored_messages(new_uow, uuid.UUID(chat.conversation_id))[-1].content == "Refunds are pai"


def test_a_stall_holding_a_marker_back_keeps_it_as_text(client, account, chat, llm):
    llm.script(Script.reply(chunks=("Refunds [1", "] are paid."), stall_after=1, stall_seconds=20))

    answer = answered(client, account, chat, "When are refunds paid?")

    assert (answer["provider"], answer["finish_reason"]) == ("openai", "error")
    assert answer["content"] == "Refunds [1"  # the held-back "[1" given as it came, not lost


def test_the_servers_length_is_finish_reason_length(client, account, chat, llm):
    llm.script(Script.reply("Refunds are paid within [1]", finish_reason="length"))

    answer = answered(client, account, chat, "When are refunds paid?")

    assert (answer["provider"], answer["finish_reason"], answer["content"]) == (
        "openai",
        "length",
        "Refunds are paid within [1]",
    )
    assert llm.requests[0].body["max_tokens"] == 1024  # LLM_MAX_TOKENS


def stored(account, client, chat: Chat) -> list[dict]:
    listed = client.get(f"{CONVERSATIONS}/{chat.conversation_id}/messages", headers=account.headers)
    assert listed.status_code == 200
    return list(listed.json()["items"])


def test_openai_without_a_server_is_refused_at_start(tmp_path):
    with pytest.raises(ValidationError, match="ANSWER_PROVIDER=openai needs LLM_BASE_URL"):
        make_settings("sqlite://", tmp_path, answer_provider="openai")
