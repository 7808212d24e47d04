"""The OpenAI-compatible endpoint proved with a client nobody here wrote: the `openai` package,
unmodified, pointed at ``/api/v1/chatbots/{id}`` with a Charter API key, against the whole app
served by uvicorn on 127.0.0.1, on SQLite and PostgreSQL (the `served` fixture). A blocking and
a streamed answer carry ``[n]`` markers and their citations (read from the extra field); a key
without the `chat` scope is `PermissionDeniedError`, a wrong key `AuthenticationError`. The raw
stream is read too: data-only events, each chunk valid against the contract, then ``[DONE]``."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import httpx_sse
import openai
import pytest
from openapi_schema_validator import OAS30Validator, validate

from persistence.unit_of_work import UnitOfWork
from server.contract import bundle
from services import knowledge
from services.conversations import markers
from tests.conversations.conftest import RETURNS_PAGE, SHIPPING_MANUAL, index
from tests.helpers import register_and_login

QUESTION = "How long do refunds take?"
SPEC = bundle()


def _schema(name: str) -> dict[str, Any]:
    """The contract's schema `name`, with its references resolvable."""
    return {**SPEC["components"]["schemas"][name], "components": SPEC["components"]}


def _valid(instance: Any, schema: dict[str, Any]) -> None:
    """Assert `instance` is valid against an OpenAPI 3.0 schema (`nullable` understood)."""
    validate(instance, schema, cls=OAS30Validator)


@dataclass(frozen=True)
class Bot:
    """An active chatbot on the served app, knowing a returns page and a shipping manual."""

    base_url: str
    chat_key: str
    tasks_key: str
    page_id: uuid.UUID


@pytest.fixture
def bot(served) -> Iterator[Bot]:
    with served.client() as http:
        account = register_and_login(http)
        created = http.post("/api/v1/chatbots", json={"name": "Shop"}, headers=account.headers)
        assert created.status_code == 201, created.text
        chatbot_id = created.json()["id"]
        active = http.patch(f"/api/v1/chatbots/{chatbot_id}", json={"status": "active"}, headers=account.headers)
        assert active.status_code == 200, active.text
        keys = {}
        for scope in ("chat", "tasks:read"):
            made = http.post("/api/v1/api-keys", json={"name": scope, "scopes": [scope]}, headers=account.headers)
            assert made.status_code == 201, made.text
            keys[scope] = made.json()["key"]
    factory = served.state.session_factory
    page = knowledge.KnowledgeSource("web_page", uuid.uuid4(), title="Returns", url="https://shop.example/returns")
    manual = knowledge.KnowledgeSource("document", uuid.uuid4(), title="Shipping manual")
    index(lambda: UnitOfWork(factory), uuid.UUID(chatbot_id), page, RETURNS_PAGE)
    index(lambda: UnitOfWork(factory), uuid.UUID(chatbot_id), manual, SHIPPING_MANUAL, page=2, heading="Shipping")
    yield Bot(f"{served.url}/api/v1/chatbots/{chatbot_id}", keys["chat"], keys["tasks:read"], page.id)


def _sdk(bot: Bot, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=bot.base_url, api_key=key, max_retries=0, timeout=30)


def _check_citations(content: str, citations: list[dict[str, Any]], bot: Bot) -> None:
    cited = markers(content)
    assert cited, content
    numbers = [item["number"] for item in citations]
    assert set(cited) <= set(numbers)
    _valid(citations, _schema("ChatCompletionCitations"))
    refunds = citations[cited[0] - 1]
    assert refunds["source"] == {
        "type": "web_page",
        "id": str(bot.page_id),
        "url": "https://shop.example/returns",
        "title": "Returns",
        "page": None,
        "heading": None,
    }
    assert "14 days" in refunds["quote"]


def test_a_blocking_answer_through_the_openai_package(bot):
    with _sdk(bot, bot.chat_key) as client:
        completion = client.chat.completions.create(
            model="shop-bot", messages=[{"role": "user", "content": QUESTION}], temperature=0.2
        )
        raw = client.chat.completions.with_raw_response.create(
            model="shop-bot", messages=[{"role": "user", "content": QUESTION}]
        )
    assert completion.object == "chat.completion"
    assert completion.model == "shop-bot"
    choice = completion.choices[0]
    assert choice.message.role == "assistant" and choice.finish_reason == "stop"
    assert "14 days" in choice.message.content
    assert completion.usage is not None
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens
    assert completion.usage.completion_tokens == len(re.findall(r"\w+", choice.message.content))  # words
    assert completion.model_extra is not None
    _check_citations(choice.message.content, completion.model_extra["citations"], bot)
    body = json.loads(raw.http_response.text)
    _valid(body, _schema("ChatCompletion"))
    assert raw.parse().choices[0].message.content == choice.message.content


def test_a_streamed_answer_through_the_openai_package(bot):
    with _sdk(bot, bot.chat_key) as client:
        stream = client.chat.completions.create(
            model="shop-bot", messages=[{"role": "user", "content": QUESTION}], stream=True
        )
        chunks = list(stream)
    assert {chunk.object for chunk in chunks} == {"chat.completion.chunk"}
    assert len({chunk.id for chunk in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    content = "".join(chunk.choices[0].delta.content or "" for chunk in chunks)
    assert "14 days" in content
    assert [chunk.choices[0].finish_reason for chunk in chunks] == [None] * (len(chunks) - 1) + ["stop"]
    last = chunks[-1]
    assert last.usage is not None and last.usage.completion_tokens > 0
    assert last.model_extra is not None and chunks[0].model_extra is not None
    assert chunks[0].model_extra["citations"] == last.model_extra["citations"]
    _check_citations(content, last.model_extra["citations"], bot)


def test_the_raw_stream_is_data_only_chunks_then_done(bot):
    body = {"model": "shop-bot", "messages": [{"role": "user", "content": QUESTION}], "stream": True}
    headers = {"Authorization": f"Bearer {bot.chat_key}"}
    with (
        httpx.Client(timeout=30) as http,
        httpx_sse.connect_sse(http, "POST", f"{bot.base_url}/chat/completions", json=body, headers=headers) as source,
    ):
        assert source.response.status_code == 200
        assert source.response.headers["content-type"].startswith("text/event-stream")
        assert source.response.headers["cache-control"] == "no-cache"
        events = list(source.iter_sse())
    assert {event.event for event in events} == {"message"}  # no `event:` field: the default name
    assert events[-1].data == "[DONE]"
    chunks = [json.loads(event.data) for event in events[:-1]]
    assert len(chunks) >= 3
    for chunk in chunks:
        _valid(chunk, _schema("ChatCompletionChunk"))
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert "citations" in chunks[0] and "citations" in chunks[-1] and "usage" in chunks[-1]


def test_a_key_without_the_chat_scope_is_permission_denied(bot):
    with _sdk(bot, bot.tasks_key) as client, pytest.raises(openai.PermissionDeniedError) as refused:
        client.chat.completions.create(model="x", messages=[{"role": "user", "content": QUESTION}])
    assert refused.value.status_code == 403
    assert refused.value.body["type"] == "/problems/insufficient-scope"  # type: ignore[index]


def test_a_wrong_key_is_an_authentication_error(bot):
    wrong = bot.chat_key[:-4] + ("AAAA" if not bot.chat_key.endswith("AAAA") else "BBBB")
    with _sdk(bot, wrong) as client, pytest.raises(openai.AuthenticationError) as refused:
        client.chat.completions.create(model="x", messages=[{"role": "user", "content": QUESTION}], stream=True)
    assert refused.value.status_code == 401
