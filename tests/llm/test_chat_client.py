"""`OpenAIChatClient` against the fake OpenAI-compatible server on 127.0.0.1: answers blocking
and streamed, retries (exact request counts), the circuit breaker, and streams that stall, drop
or run out of time. Every wait is bounded by the client's short test timeouts."""

from __future__ import annotations

import threading
import time

import pytest

from adapters.llm_chat import AnswerInterrupted, AnswerProviderUnavailable, ChatDelta, ChatUsage
from services.answer_prompt import CitationMarkers
from tests.llm.conftest import MESSAGES
from tests.llm_double import Script

ANSWER = "Answer from the passages [1] and [2]."


def text_of(deltas: list[ChatDelta]) -> str:
    return "".join(delta.text for delta in deltas)


def test_a_blocking_answer(llm, make_client):
    answer = make_client(max_tokens=200).complete_chat(MESSAGES, temperature=0.2)

    assert answer.text == ANSWER
    assert answer.finish_reason == "stop"
    assert answer.usage == ChatUsage(prompt_tokens=14, completion_tokens=7)
    [seen] = llm.requests
    assert seen.path == "/v1/chat/completions"
    assert seen.headers["authorization"] == f"Bearer {llm.api_key}"
    assert seen.body["model"] == "fake-model-1"
    assert seen.body["messages"] == MESSAGES
    assert seen.body["max_tokens"] == 200
    assert seen.body["temperature"] == 0.2
    assert "stream" not in seen.body or seen.body["stream"] is False


def test_a_streamed_answer_comes_in_deltas_and_ends_with_the_finish_reason_and_usage(llm, make_client):
    deltas = list(make_client().stream_chat(MESSAGES))

    assert text_of(deltas) == ANSWER
    assert len([delta for delta in deltas if delta.text]) == 13  # 3-character deltas
    assert all(delta.finish_reason is None for delta in deltas[:-1])
    assert deltas[-1] == ChatDelta(finish_reason="stop", usage=ChatUsage(prompt_tokens=14, completion_tokens=7))
    [seen] = llm.requests
    assert seen.body["stream"] is True
    assert seen.body["stream_options"] == {"include_usage": True}
    assert "temperature" not in seen.body  # the server's default


def test_an_answer_cut_by_max_tokens_finishes_with_length(llm, make_client):
    client = make_client()

    deltas = list(client.stream_chat(MESSAGES, max_tokens=3))
    answer = client.complete_chat(MESSAGES, max_tokens=3)

    assert text_of(deltas) == answer.text == "Answer from the"
    assert deltas[-1].finish_reason == answer.finish_reason == "length"


def test_server_errors_and_rate_limits_are_retried_until_an_answer_comes(llm, make_client):
    llm.script(Script.fail(500), Script.fail(429, retry_after=0), Script.fail(503))
    client = make_client(retry_attempts=4, breaker_failures=5)

    assert text_of(list(client.stream_chat(MESSAGES))) == ANSWER
    assert llm.request_count == 4
    assert client.breaker_state == "closed"


def test_a_blocking_answer_is_retried_too(llm, make_client):
    llm.script(Script.fail(502))

    assert make_client().complete_chat(MESSAGES).text == ANSWER
    assert llm.request_count == 2


def test_a_slow_first_token_times_out_and_is_retried(llm, make_client):
    llm.script(Script.reply(first_token_delay=10))  # the idle timeout is 0.5 s

    assert text_of(list(make_client().stream_chat(MESSAGES))) == ANSWER
    assert llm.request_count == 2


def test_when_every_attempt_fails_the_provider_is_unavailable(llm, make_client):
    llm.script(*[Script.fail(500)] * 3)

    with pytest.raises(AnswerProviderUnavailable) as raised:
        list(make_client().stream_chat(MESSAGES))

    assert (raised.value.reason, raised.value.attempts, raised.value.status_code) == ("retries_exhausted", 3, 500)
    assert llm.request_count == 3


def test_an_unreachable_server_is_unavailable_after_the_retries(make_client):
    from tests.processes import free_port

    client = make_client(base_url=f"http://127.0.0.1:{free_port()}/v1")

    with pytest.raises(AnswerProviderUnavailable) as raised:
        client.complete_chat(MESSAGES)

    assert (raised.value.reason, raised.value.attempts, raised.value.status_code) == ("retries_exhausted", 3, None)


@pytest.mark.parametrize("status", [400, 404, 422])
def test_a_client_error_is_not_retried(llm, make_client, status):
    llm.script(Script.fail(status))

    with pytest.raises(AnswerProviderUnavailable) as raised:
        list(make_client().stream_chat(MESSAGES))

    assert (raised.value.reason, raised.value.attempts, raised.value.status_code) == ("rejected", 1, status)
    assert llm.request_count == 1


def test_a_wrong_api_key_is_rejected_once_and_does_not_open_the_breaker(llm, make_client):
    client = make_client(api_key="sk-wrong", breaker_failures=2)

    for _ in range(3):
        with pytest.raises(AnswerProviderUnavailable) as raised:
            client.complete_chat(MESSAGES)
        assert (raised.value.reason, raised.value.status_code) == ("rejected", 401)

    assert llm.request_count == 3
    assert client.breaker_state == "closed"


def test_the_breaker_opens_after_the_failures_and_then_fails_fast_without_a_request(llm, make_client):
    llm.script(*[Script.fail(500)] * 3)
    client = make_client(retry_attempts=1, breaker_failures=3)
    for _ in range(3):
        with pytest.raises(AnswerProviderUnavailable) as raised:
            list(client.stream_chat(MESSAGES))
        assert raised.value.reason == "retries_exhausted"
    assert client.breaker_state == "open"

    for call in (lambda: list(client.stream_chat(MESSAGES)), lambda: client.complete_chat(MESSAGES)):
        with pytest.raises(AnswerProviderUnavailable) as raised:
            call()
        assert (raised.value.reason, raised.value.attempts) == ("circuit_open", 0)

    assert llm.request_count == 3  # the two calls after it opened reached nothing


def test_retries_stop_when_the_breaker_opens(llm, make_client):
    llm.script(*[Script.fail(503)] * 5)
    client = make_client(retry_attempts=5, breaker_failures=2)

    with pytest.raises(AnswerProviderUnavailable) as raised:
        client.complete_chat(MESSAGES)

    assert (raised.value.reason, raised.value.attempts) == ("circuit_open", 2)
    assert llm.request_count == 2


def test_success_resets_the_failure_count(llm, make_client):
    llm.script(Script.fail(500), Script.reply(), Script.fail(500), Script.reply())
    client = make_client(retry_attempts=1, breaker_failures=2)

    for expected in ("failure", "answer", "failure", "answer"):
        try:
            client.complete_chat(MESSAGES)
            outcome = "answer"
        except AnswerProviderUnavailable:
            outcome = "failure"
        assert outcome == expected

    assert client.breaker_state == "closed"
    assert llm.request_count == 4


def _open_the_breaker(llm, client, failures: int) -> None:
    llm.script(*[Script.fail(500)] * failures)
    for _ in range(failures):
        with pytest.raises(AnswerProviderUnavailable):
            client.complete_chat(MESSAGES)
    assert client.breaker_state == "open"


def test_after_the_reset_timeout_one_trial_call_closes_the_breaker(llm, make_client):
    client = make_client(retry_attempts=1, breaker_failures=2, breaker_reset_seconds=0.3)
    _open_the_breaker(llm, client, 2)
    with pytest.raises(AnswerProviderUnavailable, match="circuit breaker is open"):
        client.complete_chat(MESSAGES)
    assert llm.request_count == 2

    time.sleep(0.4)  # past the reset timeout: the next call is the trial

    assert text_of(list(client.stream_chat(MESSAGES))) == ANSWER
    assert client.breaker_state == "closed"
    assert llm.request_count == 3


def test_a_failed_trial_call_opens_the_breaker_again(llm, make_client):
    client = make_client(retry_attempts=1, breaker_failures=2, breaker_reset_seconds=0.3)
    _open_the_breaker(llm, client, 2)
    time.sleep(0.4)
    llm.script(Script.fail(503))

    with pytest.raises(AnswerProviderUnavailable) as trial:
        client.complete_chat(MESSAGES)
    with pytest.raises(AnswerProviderUnavailable) as after:
        client.complete_chat(MESSAGES)

    assert (trial.value.reason, after.value.reason) == ("retries_exhausted", "circuit_open")
    assert client.breaker_state == "open"
    assert llm.request_count == 3


def test_a_stream_that_stalls_mid_way_fails_after_the_idle_timeout_with_its_partial_text(llm, make_client):
    llm.script(Script.reply(stall_after=4, stall_seconds=20))
    received: list[str] = []

    with pytest.raises(AnswerInterrupted) as raised:
        for delta in make_client().stream_chat(MESSAGES):
            received.append(delta.text)

    assert raised.value.reason == "stalled"
    assert raised.value.partial_text == "".join(received) == ANSWER[:12]
    assert llm.request_count == 1  # never replayed after the first token


def test_a_connection_dropped_mid_stream_is_an_interruption_not_a_retry(llm, make_client):
    llm.script(Script.reply(drop_after=5))
    received: list[str] = []

    with pytest.raises(AnswerInterrupted) as raised:
        for delta in make_client().stream_chat(MESSAGES):
            received.append(delta.text)

    assert raised.value.reason == "dropped"
    assert raised.value.partial_text == "".join(received) == ANSWER[:15]
    assert llm.request_count == 1


def test_interrupted_streams_count_as_breaker_failures(llm, make_client):
    llm.script(Script.reply(drop_after=1), Script.reply(drop_after=1))
    client = make_client(breaker_failures=2)
    for _ in range(2):
        with pytest.raises(AnswerInterrupted):
            list(client.stream_chat(MESSAGES))

    with pytest.raises(AnswerProviderUnavailable) as raised:
        list(client.stream_chat(MESSAGES))

    assert raised.value.reason == "circuit_open"
    assert llm.request_count == 2


def test_the_answers_time_budget_cuts_a_slow_stream_whatever_the_idle_timeout(llm, make_client):
    llm.script(Script.reply(stall_after=2, stall_seconds=20))
    client = make_client(idle_timeout_seconds=25, max_seconds=0.5)  # the stall alone would end and the answer finish

    with pytest.raises(AnswerInterrupted) as raised:
        list(client.stream_chat(MESSAGES))

    assert raised.value.reason == "too_slow"
    assert raised.value.partial_text == ANSWER[:6]


def test_streams_run_side_by_side_the_breaker_does_not_serialize_them(llm, make_client):
    llm.script(Script.reply(first_token_delay=20), Script.reply(first_token_delay=20))
    client = make_client(idle_timeout_seconds=25)
    answers: list[str] = []

    def ask() -> None:
        answers.append(text_of(list(client.stream_chat(MESSAGES))))

    threads = [threading.Thread(target=ask, daemon=True) for _ in range(2)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 10
    while llm.request_count < 2 and time.monotonic() < deadline:  # both held by the fake at once
        time.sleep(0.01)
    both_in_flight = llm.request_count
    llm.release()
    for thread in threads:
        thread.join(timeout=10)

    assert both_in_flight == 2
    assert answers == [ANSWER, ANSWER]


def test_markers_split_across_deltas_map_to_the_passages(llm, make_client):
    llm.script(Script(chunks=("Open at 9 [", "1", "] and 5 [2", "][", "3", "]; see [1, 7", "]. [sic", "]")))
    markers = CitationMarkers(passages=2)
    shown = []

    for delta in make_client().stream_chat(MESSAGES):
        shown.append(markers.feed(delta.text))
    shown.append(markers.close())

    assert "".join(shown) == "Open at 9 [1] and 5 [2]; see [1]. [sic]"
    assert markers.cited == [1, 2]


def test_the_time_budget_also_bounds_the_wait_for_a_first_token(llm, make_client):
    llm.script(*[Script.reply(first_token_delay=20)] * 3)
    client = make_client(idle_timeout_seconds=25, max_seconds=0.5)

    with pytest.raises(AnswerProviderUnavailable) as raised:
        list(client.stream_chat(MESSAGES))

    assert raised.value.reason == "retries_exhausted"
    assert llm.request_count == 1  # no attempt started once the budget was spent


def test_a_reader_that_stops_early_closes_the_stream_and_the_breaker_stays_closed(llm, make_client):
    client = make_client(breaker_failures=1)
    deltas = client.stream_chat(MESSAGES)

    assert next(deltas).text == "Ans"
    deltas.close()

    assert client.breaker_state == "closed"
    assert text_of(list(client.stream_chat(MESSAGES))) == ANSWER
    assert llm.request_count == 2
