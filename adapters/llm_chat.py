"""Chat completions from any OpenAI-compatible server (issue 16, the `openai` answer provider):
the client, its resilience, and an in-memory fake.

`OpenAIChatClient` sends `POST {base_url}/chat/completions` with the `openai` package (base URL,
API key, streaming, timeouts; its own retries are switched off so ours are the only ones) and
turns the answer into plain values: `ChatDelta`s while streaming, a `ChatAnswer` when blocking.

Resilience, and the rules a caller can rely on:

* **Timeouts.** `connect_timeout_seconds` to connect; `idle_timeout_seconds` for the answer's
  headers and then for *each* next piece of the stream (the per-token idle timeout: a server
  that stops sending mid-stream fails after that long, never hangs a thread); `max_seconds` for a
  whole answer, retries included: a stream's watchdog shuts its connection down when it runs out
  (so even a server that sends only keep-alive comments is cut off); a blocking answer's reads
  wait no longer than what is left of it.
* **Retries** (stamina: exponential backoff with jitter, `Retry-After` honoured up to
  `retry_max_wait_seconds`) on connection errors, timeouts, 408, 429 and 5xx, at most
  `retry_attempts` attempts in all, and **only before the first token** has been yielded: a
  half-streamed answer is never replayed. Other 4xx (a bad key, a bad model name) are not retried.
* **Circuit breaker** (pybreaker, per process: `adapters.resilience`, named ``answer_provider``):
  every attempt that fails with a retryable error,
  and every stream that breaks after its first token, counts as a failure, and every complete
  answer (or a stream its reader closed early) as a success; `breaker_failures` failures in a row
  open the breaker, and for `breaker_reset_seconds` every call fails at once
  without contacting the server. Then one trial call is let through (half-open): success closes
  the breaker, failure opens it again. A rejected request (4xx other than 408/429) counts
  neither way: the server is up. pybreaker holds a lock for the whole guarded call, which would
  serialize every answer of the process, so the network call runs outside it: the breaker is
  asked before each attempt (`adapters.resilience.Breaker.admit`) and told the outcome after.
* **Typed errors**, both subclasses of `ChatError`: `AnswerProviderUnavailable` when no answer
  started (breaker open, retries exhausted, request rejected): the caller falls back to the
  extractive provider with `fallback: true`; `AnswerInterrupted` when the stream broke after its
  first token, carrying the text received so far (`partial_text`).

Finish reasons: the server's `length` is `length`; `stop` and anything else (`content_filter`,
`tool_calls`, none at all) is `stop`.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar

import openai
import stamina
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from adapters.resilience import Breaker, DependencyUnavailable

T = TypeVar("T")

FinishReason = Literal["stop", "length"]
"""Why an answer ended: `stop` (the model finished) or `length` (it hit `max_tokens`)."""

ChatMessage = Mapping[str, str]
"""One message of the conversation sent: ``{"role": "system" | "user" | "assistant", "content": str}``."""

RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
"""Statuses retried (and counted by the breaker): timeouts, rate limits, server errors. Other 5xx
are retried too (`_retryable_status`); other 4xx are the request's fault and are not."""


@dataclass(frozen=True)
class ChatUsage:
    """Tokens the server says the answer used (when it says: not every server does)."""

    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class ChatDelta:
    """One piece of a streamed answer: some `text`, or, last of all, the `finish_reason` with the
    `usage` when the server sent it (the last delta's `text` is empty)."""

    text: str = ""
    finish_reason: FinishReason | None = None
    usage: ChatUsage | None = None


@dataclass(frozen=True)
class ChatAnswer:
    """A whole answer: its text, why it ended, and the usage when the server sent it."""

    text: str
    finish_reason: FinishReason
    usage: ChatUsage | None = None


class ChatError(Exception):
    """The chat server gave no (complete) answer; see the two subclasses."""


class AnswerProviderUnavailable(ChatError):
    """No answer started: fall back (issue 16: the extractive provider answers, `fallback: true`).

    Attributes:
        reason: ``circuit_open`` (failed fast, the server was not contacted), ``retries_exhausted``
            (every attempt failed with a retryable error, or the time budget ran out) or
            ``rejected`` (a 4xx other than 408/429: not retried).
        attempts: requests sent for this answer (0 when the breaker was open).
        status_code: the last HTTP status received, if any.
    """

    def __init__(
        self,
        message: str,
        *,
        reason: Literal["circuit_open", "retries_exhausted", "rejected"],
        attempts: int,
        status_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.attempts = attempts
        self.status_code = status_code


class AnswerInterrupted(ChatError):
    """The stream broke after its first token; it is not retried (an answer is never replayed).

    Attributes:
        reason: ``stalled`` (nothing came for `idle_timeout_seconds`), ``dropped`` (the connection
            broke or the server sent an error event) or ``too_slow`` (`max_seconds` ran out).
        partial_text: the text yielded before the break.
    """

    def __init__(self, message: str, *, reason: Literal["stalled", "dropped", "too_slow"], partial_text: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.partial_text = partial_text


class ChatModel(Protocol):
    """What an answer provider needs of a chat model (`OpenAIChatClient`, `FakeChatModel`)."""

    def stream_chat(
        self, messages: Sequence[ChatMessage], *, max_tokens: int | None = None, temperature: float | None = None
    ) -> Iterator[ChatDelta]:
        """Text deltas, then one last delta with the finish reason (and usage).

        Raises:
            AnswerProviderUnavailable: before the first delta, when no answer could be started.
            AnswerInterrupted: after some deltas, when the stream broke.
        """
        ...

    def complete_chat(
        self, messages: Sequence[ChatMessage], *, max_tokens: int | None = None, temperature: float | None = None
    ) -> ChatAnswer:
        """The whole answer at once. Raises `AnswerProviderUnavailable`."""
        ...


class _Retryable(Exception):
    """An attempt failed in a way worth another attempt (internal: never leaves this module)."""

    def __init__(self, cause: Exception, *, status_code: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.status_code = status_code
        self.retry_after = retry_after


@dataclass
class _Watchdog:
    """Closes the response of an attempt when the answer's time budget runs out, which makes a
    read blocked on the socket fail at once (the budget then wins over any idle timeout)."""

    deadline: float
    expired: bool = False
    _timer: threading.Timer | None = field(default=None, repr=False)

    def watch(self, stream: openai.Stream[ChatCompletionChunk]) -> None:
        self.cancel()

        def expire() -> None:
            self.expired = True
            _shut_down(stream)

        self._timer = threading.Timer(max(0.0, self.deadline - time.monotonic()), expire)
        self._timer.daemon = True
        self._timer.start()

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def _shut_down(stream: openai.Stream[ChatCompletionChunk]) -> None:
    """Shut the stream's socket down, which wakes a read blocked on it in another thread at once
    (closing the response from another thread does not), then close the response."""
    network_stream = stream.response.extensions.get("network_stream")
    sock = network_stream.get_extra_info("socket") if network_stream is not None else None
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(Exception):
        stream.close()


class OpenAIChatClient:
    """A `ChatModel` on an OpenAI-compatible chat-completions server (module docstring: the
    timeouts, retries, breaker and errors). Thread-safe: one per process, shared by every answer
    (the breaker's state is per process).

    Args:
        base_url: the API root the server's paths hang off, e.g. ``https://api.openai.com/v1``
            (``/chat/completions`` is appended).
        api_key: sent as ``Authorization: Bearer``; servers that need none accept any value.
        model: the model name sent with every request.
        connect_timeout_seconds: to open a connection.
        idle_timeout_seconds: for the answer's headers and for each next piece of a stream.
        max_seconds: one answer's whole budget, retries and backoff included.
        max_tokens: the default `max_tokens` when a call gives none.
        retry_attempts: attempts in all (1: no retry).
        retry_wait_seconds: the first backoff (doubles each time, plus up to as much jitter).
        retry_max_wait_seconds: the longest backoff, and the cap on a server's `Retry-After`.
        breaker_failures: consecutive failed attempts that open the breaker.
        breaker_reset_seconds: how long it stays open before a trial call.
        breaker: the process's ``answer_provider`` breaker (`adapters.resilience.join`, which
            readiness and /metrics report); None: one of its own, unregistered (tests).
    """

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        model: str,
        connect_timeout_seconds: float = 5.0,
        idle_timeout_seconds: float = 30.0,
        max_seconds: float = 120.0,
        max_tokens: int = 1024,
        retry_attempts: int = 3,
        retry_wait_seconds: float = 0.5,
        retry_max_wait_seconds: float = 5.0,
        breaker_failures: int = 5,
        breaker_reset_seconds: float = 30.0,
        breaker: Breaker | None = None,
    ) -> None:
        self.model = model
        self.connect_timeout_seconds = connect_timeout_seconds
        self.idle_timeout_seconds = idle_timeout_seconds
        self.max_seconds = max_seconds
        self.max_tokens = max_tokens
        self.retry_attempts = retry_attempts
        self.retry_wait_seconds = retry_wait_seconds
        self.retry_max_wait_seconds = retry_max_wait_seconds
        timeout = openai.Timeout(
            connect=connect_timeout_seconds, read=idle_timeout_seconds, write=idle_timeout_seconds, pool=5.0
        )
        self.client = openai.OpenAI(
            base_url=base_url,
            api_key=api_key,
            # Explicit, so the package reads none of OPENAI_ORG_ID / OPENAI_PROJECT_ID from the environment.
            organization=None,
            project=None,
            timeout=timeout,
            max_retries=0,  # ours are the only retries: counted, and never after the first token
            http_client=openai.DefaultHttpx2Client(timeout=timeout, trust_env=False, follow_redirects=False),
        )
        self.breaker = breaker or Breaker(
            "answer_provider", failures=breaker_failures, reset_seconds=breaker_reset_seconds
        )

    @property
    def breaker_state(self) -> str:
        """The circuit breaker's state: ``closed``, ``open`` or ``half_open``."""
        return self.breaker.state

    def stream_chat(
        self, messages: Sequence[ChatMessage], *, max_tokens: int | None = None, temperature: float | None = None
    ) -> Iterator[ChatDelta]:
        """Stream an answer to `messages` (OpenAI chat messages, oldest first).

        Nothing is sent until the iterator is first advanced. Yields `ChatDelta`s with text, then
        one with the finish reason and usage (if the server sent it). `max_tokens` defaults to the
        client's; `temperature` (0 to 2) to the server's. Closing the iterator early closes the
        connection.

        Raises:
            AnswerProviderUnavailable: no answer started (breaker open, retries exhausted, rejected).
            AnswerInterrupted: the stream broke after its first delta (`partial_text` holds the text).
        """
        watchdog = _Watchdog(deadline=time.monotonic() + self.max_seconds)
        request = self._request(messages, max_tokens=max_tokens, temperature=temperature)
        try:
            stream, chunks, first = self._with_retries(lambda: self._open_stream(request, watchdog), watchdog)
            yield from self._rest_of_stream(stream, chunks, first, watchdog)
        finally:
            watchdog.cancel()

    def complete_chat(
        self, messages: Sequence[ChatMessage], *, max_tokens: int | None = None, temperature: float | None = None
    ) -> ChatAnswer:
        """The whole answer to `messages` in one (non-streamed) response; arguments as `stream_chat`.

        Raises:
            AnswerProviderUnavailable: no answer (breaker open, retries exhausted, rejected).
        """
        deadline = time.monotonic() + self.max_seconds
        request = self._request(messages, max_tokens=max_tokens, temperature=temperature)

        def attempt() -> ChatAnswer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _Retryable(TimeoutError("the answer's time budget ran out"))
            timeout = openai.Timeout(
                connect=min(self.connect_timeout_seconds, remaining),
                read=min(self.idle_timeout_seconds, remaining),
                write=min(self.idle_timeout_seconds, remaining),
                pool=5.0,
            )
            completion = self._guarded(lambda: self.client.chat.completions.create(**request, timeout=timeout))
            assert isinstance(completion, ChatCompletion)
            self.breaker.succeeded()
            choice = completion.choices[0] if completion.choices else None
            return ChatAnswer(
                text=(choice.message.content or "") if choice else "",
                finish_reason=_finish_reason(choice.finish_reason if choice else None),
                usage=_usage(completion.usage),
            )

        return self._with_retries(attempt, _Watchdog(deadline=deadline))

    def close(self) -> None:
        """Close the connection pool."""
        self.client.close()

    # -- internals ----------------------------------------------------------------------------

    def _request(
        self, messages: Sequence[ChatMessage], *, max_tokens: int | None, temperature: float | None
    ) -> dict[str, Any]:
        request: dict[str, Any] = {
            "model": self.model,
            "messages": [dict(message) for message in messages],
            "max_tokens": max_tokens if max_tokens is not None else self.max_tokens,
        }
        if temperature is not None:
            request["temperature"] = temperature
        return request

    def _with_retries(self, attempt: Callable[[], T], watchdog: _Watchdog) -> T:
        """Run `attempt` until it succeeds, retrying `_Retryable` failures (stamina), and turn the
        outcome into the module's typed errors."""
        sent = 0
        try:
            for retry in stamina.retry_context(
                on=self._backoff,
                attempts=self.retry_attempts,
                timeout=max(0.0, watchdog.deadline - time.monotonic()),
                wait_initial=self.retry_wait_seconds,
                wait_max=self.retry_max_wait_seconds,
                wait_jitter=self.retry_wait_seconds,
            ):
                with retry:
                    if time.monotonic() >= watchdog.deadline:
                        raise AnswerProviderUnavailable(
                            "the answer's time budget ran out before an answer started",
                            reason="retries_exhausted",
                            attempts=sent,
                        )
                    self.breaker.admit()
                    sent += 1
                    result: T = attempt()
                    return result
        except DependencyUnavailable as error:
            raise AnswerProviderUnavailable(
                "the chat server's circuit breaker is open", reason="circuit_open", attempts=sent
            ) from error
        except _Retryable as error:
            raise AnswerProviderUnavailable(
                f"no answer after {sent} attempt(s): {error}",
                reason="retries_exhausted",
                attempts=sent,
                status_code=error.status_code,
            ) from error.cause
        except openai.APIStatusError as error:
            raise AnswerProviderUnavailable(
                f"the chat server rejected the request ({error.status_code})",
                reason="rejected",
                attempts=sent,
                status_code=error.status_code,
            ) from error
        raise AssertionError("unreachable: stamina makes at least one attempt")  # pragma: no cover

    def _backoff(self, error: Exception) -> bool | float:
        """stamina's hook: retry `_Retryable` only, after the server's `Retry-After` when it gave one."""
        if not isinstance(error, _Retryable):
            return False
        if error.retry_after is not None:
            return min(max(error.retry_after, 0.0), self.retry_max_wait_seconds)
        return True

    def _guarded(self, call: Callable[[], T]) -> T:
        """One request: its failure classified (`_Retryable` or a rejection passed on) and its
        outcome told to the breaker."""
        try:
            result: T = call()
        except openai.APIStatusError as error:
            if not _retryable_status(error.status_code):
                raise  # rejected: the server is up; not counted, not retried
            self.breaker.failed(error)
            raise _Retryable(error, status_code=error.status_code, retry_after=_retry_after(error)) from error
        except (openai.APIConnectionError, openai.APIError) as error:  # APITimeoutError is a connection error
            self.breaker.failed(error)
            raise _Retryable(error) from error
        return result

    def _open_stream(
        self, request: dict[str, Any], watchdog: _Watchdog
    ) -> tuple[openai.Stream[ChatCompletionChunk], Iterator[ChatCompletionChunk], list[ChatDelta]]:
        """One attempt at a stream: send the request and read up to the first text or finish
        reason (what may still be retried). Returns the stream, its chunk iterator and the deltas read."""
        stream: openai.Stream[ChatCompletionChunk] | None = None
        chunks: Iterator[ChatCompletionChunk] = iter(())

        def opened() -> list[ChatDelta]:
            nonlocal stream, chunks
            stream = self.client.chat.completions.create(**request, stream=True, stream_options={"include_usage": True})
            watchdog.watch(stream)
            chunks = iter(stream)  # kept: the rest of the stream is read from it after the first token
            read: list[ChatDelta] = []
            for chunk in chunks:
                read.extend(_deltas(chunk))
                if any(delta.text or delta.finish_reason for delta in read):
                    break
            return read

        try:
            first = self._guarded(opened)
        except BaseException:
            if stream is not None:
                stream.close()
            raise
        assert stream is not None
        return stream, chunks, first

    def _rest_of_stream(
        self,
        stream: openai.Stream[ChatCompletionChunk],
        chunks: Iterator[ChatCompletionChunk],
        first: list[ChatDelta],
        watchdog: _Watchdog,
    ) -> Iterator[ChatDelta]:
        """Yield the deltas read so far, then the rest of the stream; a failure now is `AnswerInterrupted`."""
        received: list[str] = []
        finish: FinishReason | None = None
        usage: ChatUsage | None = None

        def passed_on(deltas: Iterable[ChatDelta]) -> Iterator[ChatDelta]:
            nonlocal finish, usage
            for delta in deltas:
                finish = delta.finish_reason or finish
                usage = delta.usage or usage
                if delta.text:
                    received.append(delta.text)
                    yield ChatDelta(text=delta.text)

        try:
            yield from passed_on(first)
            for chunk in chunks:
                yield from passed_on(_deltas(chunk))
        except GeneratorExit:  # the caller stopped reading: the server did nothing wrong
            self.breaker.succeeded()
            raise
        except (openai.APIError, openai.APIConnectionError) as error:
            stream.close()
            self.breaker.failed(error)
            if watchdog.expired:
                reason: Literal["stalled", "dropped", "too_slow"] = "too_slow"
            elif isinstance(error, openai.APITimeoutError):
                reason = "stalled"
            else:
                reason = "dropped"
            raise AnswerInterrupted(
                f"the answer stream broke ({reason})", reason=reason, partial_text="".join(received)
            ) from error
        finally:
            stream.close()
        self.breaker.succeeded()
        yield ChatDelta(finish_reason=finish or "stop", usage=usage)


def _deltas(chunk: ChatCompletionChunk) -> list[ChatDelta]:
    deltas = []
    for choice in chunk.choices[:1]:
        if choice.delta.content:
            deltas.append(ChatDelta(text=choice.delta.content))
        if choice.finish_reason is not None:
            deltas.append(ChatDelta(finish_reason=_finish_reason(choice.finish_reason)))
    if chunk.usage is not None:
        deltas.append(ChatDelta(usage=_usage(chunk.usage)))
    return deltas


def _finish_reason(value: str | None) -> FinishReason:
    return "length" if value == "length" else "stop"


def _usage(usage: Any) -> ChatUsage | None:
    if usage is None:
        return None
    return ChatUsage(prompt_tokens=int(usage.prompt_tokens or 0), completion_tokens=int(usage.completion_tokens or 0))


def _retryable_status(status: int) -> bool:
    return status in RETRYABLE_STATUSES or status >= 500


def _retry_after(error: openai.APIStatusError) -> float | None:
    """The `Retry-After` of a response in seconds (delay-seconds form only; an HTTP date is ignored)."""
    value = error.response.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class FakeChatModel:
    """An in-memory `ChatModel` for tests: answers each call with the next of `answers` (a text,
    streamed in `chunk_chars`-character deltas with finish reason `stop`, or a `ChatError`
    raised: before any delta for `AnswerProviderUnavailable`, after `partial_text` for
    `AnswerInterrupted`), the last one repeated. Records each call's messages in `calls`."""

    def __init__(self, *answers: str | ChatError, chunk_chars: int = 4) -> None:
        self.answers: list[str | ChatError] = list(answers) or ["I do not know."]
        self.chunk_chars = chunk_chars
        self.calls: list[list[dict[str, str]]] = []

    def _next(self, messages: Sequence[ChatMessage]) -> str | ChatError:
        self.calls.append([dict(message) for message in messages])
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]

    def stream_chat(
        self, messages: Sequence[ChatMessage], *, max_tokens: int | None = None, temperature: float | None = None
    ) -> Iterator[ChatDelta]:
        """See `ChatModel.stream_chat`."""
        answer = self._next(messages)
        if isinstance(answer, AnswerInterrupted):
            text = answer.partial_text
        elif isinstance(answer, ChatError):
            raise answer
        else:
            text = answer
        for start in range(0, len(text), self.chunk_chars):
            yield ChatDelta(text=text[start : start + self.chunk_chars])
        if isinstance(answer, ChatError):
            raise answer
        yield ChatDelta(finish_reason="stop")

    def complete_chat(
        self, messages: Sequence[ChatMessage], *, max_tokens: int | None = None, temperature: float | None = None
    ) -> ChatAnswer:
        """See `ChatModel.complete_chat`."""
        answer = self._next(messages)
        if isinstance(answer, AnswerInterrupted):
            raise AnswerProviderUnavailable(str(answer), reason="retries_exhausted", attempts=1)
        if isinstance(answer, ChatError):
            raise answer
        return ChatAnswer(text=answer, finish_reason="stop")
