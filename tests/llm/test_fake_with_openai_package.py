"""The fake server speaks the wire format: the `openai` package, unmodified, is its client
(blocking, streamed, its typed errors). The same package will later point at Charter's own
`/api/v1/chatbots/{id}/chat/completions`."""

from __future__ import annotations

import openai
import pytest

from tests.llm.conftest import MESSAGES
from tests.llm_double import Script


@pytest.fixture
def client(llm):
    with openai.OpenAI(base_url=llm.base_url, api_key=llm.api_key, max_retries=0, timeout=10) as client:
        yield client


def test_a_blocking_completion(llm, client):
    completion = client.chat.completions.create(model="fake-model-1", messages=MESSAGES)

    assert completion.object == "chat.completion"
    assert completion.model == "fake-model-1"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == "Answer from the passages [1] and [2]."
    assert completion.choices[0].finish_reason == "stop"
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens, completion.usage.total_tokens) == (
        14,
        7,
        21,
    )


def test_a_streamed_completion(llm, client):
    chunks = list(
        client.chat.completions.create(
            model="fake-model-1", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )

    assert {chunk.object for chunk in chunks} == {"chat.completion.chunk"}
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert text == "Answer from the passages [1] and [2]."
    assert [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices][-1] == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == 7


def test_a_stream_without_usage_asked_sends_none(llm, client):
    chunks = list(client.chat.completions.create(model="fake-model-1", messages=MESSAGES, stream=True))

    assert all(chunk.usage is None and chunk.choices for chunk in chunks)


@pytest.mark.parametrize(
    ("script", "error"),
    [
        (Script.fail(429, retry_after=1), openai.RateLimitError),
        (Script.fail(500), openai.InternalServerError),
        (Script.fail(400), openai.BadRequestError),
    ],
)
def test_scripted_errors_are_the_packages_typed_errors(llm, client, script, error):
    llm.script(script)

    with pytest.raises(error) as raised:
        client.chat.completions.create(model="fake-model-1", messages=MESSAGES)

    assert raised.value.status_code == script.status
    assert raised.value.body["message"] == f"Scripted error {script.status}"


def test_a_wrong_key_is_an_authentication_error(llm):
    with (
        openai.OpenAI(base_url=llm.base_url, api_key="sk-wrong", max_retries=0, timeout=10) as client,
        pytest.raises(openai.AuthenticationError),
    ):
        client.chat.completions.create(model="fake-model-1", messages=MESSAGES)
