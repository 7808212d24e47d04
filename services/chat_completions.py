"""Chat completions (issue 16, "OpenAI-compatible endpoint"): reading a request in OpenAI's Chat
Completions format into a question for a chatbot. The answer itself is the conversations'
(`services.conversations.stateless_answer_stream`): the same retrieval with the chatbot's
settings, the same provider port and fallback, the same grounded-only rule.

Rules and where they come from:

* **The request subset** (issue 16): `messages`, `stream`, `max_tokens` (or OpenAI's newer
  `max_completion_tokens`, which wins when both are sent), `temperature`, `model`; the contract
  allows any other field, ignored as OpenAI's servers ignore what they do not know.
* **The question is the last message**, and it must be the user's (400 pointer ``/messages/<i>``
  otherwise: a request ending with an assistant's message asks OpenAI's models to continue it,
  which a grounded answer cannot do). Its text is 1 to `MAX_CONTENT_CHARS` characters, not only
  spaces (as a conversation's message).
* **History**: the `user` and `assistant` messages before it, oldest first; the answer uses the
  last `services.conversations.HISTORY_MESSAGES`, as a conversation does.
* **A client's `system` messages are appended after the chatbot's instructions** (not ignored,
  not put first): the chatbot's owner set the instructions and an API key acts as its owner,
  so the client may add to them, while the grounding rules (`services.answer_prompt`) still come
  after both. At most `MAX_SYSTEM_CHARS` characters in all.
* **Content** is a string or a list of ``{"type": "text", "text": …}`` parts, joined with line
  breaks (what OpenAI's SDKs send); another part type (an image) is 400, null is empty.
* **Words for tokens**: `max_tokens` bounds the answer's words (at most
  `services.conversations.MAX_ANSWER_WORDS`), and the usage reported counts words.
* **`model` is echoed** (`DEFAULT_MODEL` when absent): which provider answers is the chatbot's
  and the server's choice (ANSWER_PROVIDER), not the client's.
* **Stateless**: nothing is stored; a request carries its own history, as OpenAI's API's do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from services.conversations import MAX_ANSWER_WORDS, MAX_CONTENT_CHARS, Turn
from services.errors import InvalidInput

DEFAULT_MODEL = "charter"
"""The answer's `model` when the request names none."""
MAX_SYSTEM_CHARS = 4000
"""The most characters of the client's system messages, together."""


@dataclass(frozen=True)
class CompletionRequest:
    """A chat-completions request, read.

    Attributes:
        question: the last message's text, stripped (1 to `MAX_CONTENT_CHARS` characters).
        history: the earlier user and assistant messages, oldest first.
        system: the client's system messages, joined by blank lines ("" when none).
        max_words: the most words of the answer (1 to `MAX_ANSWER_WORDS`).
        model: the name the answer echoes.
        stream: whether the answer is streamed.
    """

    question: str
    history: list[Turn]
    system: str
    max_words: int
    model: str
    stream: bool


def _text(content: Any, pointer: str) -> str:
    """A message's content as text (module docstring, Content)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    texts = []
    for index, part in enumerate(content):
        if part.get("type") != "text" or not isinstance(part.get("text"), str):
            raise InvalidInput("Only text content parts are understood.", pointer=f"{pointer}/{index}")
        texts.append(part["text"])
    return "\n".join(texts)


def read_request(body: Mapping[str, Any]) -> CompletionRequest:
    """Read a request body the contract's `ChatCompletionRequest` schema has already checked
    (a dict from JSON) into a `CompletionRequest`, by the module's rules.

    Raises:
        InvalidInput: the last message is not the user's (pointer ``/messages/<i>/role``); its
            text is blank or over `MAX_CONTENT_CHARS` (``/messages/<i>/content``); a content
            part is not text (``/messages/<i>/content/<j>``); the system messages are over
            `MAX_SYSTEM_CHARS` (``/messages``).
    """
    messages: Sequence[Mapping[str, Any]] = body["messages"]
    last = len(messages) - 1
    if messages[last]["role"] != "user":
        raise InvalidInput("The last message must be the user's question.", pointer=f"/messages/{last}/role")
    history: list[Turn] = []
    system: list[str] = []
    for index, message in enumerate(messages[:last]):
        text = _text(message.get("content"), f"/messages/{index}/content").strip()
        if message["role"] == "system":
            if text:
                system.append(text)
        elif text:
            history.append(Turn(message["role"], text))
    question = _text(messages[last].get("content"), f"/messages/{last}/content").strip()
    if not question:
        raise InvalidInput("The question needs some text.", pointer=f"/messages/{last}/content")
    if len(question) > MAX_CONTENT_CHARS:
        raise InvalidInput(
            f"The question is at most {MAX_CONTENT_CHARS} characters.", pointer=f"/messages/{last}/content"
        )
    system_text = "\n\n".join(system)
    if len(system_text) > MAX_SYSTEM_CHARS:
        raise InvalidInput(f"System messages are at most {MAX_SYSTEM_CHARS} characters in all.", pointer="/messages")
    limit = body.get("max_completion_tokens") or body.get("max_tokens") or MAX_ANSWER_WORDS
    return CompletionRequest(
        question=question,
        history=history,
        system=system_text,
        max_words=min(int(limit), MAX_ANSWER_WORDS),
        model=body.get("model") or DEFAULT_MODEL,
        stream=bool(body.get("stream")),
    )
