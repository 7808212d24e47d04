"""The in-memory `FakeChatModel` behaves like the real client's contract (for providers' tests)."""

from __future__ import annotations

import pytest

from adapters.llm_chat import AnswerInterrupted, AnswerProviderUnavailable, ChatDelta, FakeChatModel


def test_it_streams_its_answers_in_order_and_records_the_calls():
    model = FakeChatModel("One [1].", "Two.", chunk_chars=3)

    first = list(model.stream_chat([{"role": "user", "content": "a"}]))
    second = model.complete_chat([{"role": "user", "content": "b"}])
    third = model.complete_chat([{"role": "user", "content": "c"}])

    assert first == [ChatDelta("One"), ChatDelta(" [1"), ChatDelta("]."), ChatDelta(finish_reason="stop")]
    assert (second.text, third.text) == ("Two.", "Two.")
    assert [call[0]["content"] for call in model.calls] == ["a", "b", "c"]


def test_it_raises_the_scripted_errors_where_the_client_would():
    down = AnswerProviderUnavailable("down", reason="circuit_open", attempts=0)
    broken = AnswerInterrupted("broken", reason="stalled", partial_text="Half an")
    model = FakeChatModel(down, broken, chunk_chars=4)

    with pytest.raises(AnswerProviderUnavailable):
        next(model.stream_chat([]))
    received = []
    with pytest.raises(AnswerInterrupted):
        for delta in model.stream_chat([]):
            received.append(delta.text)
    assert "".join(received) == "Half an"
