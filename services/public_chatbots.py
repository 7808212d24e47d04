"""Public chatbots (issue 16): a chatbot whose `visibility` is `public` can be talked to
without an account, through ``/api/v1/public/…``.

Rules and where they come from:

* **A public identifier, not the chatbot's id**: visitors name a chatbot by its `public_id`
  (``pcb_`` and 128 random bits, set at creation; `persistence.chatbots.models.new_public_id`),
  so its internal id, and the owner's ids, are never shown to them and cannot be enumerated.
* **Only an `active`, `public` chatbot is there for visitors**: any other (private, draft,
  paused, archived, being deleted, unknown) is 404 `/problems/not-found`, for starting a
  conversation and for every later message or read, so a visitor learns nothing of chatbots
  that are not open to them (API_STYLE, Security: no existence leak). A paused chatbot is 404,
  not the owners' 409, for that reason.
* **A visitor token names one conversation**: starting a conversation answers a token
  (``chv_`` and 256 random bits) shown once; only its SHA-256 is stored, on the conversation
  (the refresh tokens' rule, API_STYLE, Security). It is good for `VISITOR_TOKEN_LIFETIME`
  from the start, on its own conversation's visitor operations only (`x-access: visitor`; sent
  as a bearer token, told apart by its prefix as API keys are): anywhere else it is not an
  access token (401); with another conversation's id it is 404. An unknown, malformed or
  expired token is 401, and so is any other credential on a visitor operation.
* **Where visitor conversations live**: in the owner's conversations, with `visitor: true`,
  owned by the chatbot's owner, so the owner reads, renames, deletes and exports them with
  their own, and they go with the chatbot and with the owner's account.
* **Answers as the owners' are** (`services.conversations.answer_stream`): the same
  retrieval, provider, fallback, citations and size limit (`MAX_CONTENT_CHARS`); what a
  visitor sees is the question, the answer and its citations' sources, nothing else of the
  owner's.
* **Quota** (issue 17): a visitor's question counts on the chatbot *owner's* ``messages``
  meter (`services.conversations`' rule); over the owner's limit the visitor gets 402
  `/problems/quota-exceeded` and nothing is stored.
* **The public settings are cached** (issue 18): what a chat widget shows before a
  conversation starts (name, welcome message, suggested questions; `public_settings`) is kept
  in the cache (`services.caching`, cache ``public_chatbots``, by `public_id`) for
  PUBLIC_CHATBOT_CACHE_TTL_SECONDS, and so is "not open to visitors". A change or deletion of
  the chatbot forgets its entry once it commits (`services.chatbots`); an owner whose account
  is deleted takes their chatbots with them, and those entries end with their time-to-live.
* **Audit**: none for visitors (brief 004 audits account and security events; a visitor has
  no account); the owner sees visitor conversations themselves.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from collections.abc import Generator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from persistence.chatbots.models import Chatbot
from persistence.conversations.models import Conversation
from persistence.unit_of_work import UnitOfWork
from services import caching, conversations
from services.clock import Clock
from services.conversations import ConversationConfig, MessagePage, UnitsOfWork
from services.cursors import decode_values, encode_values
from services.errors import InvalidToken, NotFound

VISITOR_TOKEN_PREFIX = "chv_"  # noqa: S105 - a prefix, not a secret
"""What every visitor token starts with (API keys start with ``chk_``, access tokens are JWTs)."""
VISITOR_TOKEN_LIFETIME = timedelta(hours=24)
"""How long a visitor token is good for, from the conversation's start."""
_VISITOR_TOKEN = re.compile(r"^chv_[A-Za-z0-9_-]{43}$")
_MESSAGES_SCOPE = "messages"  # the owners' message cursors are the same (services.conversations)


@dataclass(frozen=True)
class VisitorConversation:
    """A visitor's new conversation: the conversation, its chatbot, and the token (shown once)."""

    conversation: Conversation
    chatbot: Chatbot
    token: str


def well_formed_visitor_token(token: str) -> bool:
    """Whether `token` has a visitor token's shape (``chv_`` and 43 URL-safe characters)."""
    return bool(_VISITOR_TOKEN.match(token))


def token_hash(token: str) -> str:
    """The SHA-256 (hex) of a visitor token: what is stored and looked up."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _open(chatbot: Chatbot | None) -> Chatbot:
    if chatbot is None or chatbot.visibility != "public" or chatbot.status != "active":
        raise NotFound("No public chatbot with this id.")
    return chatbot


def public_chatbot(*, uow: UnitOfWork, public_id: str) -> Chatbot:
    """The chatbot `public_id` names, if it is open to visitors.

    Raises:
        NotFound: no such chatbot, or one that is not `active` and `public`.
    """
    return _open(uow.public_chatbots.chatbot(public_id))


def settings_of(chatbot: Chatbot) -> dict[str, Any]:
    """The contract's `PublicChatbot`: what a visitor's widget shows (nothing else of the owner's)."""
    return {
        "public_id": chatbot.public_id,
        "name": chatbot.name,
        "welcome_message": chatbot.welcome_message,
        "suggested_questions": list(chatbot.suggested_questions),
    }


def _cached_entry(*, uow: UnitOfWork, cache: caching.Cache | None, public_id: str, ttl_seconds: float) -> Any:
    """The cache's entry of a public chatbot: ``{"found": true, "settings": …, "origins": […]}``
    or ``{"found": false}`` (not open to visitors), read and cached on a miss."""

    def read() -> dict[str, Any]:
        chatbot = uow.public_chatbots.chatbot(public_id)
        try:
            opened = _open(chatbot)
        except NotFound:
            return {"found": False}
        return {"found": True, "settings": settings_of(opened), "origins": list(opened.allowed_origins)}

    if cache is None:
        return read()
    return cache.get_or_compute(caching.PUBLIC_CHATBOTS, public_id, read, ttl_seconds=ttl_seconds)


def public_settings(
    *, uow: UnitOfWork, cache: caching.Cache | None, public_id: str, ttl_seconds: float
) -> dict[str, Any]:
    """The public chatbot's `PublicChatbot` settings (`settings_of`), from the cache when they
    are there (module rules), else read and cached for `ttl_seconds` (0: not cached).

    Raises:
        NotFound: as `public_chatbot` (also remembered in the cache, and forgotten as the
            settings are when the chatbot changes).
    """
    entry = _cached_entry(uow=uow, cache=cache, public_id=public_id, ttl_seconds=ttl_seconds)
    settings = entry.get("settings") if isinstance(entry, dict) and entry.get("found") else None
    if not isinstance(settings, dict):
        raise NotFound("No public chatbot with this id.")
    return settings


def start_conversation(*, uow: UnitOfWork, clock: Clock, public_id: str) -> VisitorConversation:
    """Start a visitor's conversation with the public chatbot `public_id` (untitled, owned by
    the chatbot's owner, marked `visitor`) and make its visitor token, good for
    `VISITOR_TOKEN_LIFETIME`.

    Raises:
        NotFound: as `public_chatbot`.
    """
    chatbot = public_chatbot(uow=uow, public_id=public_id)
    token = VISITOR_TOKEN_PREFIX + secrets.token_urlsafe(32)
    now = clock.now()
    conversation = Conversation(
        id=uuid.uuid4(),
        chatbot_id=chatbot.id,
        owner_id=chatbot.owner_id,
        title=None,
        message_count=0,
        version=1,
        created_at=now,
        updated_at=now,
        last_message_at=None,
        visitor=True,
        visitor_token_hash=token_hash(token),
        visitor_expires_at=now + VISITOR_TOKEN_LIFETIME,
    )
    uow.conversations.add(conversation)
    return VisitorConversation(conversation, chatbot, token)


def authenticate_visitor(
    *, uow: UnitOfWork, clock: Clock, token: str, conversation_id: uuid.UUID
) -> tuple[Conversation, Chatbot]:
    """The conversation a visitor token opens, if it is `conversation_id` and its chatbot is
    still open to visitors.

    Raises:
        InvalidToken: a malformed, unknown or expired token (401).
        NotFound: the token's conversation is another one, or its chatbot is no longer
            `active` and `public` (404).
    """
    found = uow.public_chatbots.visitor_conversation(token_hash(token)) if well_formed_visitor_token(token) else None
    if found is None:
        raise InvalidToken("This visitor token is not valid.")
    conversation, chatbot = found
    expires_at: datetime | None = conversation.visitor_expires_at
    if expires_at is None or expires_at <= clock.now():
        raise InvalidToken("This visitor token has expired; start a new conversation.")
    if conversation.id != conversation_id:
        raise NotFound("No conversation with this id for this visitor token.")
    _open(chatbot)
    return conversation, chatbot


def list_messages(*, uow: UnitOfWork, conversation: Conversation, limit: int, cursor: str | None = None) -> MessagePage:
    """The visitor's conversation's messages (already authenticated, `authenticate_visitor`),
    oldest first, `limit` per page after `cursor` (the owners' message cursors).

    Raises:
        InvalidInput: a cursor this list did not make.
    """
    after = decode_values(cursor, kinds=("integer",), scope=_MESSAGES_SCOPE)[0] if cursor else None
    rows = uow.conversations.messages(conversation.id, limit=limit + 1, after=after)
    items = rows[:limit]
    next_cursor = encode_values([items[-1].position], scope=_MESSAGES_SCOPE) if len(rows) > limit else None
    return MessagePage(items, next_cursor)


def answer_stream(
    *,
    units: UnitsOfWork,
    clock: Clock,
    config: ConversationConfig,
    conversation_id: uuid.UUID,
    owner_id: uuid.UUID,
    content: str,
) -> Generator[conversations.AnswerEvent, None, None]:
    """Store the visitor's message in their (authenticated, `authenticate_visitor`) conversation
    and answer it: `services.conversations.answer_stream`'s events (`MessageStart`,
    `Citations`, `Delta`…, `MessageEnd`), as for owners. The answer is the conversation owner's,
    so the owner is the caller the conversation is read as. Closing the generator early (a
    visitor gone mid-stream) stores the answer with the text so far as `cancelled`.

    Args:
        units: makes the unit of work of each step (as `services.conversations.answer_stream`).
        conversation_id: the visitor's conversation.
        owner_id: its owner (the chatbot's owner).
        content: the message, at most `services.conversations.MAX_CONTENT_CHARS` characters
            once stripped, not blank.

    Raises (when the first event is asked for, before anything is stored):
        NotFound: the conversation or its owner went meanwhile, or its chatbot stopped
            being `active` (404, as every chatbot closed to visitors is).
        InvalidInput: a blank or over-long message (pointer ``/content``).
        QuotaExceeded: the owner has no ``messages`` left this period (402).
    """
    with units() as uow:
        owner = uow.users.get(owner_id)
    if owner is None:
        raise NotFound("No public chatbot with this id.")
    events = conversations.answer_stream(
        units=units, clock=clock, config=config, caller=owner, conversation_id=conversation_id, content=content
    )
    try:
        try:
            first = next(events)
        except conversations.ChatbotNotActive:
            raise NotFound("No public chatbot with this id.") from None
        yield first
        yield from events
    finally:
        events.close()  # closed early: the owners' stream stores the answer as cancelled


def allowed_origins(
    *,
    uow: UnitOfWork,
    public_id: str | None = None,
    conversation_id: uuid.UUID | None = None,
    cache: caching.Cache | None = None,
    ttl_seconds: float = 0,
) -> list[str]:
    """The origins a browser may call the visitor operations from: those of the public chatbot
    `public_id` names (from the cache's entry of its public settings when `cache` is given, as
    `public_settings` keeps it), or of the visitor conversation `conversation_id`'s chatbot;
    none when it is not open to visitors (CORS, issue 16: the chatbot's `allowed_origins`)."""
    if public_id is not None:
        entry = _cached_entry(uow=uow, cache=cache, public_id=public_id, ttl_seconds=ttl_seconds)
        origins = entry.get("origins") if isinstance(entry, dict) and entry.get("found") else None
        return [str(origin) for origin in origins] if isinstance(origins, list) else []
    chatbot = uow.public_chatbots.chatbot_of_visitor_conversation(conversation_id) if conversation_id else None
    if chatbot is None or chatbot.visibility != "public" or chatbot.status != "active":
        return []
    return list(chatbot.allowed_origins)
