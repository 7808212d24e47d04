"""The `openai` answer provider (issue 16): any OpenAI-compatible chat-completions server
composes the answer, streamed, from the chatbot's instructions, the numbered passages (with their
sources) and the last turns of the conversation.

It lives in services, not in adapters, because it is rules (the prompt, the citation markers,
the finish reasons), and adapters import none of our code: the network half is the adapter
`adapters.llm_chat` (`ChatModel`), given to it by the wiring.

It glues three pieces that each have their own rules: `services.answer_prompt.build_chat_messages`
(the prompt), `adapters.llm_chat.ChatModel.stream_chat` (the resilient client: retries before the
first token, the per-process circuit breaker, idle and total timeouts, typed errors) and
`services.answer_prompt.CitationMarkers` (``[n]`` read across deltas; numbers naming no passage
dropped from the text).

What a caller (`services.conversations`) can rely on:

* **Events** as every provider's: ``("delta", text)`` …, then ``("usage", {"tokens_in": n,
  "tokens_out": m})`` when the server reported its token counts, then ``("finish", reason)``
  with ``stop`` or ``length`` (the server's ``length``: `max_tokens` reached; anything else is
  ``stop``, as the client maps it).
* **Nothing is yielded before the server's first text**, so a failure to start
  (`AnswerProviderUnavailable`: breaker open, retries exhausted, request rejected) is raised from
  the first `next()`, where `services.conversations` puts the fallback provider in its place.
* **A stream broken after some text** (`AnswerInterrupted`: stalled, dropped, too slow) first
  yields the text held back by the marker reader, then raises: the caller keeps the text so far
  and ends the answer with ``error``.
* **Citations**: the text's markers only ever name passages given (1…n). Which of them the text
  cited is not reported: the answer's citations are every passage given, as the extractive
  provider's are (they are sent before any text; README, "Conversations").

It implements `services.conversations.AnswerProvider` (structurally, as the extractive provider
does): a request is anything with `question`, `passages` (each with `number`, `text`, `title`,
and optionally `url`, `page`, `heading`), `instructions`, `history` (each with `role` and
`content`) and `max_words`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from adapters.llm_chat import AnswerInterrupted, ChatModel, ChatUsage
from services.answer_prompt import CitationMarkers, build_chat_messages


class _Passage(Protocol):
    @property
    def number(self) -> int: ...

    @property
    def text(self) -> str: ...

    @property
    def title(self) -> str | None: ...


class _Turn(Protocol):
    @property
    def role(self) -> str: ...

    @property
    def content(self) -> str: ...


class _Request(Protocol):
    @property
    def question(self) -> str: ...

    @property
    def passages(self) -> Sequence[_Passage]: ...

    @property
    def instructions(self) -> str: ...

    @property
    def history(self) -> Sequence[_Turn]: ...

    @property
    def max_words(self) -> int: ...


class _PromptPassage:
    """A request's passage as the prompt shows it (`services.answer_prompt.PromptPassage`):
    the source fields a passage lacks are None."""

    def __init__(self, passage: _Passage) -> None:
        self.text = passage.text
        self.title = passage.title
        self.url: str | None = getattr(passage, "url", None)
        self.page: int | None = getattr(passage, "page", None)
        self.heading: str | None = getattr(passage, "heading", None)


def chat_messages(request: _Request) -> list[dict[str, str]]:
    """The OpenAI chat messages for `request`: the system message (the chatbot's instructions,
    the grounding rules, the passages numbered in the request's order with their sources), the
    request's history (all of it: the service already keeps only the last turns) and the question."""
    passages = sorted(request.passages, key=lambda passage: passage.number)
    return build_chat_messages(
        question=request.question,
        passages=[_PromptPassage(passage) for passage in passages],
        instructions=request.instructions,
        turns=list(request.history),
        max_turns=len(request.history),
    )


def _usage(usage: ChatUsage) -> dict[str, int]:
    return {"tokens_in": usage.prompt_tokens, "tokens_out": usage.completion_tokens}


class LLMAnswerProvider:
    """The `openai` provider (module docstring) on a `ChatModel` (`OpenAIChatClient` in the
    wiring, one per process: its circuit breaker is per process).

    Args:
        chat: the chat model that streams answers.
        name: stored with each answer as its `provider`.
    """

    def __init__(self, chat: ChatModel, *, name: str = "openai") -> None:
        self.chat = chat
        self.name = name

    def answer(self, request: _Request) -> Iterator[tuple[str, Any]]:
        """The answer's events (module docstring).

        Raises:
            adapters.llm_chat.AnswerProviderUnavailable: from the first `next()`, no answer started.
            adapters.llm_chat.AnswerInterrupted: after some text, the stream broke.
        """
        markers = CitationMarkers(passages=len(request.passages))
        finish = "stop"
        usage: ChatUsage | None = None
        try:
            for delta in self.chat.stream_chat(chat_messages(request)):
                if delta.text:
                    shown = markers.feed(delta.text)
                    if shown:
                        yield ("delta", shown)
                finish = delta.finish_reason or finish
                usage = delta.usage or usage
        except AnswerInterrupted:
            rest = markers.close()
            if rest:
                yield ("delta", rest)
            raise
        rest = markers.close()
        if rest:
            yield ("delta", rest)
        if usage is not None:
            yield ("usage", _usage(usage))
        yield ("finish", finish)
