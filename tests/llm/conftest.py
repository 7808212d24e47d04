"""Fixtures of the chat-completions tests: the fake OpenAI-compatible server and a client of it
with short, test-sized timeouts and backoff (every wait bounded)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from adapters.llm_chat import OpenAIChatClient
from tests.llm_double import FakeLLM

MESSAGES = [
    {"role": "system", "content": "Passages:\n\n[1] Source: Guide\nOpening hours.\n\n[2] Source: FAQ\nPrices."},
    {"role": "user", "content": "When are you open?"},
]
"""A prompt numbering two passages: the fake's default reply cites [1] and [2]."""


@pytest.fixture
def llm() -> Iterator[FakeLLM]:
    with FakeLLM() as fake:
        yield fake


@pytest.fixture
def make_client(llm: FakeLLM) -> Iterator[Callable[..., OpenAIChatClient]]:
    """Builds clients of the fake: 3 attempts, 10-20 ms backoff, a 0.5 s idle timeout, a breaker
    opening after 3 failures for 60 s, unless the test says otherwise."""
    made: list[OpenAIChatClient] = []

    def make(**overrides: Any) -> OpenAIChatClient:
        options: dict[str, Any] = {
            "base_url": llm.base_url,
            "api_key": llm.api_key,
            "model": "fake-model-1",
            "connect_timeout_seconds": 2.0,
            "idle_timeout_seconds": 0.5,
            "max_seconds": 20.0,
            "retry_attempts": 3,
            "retry_wait_seconds": 0.01,
            "retry_max_wait_seconds": 0.05,
            "breaker_failures": 3,
            "breaker_reset_seconds": 60.0,
            **overrides,
        }
        client = OpenAIChatClient(**options)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()
