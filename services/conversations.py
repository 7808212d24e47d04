"""Conversations (issue 16): a user's conversations with a chatbot, and grounded answers with
citations.

Rules and where they come from:

* **Owner-scoped, administrators see all** (API_STYLE, Security; as `services.chatbots`): a
  conversation is read and changed by the user who started it; another user's is 404, as an
  unknown id is; an administrator reads and changes every one. A conversation whose chatbot is
  being deleted is gone (404) with it. Starting one needs a chatbot the caller may read
  (`services.chatbots.get_chatbot`), whatever its status: only *answering* needs it `active`.
* **Only an `active` chatbot answers** (issue 16): a message to a conversation whose chatbot is
  `draft`, `paused` or `archived` is 409 `/problems/chatbot-not-active`, and nothing is stored.
* **Size limits**: a message is at most `MAX_CONTENT_CHARS` characters (the contract's
  `maxLength`) and not blank (400, pointer ``/content``); a title at most `MAX_TITLE_CHARS`; a
  feedback comment at most `MAX_COMMENT_CHARS`.
* **Grounded answers only** (issue 16): an answer is composed from the passages the chatbot's
  knowledge gives for the question (`services.knowledge.Retriever`, with the chatbot's
  `passages_per_answer` and `min_score`), numbered 1…n; the answer's ``[n]`` markers point into
  its `citations` (number, source, quoted passage). When no passage clears the minimum score,
  no provider is asked: the answer is `DONT_KNOW`, with no citations.
* **Providers behind a port** (ARCHITECTURE, adapters): an `AnswerProvider` gets the question,
  the numbered passages, the chatbot's instructions and the last turns (`HISTORY_MESSAGES`),
  and *yields* events — ``("delta", text)`` …, optionally ``("usage", {"tokens_in": n,
  "tokens_out": m})`` (the tokens a model reported), then ``("finish", reason)`` — so a streaming
  provider and a streaming endpoint plug in without changing this module. If the configured
  provider fails before it produced any text and a fallback is configured, the fallback answers
  and the message says `fallback: true`; a failure after some text ends the answer with
  `finish_reason: error`, keeping the text given so far.
* **An answer is a stream of events** (`answer_stream`): `MessageStart` (ids), `Citations`
  (before any text: dify#3980), `Delta`…, `MessageEnd` (the stored message). The JSON operation
  drains it (`answer`); an SSE operation forwards each event. **A consumer that stops** (a client
  that disconnects: the generator is closed) still gets its answer stored, with the text given so
  far and `finish_reason: cancelled`.
* **Stateless answers** (issue 16's OpenAI-compatible endpoint, `services.chat_completions`):
  `stateless_answer_stream` answers a question put to a chatbot with the history the request
  carries, by the same rules (active chatbot, retrieval with its settings, grounded only, the
  fallback), storing nothing: `Citations`, `Delta`…, `AnswerDone`.
* **Answers are reused** (issue 18, `services.caching`): the answer to a question that does not
  depend on earlier turns — the first message of a conversation (no earlier messages), or a
  stateless question sent without history — is cached for ANSWER_CACHE_TTL_SECONDS under the
  chatbot's owner, the chatbot, the version of its knowledge (`Chatbot.knowledge_version`,
  bumped with every change of its passages), the provider (name, model, its settings), the
  chatbot's settings that change an answer (instructions, passages per answer, minimum score,
  the most words) and the normalised question (`services.caching.normalise_question`: case,
  spacing and trailing punctuation do not count). The same question then gets the same answer,
  its citations included, streamed from the cache as it would be from the provider and stored
  as a message as usual (no tokens spent: its `usage` has none). Only complete answers are kept
  (`finish_reason` `stop` or `length`, not a fallback's), and only when the knowledge did not
  change while they were composed: a cached answer never outlives the knowledge it cites. A
  later turn of a conversation is never answered from the cache (its history changes it).
* **Stored with everything needed to show it again** (dify#10861, #12636): citations, usage
  (passages given, words in and out), provider, latency and finish reason are columns of the
  message, so `GET …/messages` shows an answer as it was given.
* **Quota** (issue 17): every question a chatbot answers counts one on its *owner's*
  ``messages`` meter (`USAGE_METERS`, `services.usage`; per billing period) — the owner's own,
  their visitors' (`services.public_chatbots`) and the OpenAI-compatible endpoint's
  (`stateless_answer_stream`) alike. It is counted with the question, before any provider is
  asked: over the plan's limit is 402 `/problems/quota-exceeded`, raised when the first event
  is asked for (so before a stream starts), and nothing is stored. A question counts however
  its answer ends (a `DONT_KNOW`, a cut, a provider's failure).
* **Feedback** (issue 16): one per answer; a second replaces the first. Only an assistant's
  message takes feedback (a question's is 409).
* **Audit** (brief 004): `conversation_deleted` names the actor, the conversation's owner as
  subject, the conversation and its chatbot.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from persistence.accounts.models import User
from persistence.chatbots.models import Chatbot
from persistence.conversations.models import Conversation, Message
from persistence.conversations.repository import ANY_OWNER
from persistence.knowledge.repository import PassageHit
from persistence.unit_of_work import UnitOfWork
from services import audit, caching, chatbots, usage
from services import jobs as job_services
from services.audit import EventType, RequestMeta
from services.clock import Clock
from services.cursors import decode_cursor, decode_values, encode_values, page
from services.errors import Conflict, DomainError, InvalidInput, NotFound, PreconditionFailed, ProblemType
from services.knowledge import FullTextRetriever, Retriever

log = logging.getLogger(__name__)

MAX_CONTENT_CHARS = 4000
"""The longest message, in characters (the contract's `maxLength` says the same)."""
MAX_TITLE_CHARS = 200
"""The longest conversation title, in characters."""
MAX_COMMENT_CHARS = 1000
"""The longest feedback comment, in characters."""
MAX_ANSWER_WORDS = 300
"""The most words an answer may have; a provider that goes on is cut there (`finish_reason: length`)."""
MAX_QUOTE_CHARS = 2000
"""A citation's quote is its passage's text, cut to this many characters (with an ellipsis)."""
HISTORY_MESSAGES = 6
"""The last messages (three questions and answers) a provider is given with a question."""
DONT_KNOW = "I don't know: nothing in this chatbot's knowledge answers that question."
"""The answer when no passage of the chatbot's knowledge clears its minimum score: never an
ungrounded answer (issue 16). The README quotes it."""
FINISH_REASONS = ("stop", "length", "cancelled", "error")
"""How an answer ended: complete, cut at `MAX_ANSWER_WORDS`, its consumer stopped reading, or
its provider failed (the contract's open enum `FinishReason`)."""

USAGE_METERS = [
    usage.Meter(
        name="messages",
        unit="messages",
        periodic=True,
        description=(
            "Questions your chatbots answered this billing period: yours, your public chatbots' visitors' "
            "and the chat completions endpoint's."
        ),
    )
]
"""The meter this area counts (`services.usage`)."""

TOKEN_KEYS = ("tokens_in", "tokens_out")
"""The token counts a provider's ``usage`` event may give, stored in the answer's `usage`."""

_WORDS = re.compile(r"\w+")


class ChatbotNotActive(Conflict):
    """The conversation's chatbot is not `active`, so it does not answer."""

    problem = ProblemType("/problems/chatbot-not-active", "Chatbot not answering", 409)


class AnswerFailed(DomainError):
    """The answer's provider failed (after some text, or with no fallback to answer instead):
    the answer is stored with `finish_reason: error` and the text given so far. A JSON answer
    says so by its finish reason; a streamed one sends this problem as its `error` event."""

    problem = ProblemType("/problems/answer-failed", "Answer failed", 502)


# --- the provider port ------------------------------------------------------------------------


@dataclass(frozen=True)
class NumberedPassage:
    """A passage given to a provider: its `number` (the ``[n]`` that cites it), its text, and
    its source: title, URL, page and heading (those it has)."""

    number: int
    text: str
    title: str | None
    url: str | None = None
    page: int | None = None
    heading: str | None = None


@dataclass(frozen=True)
class Turn:
    """An earlier message of the conversation: `role` (``user`` or ``assistant``) and `content`."""

    role: str
    content: str


@dataclass(frozen=True)
class AnswerRequest:
    """What a provider answers from.

    Attributes:
        question: the person's message (not blank, at most `MAX_CONTENT_CHARS`).
        passages: the retrieved passages, best first, numbered from 1 (never empty).
        instructions: the chatbot's instructions (may be empty).
        history: the last `HISTORY_MESSAGES` messages before the question, oldest first.
        max_words: the most words the answer may have.
    """

    question: str
    passages: Sequence[NumberedPassage]
    instructions: str
    history: Sequence[Turn]
    max_words: int = MAX_ANSWER_WORDS


ProviderEvent = tuple[str, Any]
"""What a provider yields: ``("delta", text)`` for the next piece of the answer's text (with
``[n]`` markers citing passages), optionally ``("usage", {"tokens_in": int, "tokens_out": int})``
when a model reported its token counts, and last ``("finish", reason)`` with one of
`FINISH_REASONS`."""


class AnswerProvider(Protocol):
    """Composes an answer from an `AnswerRequest`, as a stream of `ProviderEvent`s. Adapters
    implement it (`adapters.answer_extractive`); it may raise on failure (unreachable, timed
    out), before or after yielding text."""

    @property
    def name(self) -> str:
        """The provider's name, stored with each answer (e.g. ``extractive``)."""
        ...

    def answer(self, request: AnswerRequest) -> Iterator[ProviderEvent]:
        """The answer's events: deltas, then one finish."""
        ...


UnitsOfWork = Callable[[], AbstractContextManager[UnitOfWork]]
"""Makes the unit of work each step of an answer runs in (`answer_stream`)."""


@dataclass(frozen=True)
class ConversationConfig:
    """The conversations' adapters, chosen by the wiring (ANSWER_PROVIDER).

    Attributes:
        provider: answers questions.
        fallback: answers when `provider` fails before giving any text (None: no fallback).
        retriever: finds the passages for a question; None: the full-text index
            (`services.knowledge.FullTextRetriever`) in the answer's own units of work.
        cache: where answers are reused (module rules); None: never.
        answer_ttl_seconds: how long a cached answer is reused (ANSWER_CACHE_TTL_SECONDS; 0:
            answers are not cached).
        provider_identity: what tells this provider's answers from another's in the cache
            key: its name, model and the settings that change its answers (None: its name).
    """

    provider: AnswerProvider
    fallback: AnswerProvider | None = None
    retriever: Retriever | None = None
    cache: caching.Cache | None = None
    answer_ttl_seconds: float = 0
    provider_identity: str | None = None


def config_of(engine: job_services.JobEngine) -> ConversationConfig:
    """The conversations configuration the wiring put in the job engine's `context`.

    Raises:
        LookupError: the wiring gave none (a bug of the wiring).
    """
    config = engine.context.get("conversations")
    if not isinstance(config, ConversationConfig):
        raise LookupError("the job engine has no conversations configuration")
    return config


# --- the answer's events ----------------------------------------------------------------------


@dataclass(frozen=True)
class MessageStart:
    """The first event: the conversation, the stored question's id and the answer's id to be."""

    conversation_id: uuid.UUID
    question_id: uuid.UUID
    answer_id: uuid.UUID


@dataclass(frozen=True)
class Citations:
    """The passages the answer may cite (the contract's `Citation`s), before any text."""

    items: list[dict[str, Any]]


@dataclass(frozen=True)
class Delta:
    """The next piece of the answer's text."""

    text: str


@dataclass(frozen=True)
class MessageEnd:
    """The last event: the answer as stored."""

    message: Message


AnswerEvent = MessageStart | Citations | Delta | MessageEnd
"""What `answer_stream` yields, in this order: one `MessageStart`, one `Citations`, `Delta`s,
one `MessageEnd`."""


@dataclass(frozen=True)
class ConversationPage:
    """One page of conversations and the cursor of the next page (None on the last page)."""

    items: list[Conversation]
    next_cursor: str | None


@dataclass(frozen=True)
class MessagePage:
    """One page of messages and the cursor of the next page (None on the last page)."""

    items: list[Message]
    next_cursor: str | None


# --- conversations ----------------------------------------------------------------------------


def _is_admin(caller: User) -> bool:
    return caller.role == "admin"


def _scope(caller: User) -> uuid.UUID | object:
    return ANY_OWNER if _is_admin(caller) else caller.id


def _title(value: str | None) -> str | None:
    if value is None:
        return None
    title = value.strip()
    if len(title) > MAX_TITLE_CHARS:
        raise InvalidInput(f"A title is at most {MAX_TITLE_CHARS} characters.", pointer="/title")
    return title or None


def create_conversation(
    *, uow: UnitOfWork, clock: Clock, caller: User, chatbot_id: uuid.UUID, title: str | None = None
) -> Conversation:
    """Start a conversation of the caller with the chatbot, titled `title` (stripped; blank or
    None: untitled).

    Raises:
        NotFound: no chatbot the caller may read (as `services.chatbots.get_chatbot`).
        InvalidInput: a title over `MAX_TITLE_CHARS` (pointer ``/title``).
    """
    chatbot = chatbots.get_chatbot(uow=uow, caller=caller, chatbot_id=chatbot_id)
    now = clock.now()
    conversation = Conversation(
        id=uuid.uuid4(),
        chatbot_id=chatbot.id,
        owner_id=caller.id,
        title=_title(title),
        message_count=0,
        version=1,
        created_at=now,
        updated_at=now,
        last_message_at=None,
    )
    uow.conversations.add(conversation)
    return conversation


def get_conversation(
    *, uow: UnitOfWork, caller: User, conversation_id: uuid.UUID, lock: bool = False
) -> tuple[Conversation, Chatbot]:
    """The conversation and its chatbot, if the caller started it or is an administrator (the
    conversation read locked with `lock`).

    Raises:
        NotFound: no such conversation, one whose chatbot is being deleted, or another user's
            for a caller who is not an administrator (no existence leak).
    """
    found = uow.conversations.get(conversation_id, owner_id=_scope(caller), lock=lock)
    if found is None:
        raise NotFound("No conversation with this id exists for you.")
    return found


def list_conversations(
    *, uow: UnitOfWork, caller: User, chatbot_id: uuid.UUID, limit: int, cursor: str | None = None
) -> ConversationPage:
    """The caller's conversations with the chatbot (an administrator's: everyone's), newest
    first, `limit` per page after `cursor` (created_at and id).

    Raises:
        NotFound: no chatbot the caller may read.
        InvalidInput: a cursor this list did not make.
    """
    chatbot = chatbots.get_chatbot(uow=uow, caller=caller, chatbot_id=chatbot_id)
    rows = uow.conversations.page(
        chatbot_id=chatbot.id,
        owner_id=_scope(caller),
        limit=limit + 1,
        before=decode_cursor(cursor) if cursor else None,
    )
    items, next_cursor = page(rows, limit, lambda conversation: (conversation.created_at, conversation.id))
    return ConversationPage(items, next_cursor)


def _check_version(conversation: Conversation, expected_versions: frozenset[int] | None) -> None:
    if expected_versions is not None and conversation.version not in expected_versions:
        raise PreconditionFailed(
            f"The conversation has changed (its version is now {conversation.version}); read it again and retry."
        )


def rename_conversation(
    *,
    uow: UnitOfWork,
    clock: Clock,
    caller: User,
    conversation_id: uuid.UUID,
    title: str | None,
    expected_versions: frozenset[int] | None,
) -> Conversation:
    """Set the conversation's title (None or blank: untitled). A new title raises `version` by
    one; the same title changes nothing.

    Args:
        expected_versions: the versions an `If-Match` allows (None: no condition).

    Raises:
        NotFound: as `get_conversation`.
        PreconditionFailed: the version is not one of `expected_versions` (412).
        InvalidInput: a title over `MAX_TITLE_CHARS`.
    """
    conversation, _chatbot = get_conversation(uow=uow, caller=caller, conversation_id=conversation_id, lock=True)
    _check_version(conversation, expected_versions)
    new_title = _title(title)
    if new_title != conversation.title:
        conversation.title = new_title
        conversation.version += 1
        conversation.updated_at = clock.now()
        uow.flush()
    return conversation


def delete_conversation(
    *,
    uow: UnitOfWork,
    clock: Clock,
    caller: User,
    conversation_id: uuid.UUID,
    expected_versions: frozenset[int] | None,
    meta: RequestMeta,
) -> None:
    """Delete the conversation and its messages at once, and record `conversation_deleted`.

    Raises:
        NotFound: as `get_conversation`.
        PreconditionFailed: the version is not one of `expected_versions` (412).
    """
    conversation, chatbot = get_conversation(uow=uow, caller=caller, conversation_id=conversation_id, lock=True)
    _check_version(conversation, expected_versions)
    audit.record(
        uow,
        EventType.CONVERSATION_DELETED,
        meta=meta,
        now=clock.now(),
        actor_id=caller.id,
        subject_id=conversation.owner_id,
        details={"conversation_id": str(conversation.id), "chatbot_id": str(chatbot.id)},
    )
    uow.conversations.delete(conversation)


# --- messages ---------------------------------------------------------------------------------

_MESSAGES_SCOPE = "messages"


def list_messages(
    *, uow: UnitOfWork, caller: User, conversation_id: uuid.UUID, limit: int, cursor: str | None = None
) -> MessagePage:
    """The conversation's messages, oldest first (questions and answers in the order they were
    stored), `limit` per page after `cursor` (a position).

    Raises:
        NotFound: as `get_conversation`.
        InvalidInput: a cursor this list did not make.
    """
    conversation, _chatbot = get_conversation(uow=uow, caller=caller, conversation_id=conversation_id)
    after = decode_values(cursor, kinds=("integer",), scope=_MESSAGES_SCOPE)[0] if cursor else None
    rows = uow.conversations.messages(conversation.id, limit=limit + 1, after=after)
    items = rows[:limit]
    next_cursor = encode_values([items[-1].position], scope=_MESSAGES_SCOPE) if len(rows) > limit else None
    return MessagePage(items, next_cursor)


def give_feedback(
    *,
    uow: UnitOfWork,
    clock: Clock,
    caller: User,
    conversation_id: uuid.UUID,
    message_id: uuid.UUID,
    rating: str,
    comment: str | None = None,
) -> Message:
    """Rate an answer `up` or `down`, with an optional comment (stripped; blank: none). One
    feedback per answer: a second replaces the first (its rating, comment and time).

    Raises:
        NotFound: as `get_conversation`, or no such message in it.
        Conflict: the message is a question, not an answer (409).
        InvalidInput: a comment over `MAX_COMMENT_CHARS` (pointer ``/comment``).
    """
    conversation, _chatbot = get_conversation(uow=uow, caller=caller, conversation_id=conversation_id)
    message = uow.conversations.message(conversation.id, message_id, lock=True)
    if message is None:
        raise NotFound("No message with this id in this conversation.")
    if message.role != "assistant":
        raise Conflict("Feedback is given on the chatbot's answers, not on questions.")
    text = comment.strip() if comment else None
    if text and len(text) > MAX_COMMENT_CHARS:
        raise InvalidInput(f"A comment is at most {MAX_COMMENT_CHARS} characters.", pointer="/comment")
    message.feedback_rating = rating
    message.feedback_comment = text or None
    message.feedback_at = clock.now()
    uow.flush()
    return message


def exported_conversations(*, uow: UnitOfWork, owner_id: uuid.UUID) -> list[tuple[Conversation, list[Message]]]:
    """Every conversation of the owner (those of chatbots being deleted left out), oldest first,
    with its messages in order: their data export's section."""
    return uow.conversations.all_of(owner_id)


# --- answers ----------------------------------------------------------------------------------


def _checked_content(content: str) -> str:
    text = content.strip()
    if not text:
        raise InvalidInput("A message needs some text.", pointer="/content")
    if len(text) > MAX_CONTENT_CHARS:
        raise InvalidInput(f"A message is at most {MAX_CONTENT_CHARS} characters.", pointer="/content")
    return text


def _words(text: str) -> int:
    return len(_WORDS.findall(text))


def citation(number: int, hit: PassageHit) -> dict[str, Any]:
    """The contract's `Citation` of a retrieved passage: its number, its source (as the search
    answers it) and the quoted passage (cut to `MAX_QUOTE_CHARS`)."""
    quote = hit.text if len(hit.text) <= MAX_QUOTE_CHARS else hit.text[: MAX_QUOTE_CHARS - 1].rstrip() + "…"
    return {
        "number": number,
        "source": {
            "type": hit.source_type,
            "id": str(hit.source_id),
            "url": hit.url,
            "title": hit.title,
            "page": hit.page,
            "heading": hit.heading,
        },
        "quote": quote,
    }


@dataclass
class _Answer:
    """What an answer has become so far (filled in while it streams)."""

    answer_id: uuid.UUID
    question_id: uuid.UUID
    provider: str
    started_at: datetime
    citations: list[dict[str, Any]] = field(default_factory=list)
    parts: list[str] = field(default_factory=list)
    words_in: int = 0
    finish_reason: str = "cancelled"
    fallback: bool = False
    tokens: dict[str, int] | None = None
    cached: bool = False

    @property
    def text(self) -> str:
        return "".join(self.parts)


@dataclass(frozen=True)
class _Question:
    conversation_id: uuid.UUID | None
    chatbot_id: uuid.UUID
    question: str
    instructions: str
    passages_per_answer: int
    min_score: float
    history: list[Turn]
    owner_id: uuid.UUID | None = None
    knowledge_version: int = 0


def _store_question(
    uow: UnitOfWork, clock: Clock, caller: User, conversation_id: uuid.UUID, content: str
) -> tuple[_Question, Message]:
    conversation, chatbot = get_conversation(uow=uow, caller=caller, conversation_id=conversation_id, lock=True)
    if chatbot.status != "active":
        raise ChatbotNotActive(f"This chatbot is {chatbot.status}: only an active chatbot answers.")
    history = uow.conversations.last_messages(
        conversation.id, limit=HISTORY_MESSAGES, before=conversation.message_count + 1
    )
    question_id = uuid.uuid4()
    usage.record_usage(
        uow,
        owner_id=chatbot.owner_id,
        meter="messages",
        quantity=1,
        idempotency_key=f"message:{question_id}",
        clock=clock,
    )
    message = _append(uow, clock, conversation, id=question_id, role="user", content=content)
    question = _Question(
        conversation_id=conversation.id,
        chatbot_id=chatbot.id,
        question=content,
        instructions=chatbot.instructions,
        passages_per_answer=chatbot.passages_per_answer,
        min_score=chatbot.min_score,
        history=[Turn(turn.role, turn.content) for turn in history],
        owner_id=chatbot.owner_id,
        knowledge_version=chatbot.knowledge_version,
    )
    return question, message


def _append(uow: UnitOfWork, clock: Clock, conversation: Conversation, **values: Any) -> Message:
    """Store the next message of the (locked) conversation."""
    now = clock.now()
    conversation.message_count += 1
    conversation.last_message_at = now
    message = Message(
        conversation_id=conversation.id,
        position=conversation.message_count,
        created_at=now,
        **{"id": uuid.uuid4(), "citations": [], "fallback": False, **values},
    )
    uow.conversations.add_message(message)
    return message


def _store_answer(units: UnitsOfWork, clock: Clock, conversation_id: uuid.UUID, answer: _Answer) -> Message | None:
    """Store the answer as it is; None when its conversation went meanwhile (deleted)."""
    with units() as uow:
        found = uow.conversations.get(conversation_id, owner_id=ANY_OWNER, lock=True)
        if found is None:
            return None
        text = answer.text
        elapsed = clock.now() - answer.started_at
        return _append(
            uow,
            clock,
            found[0],
            id=answer.answer_id,
            role="assistant",
            content=text,
            reply_to=answer.question_id,
            citations=answer.citations,
            usage={
                "passages": len(answer.citations),
                "words_in": answer.words_in,
                "words_out": _words(text),
                **(answer.tokens or {}),
            },
            provider=answer.provider,
            latency_ms=max(0, int(elapsed.total_seconds() * 1000)),
            finish_reason=answer.finish_reason,
            fallback=answer.fallback,
        )


def _provider_events(config: ConversationConfig, request: AnswerRequest, answer: _Answer) -> Iterator[ProviderEvent]:
    """The configured provider's events; its fallback's when it fails before any text."""
    events = config.provider.answer(request)
    try:
        first = next(events, ("finish", "stop"))
    except Exception:
        if config.fallback is None:
            raise
        log.warning("answer provider %s failed; %s answers instead", config.provider.name, config.fallback.name)
        answer.provider, answer.fallback = config.fallback.name, True
        events = config.fallback.answer(request)
        first = next(events, ("finish", "stop"))
    yield first
    yield from events


def _generate(config: ConversationConfig, request: AnswerRequest, answer: _Answer) -> Iterator[Delta]:
    """Run the provider, keeping the text and the finish reason in `answer`; a provider's failure
    ends the answer with `error` (logged), the text so far kept."""
    words = 0
    try:
        for kind, value in _provider_events(config, request, answer):
            if kind == "finish":
                answer.finish_reason = value if value in FINISH_REASONS else "stop"
                return
            if kind == "usage" and isinstance(value, Mapping):
                answer.tokens = {key: int(value[key]) for key in TOKEN_KEYS if key in value}
                continue
            if kind != "delta" or not value:
                continue
            words += _words(value)
            if words > request.max_words:
                answer.finish_reason = "length"
                return
            answer.parts.append(value)
            yield Delta(value)
        answer.finish_reason = "stop"
    except Exception:
        log.exception("answer provider %s failed", answer.provider)
        answer.finish_reason = "error"


ANSWER_CACHE = "answers"
"""The cache name of reused answers (`services.caching`; the `/metrics` counters' label)."""
ANSWER_CACHE_FORMAT = 1
"""Part of every answer's cache key: raised when what is cached, or how answers are composed,
changes, so older entries are no longer found."""
CACHEABLE_FINISH_REASONS = frozenset({"stop", "length"})
"""Complete answers: the ones kept in the cache (a cancelled or failed one is not)."""
_REPLAY_WORDS = re.compile(r"\s*\S+|\s+$")
"""A cached answer's words, each with the spaces before it (and trailing spaces): one pass, no
backtracking (a space and a non-space never overlap). A pattern of repeated groups (eight words
at once) backtracked so much that a cached answer cost more than a composed one (the bench)."""
REPLAY_WORDS_PER_DELTA = 8
"""A cached answer is streamed again eight words to a delta (the pieces join to its text)."""


def replay_pieces(text: str) -> list[str]:
    """`text` cut into deltas of `REPLAY_WORDS_PER_DELTA` words; they join to `text`."""
    words = _REPLAY_WORDS.findall(text)
    return ["".join(words[i : i + REPLAY_WORDS_PER_DELTA]) for i in range(0, len(words), REPLAY_WORDS_PER_DELTA)]


def answer_cache_key(config: ConversationConfig, question: _Question, *, max_words: int) -> str | None:
    """The question's key in the answers cache, or None when it is not to be cached: no cache
    or a time-to-live of 0, or a question with earlier turns (module rules)."""
    if config.cache is None or config.answer_ttl_seconds <= 0 or question.history or question.owner_id is None:
        return None
    return caching.answer_key(
        owner_id=question.owner_id,
        chatbot_id=question.chatbot_id,
        knowledge_version=question.knowledge_version,
        provider=f"{ANSWER_CACHE_FORMAT}:{config.provider_identity or config.provider.name}",
        settings={
            "instructions": question.instructions,
            "passages_per_answer": question.passages_per_answer,
            "min_score": question.min_score,
            "max_words": max_words,
        },
        question=question.question,
    )


def _replay(entry: Any, answer: _Answer) -> bool:
    """Fill `answer` from a cached entry; False (and `answer` untouched) when it is not one."""
    if not isinstance(entry, dict):
        return False
    text, citations = entry.get("text"), entry.get("citations")
    finish_reason, words_in = entry.get("finish_reason"), entry.get("words_in")
    if not (isinstance(text, str) and isinstance(citations, list) and isinstance(words_in, int)):
        return False
    if finish_reason not in CACHEABLE_FINISH_REASONS:
        return False
    answer.citations = citations
    answer.words_in = words_in
    answer.parts = [text]
    answer.finish_reason = str(finish_reason)
    answer.cached = True
    return True


def _compose(
    units: UnitsOfWork, config: ConversationConfig, question: _Question, answer: _Answer, *, max_words: int
) -> Iterator[Citations | Delta]:
    """`_compose_fresh`, or its answer to the same question from the cache (module rules):
    one `Citations`, then `Delta`s, filling in `answer` as it goes. A complete fresh answer is
    cached when the chatbot's knowledge version is still the one the question was read with."""
    key = answer_cache_key(config, question, max_words=max_words)
    if key is not None and config.cache is not None and _replay(config.cache.get(ANSWER_CACHE, key), answer):
        yield Citations(answer.citations)
        for piece in replay_pieces(answer.text):
            yield Delta(piece)
        return
    yield from _compose_fresh(units, config, question, answer, max_words=max_words)
    if key is None or config.cache is None:
        return
    if answer.finish_reason not in CACHEABLE_FINISH_REASONS or answer.fallback:
        return
    with units() as uow:
        unchanged = uow.knowledge.knowledge_version(question.chatbot_id) == question.knowledge_version
    if unchanged:  # else the answer may cite knowledge newer than its key says: not kept
        entry = {
            "text": answer.text,
            "citations": answer.citations,
            "words_in": answer.words_in,
            "finish_reason": answer.finish_reason,
        }
        config.cache.set(ANSWER_CACHE, key, entry, ttl_seconds=config.answer_ttl_seconds)


def _compose_fresh(
    units: UnitsOfWork, config: ConversationConfig, question: _Question, answer: _Answer, *, max_words: int
) -> Iterator[Citations | Delta]:
    """Retrieve the question's passages (in a unit of work of its own from `units`, or with
    `config.retriever`), then answer from them: one `Citations`, then `Delta`s, filling in
    `answer` as it goes. No passage: `DONT_KNOW`, no provider asked (grounded answers only)."""
    retriever = config.retriever or FullTextRetriever(units)
    hits = retriever.retrieve(
        chatbot_id=question.chatbot_id,
        question=question.question,
        limit=question.passages_per_answer,
        min_score=question.min_score,
    )
    answer.citations = [citation(number, hit) for number, hit in enumerate(hits, start=1)]
    answer.words_in = _words(question.question) + sum(hit.words for hit in hits)
    yield Citations(answer.citations)
    if not hits:  # never an ungrounded answer: no provider is asked
        answer.parts.append(DONT_KNOW)
        answer.finish_reason = "stop"
        yield Delta(DONT_KNOW)
        return
    request = AnswerRequest(
        question=question.question,
        passages=[
            NumberedPassage(n, hit.text, hit.title, hit.url, hit.page, hit.heading)
            for n, hit in enumerate(hits, start=1)
        ],
        instructions=question.instructions,
        history=question.history,
        max_words=max_words,
    )
    yield from _generate(config, request, answer)


def answer_stream(
    *,
    units: UnitsOfWork,
    clock: Clock,
    config: ConversationConfig,
    caller: User,
    conversation_id: uuid.UUID,
    content: str,
) -> Generator[AnswerEvent, None, None]:
    """Store the caller's message in the conversation and answer it, as a stream of events:
    `MessageStart`, `Citations`, `Delta`…, `MessageEnd` (see the module's rules).

    Nothing runs until the first event is asked for; the errors below are raised then, before
    anything is stored. Each step runs in a unit of work of its own from `units` (the question
    with its checks; the retrieval; the answer, stored when the provider is done or the
    consumer stopped): the JSON and the streamed operation both pass fresh ones, so no
    transaction stays open while the provider writes. Closing the generator early stores the
    answer with the text so far and `finish_reason` `cancelled`.

    Args:
        units: makes the unit of work of each step (see above).
        content: the message, at most `MAX_CONTENT_CHARS` characters once stripped.

    Raises:
        NotFound: as `get_conversation`.
        ChatbotNotActive: the chatbot is not `active` (409).
        InvalidInput: a blank or over-long message (pointer ``/content``).
        QuotaExceeded: the chatbot's owner has no ``messages`` left this period (402).
    """
    text = _checked_content(content)
    with units() as uow:
        question, stored = _store_question(uow, clock, caller, conversation_id, text)
    answer = _Answer(
        answer_id=uuid.uuid4(), question_id=stored.id, provider=config.provider.name, started_at=clock.now()
    )
    try:
        yield MessageStart(conversation_id, stored.id, answer.answer_id)
        yield from _compose(units, config, question, answer, max_words=MAX_ANSWER_WORDS)
    finally:  # also when the consumer closed the generator (GeneratorExit): the answer is kept
        message = _store_answer(units, clock, conversation_id, answer)
    if message is None:
        raise NotFound("The conversation was deleted while it was being answered.")
    yield MessageEnd(message)


def answer(
    *,
    units: UnitsOfWork,
    clock: Clock,
    config: ConversationConfig,
    caller: User,
    conversation_id: uuid.UUID,
    content: str,
) -> Message:
    """`answer_stream` drained: the stored answer (the JSON operation). Raises what it raises."""
    return stored_answer(
        answer_stream(
            units=units, clock=clock, config=config, caller=caller, conversation_id=conversation_id, content=content
        )
    )


def stored_answer(events: Iterator[AnswerEvent]) -> Message:
    """Drain an answer's events (`answer_stream`'s) and return the stored answer its
    `MessageEnd` carries; raises what the stream raises."""
    for event in events:
        if isinstance(event, MessageEnd):
            return event.message
    raise RuntimeError("the answer stream ended without its message")  # pragma: no cover - a bug of answer_stream


@dataclass(frozen=True)
class AnswerDone:
    """The last event of an answer that is not stored (`stateless_answer_stream`).

    Attributes:
        text: the whole answer, with its ``[n]`` markers.
        citations: the contract's `Citation`s, as the `Citations` event gave them.
        usage: ``{passages, words_in, words_out}``, as a stored answer's (words, not tokens).
        provider: the name of the provider that answered.
        finish_reason: one of `FINISH_REASONS`.
        fallback: whether the fallback provider answered because the configured one failed.
    """

    text: str
    citations: list[dict[str, Any]]
    usage: dict[str, int]
    provider: str
    finish_reason: str
    fallback: bool


def stateless_answer_stream(
    *,
    units: UnitsOfWork,
    clock: Clock,
    config: ConversationConfig,
    caller: User,
    chatbot_id: uuid.UUID,
    content: str,
    history: Sequence[Turn] = (),
    extra_instructions: str = "",
    max_words: int = MAX_ANSWER_WORDS,
) -> Iterator[Citations | Delta | AnswerDone]:
    """Answer a question put to a chatbot outside any conversation, storing nothing (issue 16's
    OpenAI-compatible endpoint, whose requests carry their own history): `Citations`,
    `Delta`…, `AnswerDone`. The same rules as `answer_stream`: only an `active` chatbot the
    caller may read answers, the passages are retrieved with its settings, no passage means
    `DONT_KNOW`, the provider's fallback answers when it fails before any text.

    Nothing runs until the first event is asked for; the errors below are raised then. Every
    read of the database (the chatbot, the retrieval) and the question's count on the owner's
    ``messages`` meter happen before the `Citations` event is
    yielded, in units of work from `units`; after it only the provider runs, so a stream may go
    on after the request's unit of work is closed. Closing the generator early just stops it.

    Args:
        units: makes the units of work of the reads.
        content: the question, at most `MAX_CONTENT_CHARS` characters once stripped.
        history: the earlier turns, oldest first; only the last `HISTORY_MESSAGES` are used.
        extra_instructions: appended after the chatbot's instructions (a blank line between).
        max_words: the most words of the answer (at most `MAX_ANSWER_WORDS`; cut: `length`).

    Raises:
        NotFound: no chatbot the caller may read (as `services.chatbots.get_chatbot`).
        ChatbotNotActive: the chatbot is not `active` (409).
        InvalidInput: a blank or over-long question (pointer ``/content``).
        QuotaExceeded: the chatbot's owner has no ``messages`` left this period (402; counted
            in a unit of work of its own before the provider is asked).
    """
    text = _checked_content(content)
    with units() as uow:
        chatbot = chatbots.get_chatbot(uow=uow, caller=caller, chatbot_id=chatbot_id)
        if chatbot.status != "active":
            raise ChatbotNotActive(f"This chatbot is {chatbot.status}: only an active chatbot answers.")
        usage.record_usage(
            uow,
            owner_id=chatbot.owner_id,
            meter="messages",
            quantity=1,
            idempotency_key=f"completion:{uuid.uuid4()}",
            clock=clock,
        )
        instructions = "\n\n".join(part for part in (chatbot.instructions, extra_instructions.strip()) if part)
        question = _Question(
            conversation_id=None,
            chatbot_id=chatbot.id,
            question=text,
            instructions=instructions,
            passages_per_answer=chatbot.passages_per_answer,
            min_score=chatbot.min_score,
            history=list(history)[-HISTORY_MESSAGES:],
            owner_id=chatbot.owner_id,
            knowledge_version=chatbot.knowledge_version,
        )
    answer = _Answer(
        answer_id=uuid.uuid4(), question_id=uuid.uuid4(), provider=config.provider.name, started_at=datetime.min
    )
    yield from _compose(units, config, question, answer, max_words=min(max_words, MAX_ANSWER_WORDS))
    text_out = answer.text
    yield AnswerDone(
        text=text_out,
        citations=answer.citations,
        usage={"passages": len(answer.citations), "words_in": answer.words_in, "words_out": _words(text_out)},
        provider=answer.provider,
        finish_reason=answer.finish_reason,
        fallback=answer.fallback,
    )


def markers(text: str) -> list[int]:
    """The citation numbers an answer's text cites (``[n]``), in order of appearance."""
    return [int(number) for number in re.findall(r"\[(\d+)\]", text)]


def representable_usage(usage: Mapping[str, Any] | None) -> dict[str, int] | None:
    """A stored `usage` as the contract's `AnswerUsage` (None for a question): passages and
    words always, `tokens_in`/`tokens_out` only when the provider's model reported them."""
    if usage is None:
        return None
    represented = {key: int(usage.get(key, 0)) for key in ("passages", "words_in", "words_out")}
    represented.update({key: int(usage[key]) for key in TOKEN_KEYS if key in usage})
    return represented
