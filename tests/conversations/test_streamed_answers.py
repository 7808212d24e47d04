"""A conversation's answer streamed as server-sent events (issue 16, "Streaming (SSE)"): the app
served by uvicorn on 127.0.0.1 (the `served` fixture: SQLite and PostgreSQL), read with
httpx-sse. The event order, citations before any text, the deltas adding up to `message_end`'s
stored message, every event's data valid against its schema in the bundled contract (connexion
does not validate event streams), a client that leaves mid-stream (the answer stored as
`cancelled` with exactly the text produced), a provider failing mid-way (an `error` problem
event, then the answer stored as `error`), problems before the stream as plain problem+json
answers, the JSON form unchanged, and the history showing the streamed answer."""

from __future__ import annotations

import dataclasses
import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

import httpx
import httpx_sse
import pytest
from openapi_schema_validator import OAS30ReadValidator, oas30_format_checker

from adapters.answer_extractive import ScriptedAnswerProvider
from persistence.unit_of_work import UnitOfWork
from server.contract import bundle
from services import conversations, knowledge
from tests.conversations.conftest import RETURNS_PAGE, SHIPPING_MANUAL, index, stored_messages
from tests.helpers import register_and_login
from tests.served import Served

WAIT = 20
"""Seconds any wait of these tests may last (bounded; never a timing assertion)."""
STREAM = {"Accept": "text/event-stream"}
PATH = "/api/v1/conversations/{}/messages"


@cache
def _contract() -> dict[str, Any]:
    return bundle()


def event_schema(name: str) -> dict[str, Any]:
    """The schema of the `name` event's data, as the contract lists it (`x-sse-events`)."""
    contract = _contract()
    refs = contract["components"]["schemas"]["MessageEvent"]["x-sse-events"]
    return {**refs[name], "components": contract["components"]}


def assert_valid(name: str, data: Any) -> None:
    """`data` is valid against the contract's schema of the `name` event (nullable, formats)."""
    OAS30ReadValidator(event_schema(name), format_checker=oas30_format_checker).validate(data)


@dataclasses.dataclass
class Talk:
    """A served app's user, their active chatbot knowing two sources, and a conversation."""

    served: Served
    headers: dict[str, str]
    chatbot_id: str
    conversation_id: str

    @property
    def path(self) -> str:
        return PATH.format(self.conversation_id)

    def new_uow(self) -> UnitOfWork:
        return UnitOfWork(self.served.state.session_factory)

    def stored(self) -> list[Any]:
        return stored_messages(self.new_uow, uuid.UUID(self.conversation_id))


@pytest.fixture
def talk(served: Served) -> Talk:
    with served.client() as http:
        account = register_and_login(http)
        chatbot = http.post("/api/v1/chatbots", json={"name": "Shop"}, headers=account.headers)
        assert chatbot.status_code == 201, chatbot.text
        chatbot_id = chatbot.json()["id"]
        active = http.patch(f"/api/v1/chatbots/{chatbot_id}", json={"status": "active"}, headers=account.headers)
        assert active.status_code == 200, active.text
        started = http.post(f"/api/v1/chatbots/{chatbot_id}/conversations", json={}, headers=account.headers)
        assert started.status_code == 201, started.text
    talk = Talk(served, account.headers, chatbot_id, started.json()["id"])
    page = knowledge.KnowledgeSource("web_page", uuid.uuid4(), title="Returns", url="https://shop.example/returns")
    manual = knowledge.KnowledgeSource("document", uuid.uuid4(), title="Shipping manual")
    index(talk.new_uow, uuid.UUID(chatbot_id), page, RETURNS_PAGE)
    index(talk.new_uow, uuid.UUID(chatbot_id), manual, SHIPPING_MANUAL, page=2, heading="Shipping")
    return talk


@contextmanager
def answering_with(served: Served, provider: Any) -> Iterator[None]:
    """The served app's answers given by `provider` (no fallback) for the block."""
    context = served.state.jobs.context
    original = context["conversations"]
    context["conversations"] = dataclasses.replace(original, provider=provider, fallback=None)
    try:
        yield
    finally:
        context["conversations"] = original


def read_events(talk: Talk, content: str) -> tuple[httpx.Response, list[tuple[str, Any]]]:
    """POST the question asking for a stream; the answer and its events ``(name, data)``, each
    checked against its schema."""
    events = []
    with (
        talk.served.client(timeout=WAIT) as http,
        httpx_sse.connect_sse(
            http, "POST", talk.path, json={"content": content}, headers={**talk.headers, **STREAM}
        ) as source,
    ):
        for event in source.iter_sse():
            data = json.loads(event.data)
            assert_valid(event.event, data)
            events.append((event.event, data))
    return source.response, events


def test_a_streamed_answer_starts_cites_then_writes_and_ends_with_the_stored_message(talk: Talk) -> None:
    response, events = read_events(talk, "How long do refunds take?")
    assert response.status_code == 201
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"
    assert "content-length" not in response.headers
    assert "content-encoding" not in response.headers
    names = [name for name, _ in events]
    deltas = names.count("delta")
    assert deltas >= 1
    assert names == ["message_start", "citations"] + ["delta"] * deltas + ["message_end"]
    start, citations, end = events[0][1], events[1][1], events[-1][1]
    message = end
    question, answer = talk.stored()
    assert start == {
        "conversation_id": talk.conversation_id,
        "question_id": str(question.id),
        "answer_id": str(answer.id),
    }
    assert message["id"] == str(answer.id)
    assert message["reply_to"] == str(question.id)
    assert "".join(data["text"] for name, data in events if name == "delta") == message["content"]
    assert citations["citations"] == message["citations"]
    assert [citation["number"] for citation in message["citations"]] == [1, 2]
    assert "14 days" in message["content"]
    assert message["finish_reason"] == "stop"
    assert message["provider"] == "extractive"
    assert answer.content == message["content"]
    assert answer.finish_reason == "stop"
    assert conversations.markers(message["content"])  # cited
    with talk.served.client() as http:  # the history shows it, citations included, as it was streamed
        history = http.get(talk.path, headers=talk.headers)
    assert history.status_code == 200
    assert [item["role"] for item in history.json()["items"]] == ["user", "assistant"]
    assert history.json()["items"][1] == message


def test_nothing_known_streams_dont_know_with_no_citations(talk: Talk) -> None:
    _, events = read_events(talk, "Do you sell bicycles?")
    assert events[1] == ("citations", {"citations": []})
    assert [data for name, data in events if name == "delta"] == [{"text": conversations.DONT_KNOW}]
    assert events[-1][1]["content"] == conversations.DONT_KNOW


def test_the_json_answer_is_unchanged_without_the_accept_header(talk: Talk) -> None:
    with talk.served.client() as http:
        # identity: a JSON answer of 1 KiB or more is gzip for clients that accept it (README
        # "Compression"), and Content-Length then counts the compressed bytes.
        headers = {**talk.headers, "Accept-Encoding": "identity"}
        response = http.post(talk.path, json={"content": "How long do refunds take?"}, headers=headers)
    assert response.status_code == 201
    assert response.headers["content-type"] == "application/json"
    assert response.headers["content-length"] == str(len(response.content))
    answer = response.json()
    assert_valid("message_end", answer)  # the same representation as a stream's last event
    assert answer["role"] == "assistant"
    assert answer["finish_reason"] == "stop"
    assert [message.role for message in talk.stored()] == ["user", "assistant"]


class GatedProvider:
    """Yields a first delta, then waits for `go` (set by the test), then `rest` deltas of one
    full stop each (no words, so the answer is never cut for length); records what it yielded."""

    name = "gated"

    def __init__(self, rest: int) -> None:
        self.go = threading.Event()
        self.rest = rest
        self.yielded: list[str] = []
        self.waited_in_vain = False

    def answer(self, request: Any) -> Iterator[tuple[str, str]]:
        for text in self._texts():
            self.yielded.append(text)
            yield ("delta", text)
        yield ("finish", "stop")

    def _texts(self) -> Iterator[str]:
        yield "Refunds are paid [1]"
        if not self.go.wait(WAIT):
            self.waited_in_vain = True
        for _ in range(self.rest):
            yield "."


def test_a_client_leaving_mid_stream_gets_its_answer_stored_as_cancelled_with_the_text_so_far(talk: Talk) -> None:
    provider = GatedProvider(rest=100_000)
    with answering_with(talk.served, provider), talk.served.client(timeout=WAIT) as http:
        with httpx_sse.connect_sse(
            http, "POST", talk.path, json={"content": "How long do refunds take?"}, headers={**talk.headers, **STREAM}
        ) as source:
            events = source.iter_sse()
            assert [next(events).event for _ in range(3)] == ["message_start", "citations", "delta"]
        provider.go.set()  # the client has gone: the provider goes on until the bridge stops it
        question, answer = wait_for_answer(talk)
    assert answer.finish_reason == "cancelled"
    assert answer.content == "".join(provider.yielded)
    assert answer.content.startswith("Refunds are paid [1]")
    assert len(provider.yielded) < 1 + 100_000  # stopped before the end
    assert answer.reply_to == question.id
    assert answer.provider == "gated"
    assert [citation["number"] for citation in answer.citations] == [1, 2]
    assert not provider.waited_in_vain


def wait_for_answer(talk: Talk) -> list[Any]:
    """The question and its answer, once the answer is stored (the stream's producer stores it
    when the bridge closes it, in its own thread); bounded by WAIT."""
    pause = threading.Event()
    for _ in range(WAIT * 20):
        messages = talk.stored()
        if len(messages) == 2:
            return messages
        pause.wait(0.05)
    raise AssertionError("the answer was not stored")


def test_a_provider_failing_mid_way_sends_an_error_event_then_the_stored_answer(talk: Talk) -> None:
    provider = ScriptedAnswerProvider(
        ["Refunds are paid ", "within 14 days [1]"], name="flaky", fail=RuntimeError("gone"), fail_after=1
    )
    with answering_with(talk.served, provider):
        response, events = read_events(talk, "How long do refunds take?")
    assert response.status_code == 201
    assert [name for name, _ in events] == ["message_start", "citations", "delta", "error", "message_end"]
    problem = events[3][1]
    assert problem["type"] == "/problems/answer-failed"
    assert problem["status"] == 502
    assert problem["instance"] == talk.path
    assert problem["request_id"] == response.headers["x-request-id"]
    message = events[4][1]
    assert message["finish_reason"] == "error"
    assert message["content"] == "Refunds are paid "
    _question, answer = talk.stored()
    assert answer.finish_reason == "error"
    assert answer.content == "Refunds are paid "


def test_a_paused_chatbot_is_a_plain_409_problem_and_nothing_is_stored(talk: Talk) -> None:
    with talk.served.client() as http:
        paused = http.patch(f"/api/v1/chatbots/{talk.chatbot_id}", json={"status": "paused"}, headers=talk.headers)
        assert paused.status_code == 200, paused.text
        response = http.post(talk.path, json={"content": "Refunds?"}, headers={**talk.headers, **STREAM})
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "/problems/chatbot-not-active"
    assert talk.stored() == []


def test_problems_before_the_stream_keep_their_status(talk: Talk) -> None:
    with talk.served.client() as http:
        unknown = http.post(PATH.format(uuid.uuid4()), json={"content": "Refunds?"}, headers={**talk.headers, **STREAM})
        blank = http.post(talk.path, json={"content": "   "}, headers={**talk.headers, **STREAM})
    assert (unknown.status_code, unknown.json()["type"]) == (404, "/problems/not-found")
    assert (blank.status_code, blank.json()["type"]) == (400, "/problems/validation-error")
    assert blank.json()["errors"][0]["pointer"] == "/content"
    assert talk.stored() == []


def test_an_idempotency_key_with_a_stream_is_refused_and_nothing_is_stored(talk: Talk) -> None:
    headers = {**talk.headers, **STREAM, "Idempotency-Key": "stream-1"}
    with talk.served.client() as http:
        refused = http.post(talk.path, json={"content": "Refunds?"}, headers=headers)
        json_first = http.post(
            talk.path, json={"content": "Refunds?"}, headers={**headers, "Accept": "application/json"}
        )
    assert refused.status_code == 400
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["type"] == "/problems/validation-error"
    assert "Idempotency-Key" in refused.json()["detail"]
    assert json_first.status_code == 201  # the key was not used up by the refused stream
    assert "idempotent-replayed" not in json_first.headers
    assert len(talk.stored()) == 2


def test_the_contract_names_the_schema_of_every_event_the_stream_sends() -> None:
    contract = _contract()
    media = contract["paths"]["/api/v1/conversations/{conversation_id}/messages"]["post"]["responses"]["201"]
    assert media["content"]["text/event-stream"]["schema"] == {"$ref": "#/components/schemas/MessageEvent"}
    refs = contract["components"]["schemas"]["MessageEvent"]["x-sse-events"]
    assert refs == {
        "message_start": {"$ref": "#/components/schemas/MessageStartEvent"},
        "citations": {"$ref": "#/components/schemas/CitationsEvent"},
        "delta": {"$ref": "#/components/schemas/DeltaEvent"},
        "error": {"$ref": "#/components/schemas/Problem"},
        "message_end": {"$ref": "#/components/schemas/Message"},
    }


def test_a_json_answer_holds_no_transaction_while_its_provider_composes(talk: Talk) -> None:
    """While a JSON answer is being composed (the provider waits for the test), the same
    conversation can be renamed and another write made: no transaction, write lock (SQLite) or
    row lock (PostgreSQL) is held across the provider's call. Before, the request's one unit of
    work held them until the answer was stored, so the rename waited for the provider."""
    provider = GatedProvider(rest=0)
    answers: list[httpx.Response] = []

    def ask() -> None:
        with talk.served.client(timeout=WAIT) as http:
            answers.append(http.post(talk.path, json={"content": "How long do refunds take?"}, headers=talk.headers))

    with answering_with(talk.served, provider):
        asking = threading.Thread(target=ask)
        asking.start()
        try:
            for _ in range(WAIT * 20):  # the question is stored and the provider has begun
                if provider.yielded:
                    break
                threading.Event().wait(0.05)
            assert provider.yielded == ["Refunds are paid [1]"]
            with talk.served.client(timeout=WAIT / 2) as http:
                renamed = http.patch(
                    f"/api/v1/conversations/{talk.conversation_id}", json={"title": "Refunds"}, headers=talk.headers
                )
                other = http.post(
                    f"/api/v1/chatbots/{talk.chatbot_id}/conversations", json={"title": "Other"}, headers=talk.headers
                )
            assert not answers  # the answer was still being composed while both writes were made
        finally:
            provider.go.set()
            asking.join(WAIT)
    assert renamed.status_code == 200, renamed.text
    assert other.status_code == 201, other.text
    assert [answer.status_code for answer in answers] == [201]
    assert answers[0].json()["content"].startswith("Refunds are paid [1]")
    assert not provider.waited_in_vain
