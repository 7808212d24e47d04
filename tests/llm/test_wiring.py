"""The LLM_* settings reach the client `server.worker.make_chat_client` builds."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from adapters.llm_chat import AnswerProviderUnavailable
from server.worker import make_chat_client
from tests.helpers import make_settings
from tests.llm.conftest import MESSAGES
from tests.llm_double import Script


def test_without_a_base_url_there_is_no_client(tmp_path):
    assert make_chat_client(make_settings("sqlite://", tmp_path)) is None


def test_the_settings_configure_the_client(llm, tmp_path):
    settings = make_settings(
        "sqlite://",
        tmp_path,
        llm_base_url=llm.base_url,
        llm_api_key=llm.api_key,
        llm_model="served-model",
        llm_max_tokens=3,
        llm_retry_attempts=2,
        llm_retry_wait_seconds=0,
        llm_breaker_failures=2,
    )
    client = make_chat_client(settings)
    assert client is not None
    llm.script(Script.fail(500), Script.reply(), Script.fail(500), Script.fail(500))
    try:
        answer = client.complete_chat(MESSAGES)  # one retry (2 attempts), max_tokens 3
        with pytest.raises(AnswerProviderUnavailable, match="after 2 attempt"):  # two failures open it
            client.complete_chat(MESSAGES)
        with pytest.raises(AnswerProviderUnavailable, match="circuit breaker is open"):
            client.complete_chat(MESSAGES)
    finally:
        client.close()

    assert (answer.text, answer.finish_reason) == ("Answer from the", "length")
    assert [seen.body["model"] for seen in llm.requests] == ["served-model"] * 4
    assert llm.requests[0].headers["authorization"] == f"Bearer {llm.api_key}"


def test_a_base_url_must_be_http(tmp_path):
    with pytest.raises(ValidationError):
        make_settings("sqlite://", tmp_path, llm_base_url="file:///etc/passwd")
