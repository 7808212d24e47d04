"""Chatbots (issue 15, first slice): a user's chatbots, their settings and their life cycle.

Rules and where they come from:

* **Owner-scoped, administrators see all** (API_STYLE, Security): a chatbot is read and
  changed by its owner; another user's is 404, as an unknown id is; an administrator
  (`role == "admin"`) reads and changes every chatbot, and may list one user's (`owner_id`).
* **Safe writes** (API_STYLE; RFC 9110 section 13): every change bumps `version`, the ETag;
  a change or deletion with an `If-Match` naming another version is refused (412) and
  changes nothing. A change that changes nothing keeps the version.
* **Status transitions** (`TRANSITIONS`, the contract's `ChatbotStatus` and the README say the
  same): `draft → active | archived`, `active → paused | archived`, `paused → active |
  archived`, `archived → draft` (restore, to be edited and published again). Any other change
  of status is 409 `/problems/chatbot-status-conflict` naming both states; the same status
  again is no change.
* **A cap per user** (`MAX_CHATBOTS_PER_USER`, 50): the 51st is 409
  `/problems/chatbot-limit-reached` (as webhooks cap endpoints at 20). The owner's account row
  is locked for the count (README, "Read, check, write: locked"), so concurrent creations
  cannot pass it together.
* **Allowed origins** are web origins (RFC 6454) `https://host[:port]` with no path, as a
  browser sends them in `Origin` (for the public widget, later): the contract's pattern checks
  the shape, `normalise_origins` lower-cases them, drops a default port (`:443`) and duplicates.
* **Deletion is a job** (API_STYLE, Long-running work): `delete_chatbot` marks the chatbot
  (gone for every read from then on) and queues `chatbots.delete`; `purge_chatbot`, its
  function, removes the row (and, when they exist, its sources, files and index rows).
  Idempotent: a second run finds nothing to delete.
* **Quota** (issue 17): a chatbot counts on the owner's ``chatbots`` meter (`USAGE_METERS`,
  `services.usage`) from its creation (checked with the count: over the plan's limit is 402
  `/problems/quota-exceeded` and nothing is created) until its deletion is asked for, when
  its documents' ``documents`` and ``storage_bytes`` are given back too.
* **Cached public settings are forgotten** (issue 18): a change or a deletion forgets the
  chatbot's public settings in the cache (`services.public_chatbots.public_settings`) once it
  commits.
* **Audit** (brief 004): `chatbot_created`, `chatbot_updated` (the fields changed) and
  `chatbot_deleted` events name the actor and, as subject, the chatbot's owner.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from persistence.accounts.models import User
from persistence.chatbots.models import Chatbot
from persistence.chatbots.repository import ANY_OWNER
from persistence.jobs.models import Job
from persistence.unit_of_work import UnitOfWork
from services import audit, caching, usage
from services import jobs as job_services
from services.audit import EventType, RequestMeta
from services.clock import Clock
from services.cursors import decode_cursor, page
from services.errors import Conflict, Forbidden, NotFound, PreconditionFailed, ProblemType

DELETE_KIND = "chatbots.delete"
"""The job kind that removes a chatbot (declared in jobs/chatbots.py)."""
MAX_CHATBOTS_PER_USER = 50
"""A user's chatbots at most (each will hold crawls, documents and an index)."""
USAGE_METERS = [
    usage.Meter(
        name="chatbots",
        unit="chatbots",
        periodic=False,
        description="The chatbots you have (one being deleted no longer counts).",
    )
]
"""The meter this area counts (`services.usage`)."""

TRANSITIONS: dict[str, frozenset[str]] = {
    "draft": frozenset({"active", "archived"}),
    "active": frozenset({"paused", "archived"}),
    "paused": frozenset({"active", "archived"}),
    "archived": frozenset({"draft"}),
}
"""The statuses each status may change to (the contract's `ChatbotStatus` lists them too)."""

DEFAULTS: dict[str, Any] = {
    "instructions": "",
    "welcome_message": None,
    "suggested_questions": [],
    "visibility": "private",
    "allowed_origins": [],
    "passages_per_answer": 5,
    "min_score": 0.0,
}
"""What a new chatbot has for each field its creation leaves out (the contract's defaults)."""

SETTINGS = (
    "name",
    "instructions",
    "welcome_message",
    "suggested_questions",
    "visibility",
    "allowed_origins",
    "passages_per_answer",
    "min_score",
)
"""The fields a creation or a change may set, besides `status` (a change only)."""


class ChatbotLimitReached(Conflict):
    """The owner already has `MAX_CHATBOTS_PER_USER` chatbots."""

    problem = ProblemType("/problems/chatbot-limit-reached", "Chatbot limit reached", 409)


class ChatbotStatusConflict(Conflict):
    """A change of status that `TRANSITIONS` does not allow (the detail names both states)."""

    problem = ProblemType("/problems/chatbot-status-conflict", "Status change not allowed", 409)


@dataclass(frozen=True)
class KnowledgeSummary:
    """What a chatbot knows, derived from its sources: counts, and `status` `empty` (nothing
    yet), `indexing` (a source is being crawled or processed), `ready` or `error`
    (`knowledge_of` says how each is decided)."""

    sources: int = 0
    pages: int = 0
    documents: int = 0
    passages: int = 0
    status: str = "empty"


@dataclass(frozen=True)
class ChatbotPage:
    """One page of chatbots and the cursor of the next page (None on the last page)."""

    items: list[Chatbot]
    next_cursor: str | None


def _is_admin(caller: User) -> bool:
    return caller.role == "admin"


def _scope(caller: User) -> uuid.UUID | object:
    return ANY_OWNER if _is_admin(caller) else caller.id


def normalise_origins(origins: Sequence[str]) -> list[str]:
    """Origins as a browser sends them in `Origin` (RFC 6454 section 6.1): lower-case, without
    the default port `:443`, each once, in the order first given. The contract's pattern has
    already checked each is ``https://host[:port]`` with no path, query or fragment."""
    seen: dict[str, None] = {}
    for origin in origins:
        normal = origin.lower().removesuffix(":443")
        seen.setdefault(normal, None)
    return list(seen)


DOCUMENTS_IN_PROGRESS = frozenset({"pending", "scanning", "extracting"})
DOCUMENTS_IN_ERROR = frozenset({"failed", "quarantined"})


def _knowledge_status(passages: int, documents: Mapping[str, int]) -> str:
    if any(documents.get(status) for status in DOCUMENTS_IN_PROGRESS):
        return "indexing"
    if any(documents.get(status) for status in DOCUMENTS_IN_ERROR):
        return "error"
    return "ready" if passages else "empty"


def knowledge_of(*, uow: UnitOfWork, chatbots: Sequence[Chatbot]) -> dict[uuid.UUID, KnowledgeSummary]:
    """The knowledge summary of each chatbot, by id (a few queries for them all).

    Counts: `sources`, its websites and every document it has, whatever their state; `pages`,
    the crawled pages in its index (indexed, or unchanged at a recrawl); `documents`, its
    `ready` documents; `passages` in its index. Status, first rule that applies: `indexing`
    while a website's crawl is queued or running or a document is `pending`, `scanning` or
    `extracting`; `error` when a document is `failed` or `quarantined` (delete it, or upload a
    readable one, to clear it); `ready` when it has passages; `error` when it has none and a
    crawl failed; else `empty`.
    """
    ids = [chatbot.id for chatbot in chatbots]
    counts = uow.knowledge.count_by_chatbot(ids)
    documents = uow.documents.status_counts(ids)
    sites = uow.websites.summary_by_chatbot(ids)
    summaries = {}
    for chatbot in chatbots:
        passages = counts.get(chatbot.id, 0)
        by_status = documents.get(chatbot.id, {})
        websites, crawling, failed_crawls, pages = sites.get(chatbot.id, (0, 0, 0, 0))
        status = "indexing" if crawling else _knowledge_status(passages, by_status)
        if status == "empty" and failed_crawls:
            status = "error"
        summaries[chatbot.id] = KnowledgeSummary(
            sources=websites + sum(by_status.values()),
            pages=pages,
            documents=by_status.get("ready", 0),
            passages=passages,
            status=status,
        )
    return summaries


def _field_value(name: str, value: Any) -> Any:
    if name == "allowed_origins":
        return normalise_origins(value)
    if name == "suggested_questions":
        return list(value)
    if name == "min_score":
        return float(value)
    return value


def create_chatbot(
    *, uow: UnitOfWork, clock: Clock, caller: User, data: Mapping[str, Any], meta: RequestMeta
) -> Chatbot:
    """Create a `draft` chatbot for the caller from a validated `ChatbotCreate` body (`name`
    required; the other `SETTINGS` take `DEFAULTS` when left out) and record `chatbot_created`.

    Raises:
        ChatbotLimitReached: the caller already has `MAX_CHATBOTS_PER_USER` chatbots (409).
        QuotaExceeded: the caller's plan allows no more chatbots (402).
    """
    uow.chatbots.lock_owner(caller.id)  # concurrent creations are counted one after the other
    if uow.chatbots.count(caller.id) >= MAX_CHATBOTS_PER_USER:
        raise ChatbotLimitReached(
            f"You have {MAX_CHATBOTS_PER_USER} chatbots, the most allowed; delete one before creating another."
        )
    now = clock.now()
    values = {name: _field_value(name, data[name]) if name in data else DEFAULTS.get(name) for name in SETTINGS}
    chatbot = Chatbot(
        id=uuid.uuid4(), owner_id=caller.id, status="draft", version=1, created_at=now, updated_at=now, **values
    )
    usage.record_usage(
        uow, owner_id=caller.id, meter="chatbots", quantity=1, idempotency_key=f"chatbot:{chatbot.id}", clock=clock
    )
    uow.chatbots.add(chatbot)
    audit.record(
        uow,
        EventType.CHATBOT_CREATED,
        meta=meta,
        now=now,
        actor_id=caller.id,
        subject_id=caller.id,
        details={"chatbot_id": str(chatbot.id), "name": chatbot.name},
    )
    return chatbot


def get_chatbot(*, uow: UnitOfWork, caller: User, chatbot_id: uuid.UUID, lock: bool = False) -> Chatbot:
    """The chatbot, if the caller owns it or is an administrator (read locked with `lock`).

    Raises:
        NotFound: no such chatbot, one being deleted, or another user's for a caller who is not
            an administrator (API_STYLE, Security: no existence leak).
    """
    chatbot = uow.chatbots.get(chatbot_id, owner_id=_scope(caller), lock=lock)
    if chatbot is None:
        raise NotFound("No chatbot with this id exists for you.")
    return chatbot


def list_chatbots(
    *, uow: UnitOfWork, caller: User, limit: int, cursor: str | None = None, owner_id: uuid.UUID | None = None
) -> ChatbotPage:
    """The caller's chatbots (an administrator's: everyone's, or `owner_id`'s), newest first,
    `limit` per page after `cursor` (a keyset cursor: created_at and id).

    Raises:
        Forbidden: `owner_id` names another user and the caller is not an administrator (403,
            as the jobs list).
        InvalidInput: a cursor this list did not make.
    """
    if _is_admin(caller):
        owner: uuid.UUID | object = owner_id if owner_id is not None else ANY_OWNER
    elif owner_id is not None and owner_id != caller.id:
        raise Forbidden("Only administrators may list other users' chatbots.")
    else:
        owner = caller.id
    rows = uow.chatbots.page(owner_id=owner, limit=limit + 1, before=decode_cursor(cursor) if cursor else None)
    items, next_cursor = page(rows, limit, lambda chatbot: (chatbot.created_at, chatbot.id))
    return ChatbotPage(items, next_cursor)


def _check_version(chatbot: Chatbot, expected_versions: frozenset[int] | None) -> None:
    if expected_versions is not None and chatbot.version not in expected_versions:
        raise PreconditionFailed(
            f"The chatbot has changed (its version is now {chatbot.version}); read it again and retry."
        )


def check_transition(current: str, wanted: str) -> None:
    """Whether a chatbot may go from status `current` to `wanted` (`TRANSITIONS`; the same
    status is no change and always allowed).

    Raises:
        ChatbotStatusConflict: the change is not allowed (409, naming both states and the
            statuses `current` may change to).
    """
    if wanted == current or wanted in TRANSITIONS[current]:
        return
    allowed = ", ".join(sorted(TRANSITIONS[current]))
    raise ChatbotStatusConflict(
        f"A chatbot cannot go from {current} to {wanted}; from {current} it may become: {allowed}."
    )


def update_chatbot(
    *,
    uow: UnitOfWork,
    clock: Clock,
    caller: User,
    chatbot_id: uuid.UUID,
    changes: Mapping[str, Any],
    expected_versions: frozenset[int] | None,
    meta: RequestMeta,
    cache: caching.Cache | None = None,
) -> Chatbot:
    """Change the members of a validated `ChatbotUpdate` body (the others stay as they are).
    When something changes, the version goes up by one and `chatbot_updated` is recorded with
    the names of the fields changed; when nothing does, the chatbot is answered as it was.

    Args:
        expected_versions: the versions an `If-Match` allows (None: no condition).
        cache: where its public settings may be cached (`services.public_chatbots`): a change
            forgets them once it commits. None: no cache.

    Raises:
        NotFound: as `get_chatbot`.
        PreconditionFailed: the chatbot's version is not one of `expected_versions` (412).
        ChatbotStatusConflict: `status` names a status the current one may not change to (409).
    """
    chatbot = get_chatbot(uow=uow, caller=caller, chatbot_id=chatbot_id, lock=True)
    _check_version(chatbot, expected_versions)
    if "status" in changes:
        check_transition(chatbot.status, changes["status"])
    changed: list[str] = []
    for name in (*SETTINGS, "status"):
        if name not in changes:
            continue
        value = _field_value(name, changes[name])
        if getattr(chatbot, name) != value:
            setattr(chatbot, name, value)
            changed.append(name)
    if not changed:
        return chatbot
    now = clock.now()
    chatbot.version += 1
    chatbot.updated_at = now
    uow.flush()
    caching.invalidate_after_commit(uow, cache, caching.PUBLIC_CHATBOTS, chatbot.public_id)
    details: dict[str, Any] = {"chatbot_id": str(chatbot.id), "changed": sorted(changed)}
    audit.record(
        uow,
        EventType.CHATBOT_UPDATED,
        meta=meta,
        now=now,
        actor_id=caller.id,
        subject_id=chatbot.owner_id,
        details=details,
    )
    return chatbot


def delete_chatbot(
    *,
    uow: UnitOfWork,
    clock: Clock,
    engine: job_services.JobEngine,
    caller: User,
    chatbot_id: uuid.UUID,
    expected_versions: frozenset[int] | None,
    meta: RequestMeta,
) -> Job:
    """Ask for the chatbot's deletion: from now on it is gone for every read (404) and no longer
    listed; a `chatbots.delete` job (owned by the chatbot's owner) removes it and everything it
    holds. Records `chatbot_deleted`. Returns the job (the answer is 202 with its `Location`).

    Raises:
        NotFound: as `get_chatbot` (a chatbot already being deleted included).
        PreconditionFailed: the chatbot's version is not one of `expected_versions` (412).
    """
    chatbot = get_chatbot(uow=uow, caller=caller, chatbot_id=chatbot_id, lock=True)
    _check_version(chatbot, expected_versions)
    now = clock.now()
    chatbot.deleting_since = now
    uow.flush()
    usage.record_usage(
        uow,
        owner_id=chatbot.owner_id,
        meter="chatbots",
        quantity=-1,
        idempotency_key=f"chatbot:{chatbot.id}:deleted",
        clock=clock,
    )
    for document in uow.documents.of_chatbot(chatbot.id):  # gone with it: their quota is free again now
        release_document_usage(
            uow=uow, clock=clock, owner_id=chatbot.owner_id, document_id=document.id, size=document.size_bytes
        )
    caching.invalidate_after_commit(uow, caching.cache_of(engine), caching.PUBLIC_CHATBOTS, chatbot.public_id)
    job = job_services.enqueue(
        uow=uow,
        clock=clock,
        engine=engine,
        kind=DELETE_KIND,
        owner_id=chatbot.owner_id,
        subject=job_services.Subject("chatbot", str(chatbot.id)),
        payload={"chatbot_id": str(chatbot.id)},
    )
    audit.record(
        uow,
        EventType.CHATBOT_DELETED,
        meta=meta,
        now=now,
        actor_id=caller.id,
        subject_id=chatbot.owner_id,
        details={"chatbot_id": str(chatbot.id), "job_id": str(job.id)},
    )
    return job


def release_document_usage(
    *, uow: UnitOfWork, clock: Clock, owner_id: uuid.UUID, document_id: uuid.UUID, size: int
) -> None:
    """Give back a deleted document's use of the ``documents`` and ``storage_bytes`` meters
    (declared by `services.documents`), once per document whichever deletion comes first: its
    own (`services.documents.delete_document`) or its chatbot's (`delete_chatbot`)."""
    key = f"document:{document_id}:deleted"
    usage.record_usage(uow, owner_id=owner_id, meter="documents", quantity=-1, idempotency_key=key, clock=clock)
    usage.record_usage(uow, owner_id=owner_id, meter="storage_bytes", quantity=-size, idempotency_key=key, clock=clock)


def purge_chatbot(*, uow: UnitOfWork, chatbot_id: uuid.UUID) -> bool:
    """Remove a chatbot whose deletion was asked for, and what it holds (its documents' rows,
    its conversations and their messages, its websites and their pages, its knowledge index's
    passages, its row; the job first takes
    its documents' file keys with `services.documents.purge_chatbot_documents` and releases the
    files after the commit):
    the `chatbots.delete` job. Returns whether a row was removed; idempotent (a chatbot already
    removed, or whose owner's account was deleted with it, is nothing to do).

    A chatbot not marked for deletion is left alone (False): a job is only queued by
    `delete_chatbot`, in the transaction that marks it.
    """
    chatbot = uow.chatbots.get_for_deletion(chatbot_id)
    if chatbot is None or chatbot.deleting_since is None:
        return False
    for document in uow.documents.of_chatbot(chatbot.id):
        uow.documents.delete(document)
    uow.conversations.delete_chatbot(chatbot.id)
    uow.knowledge.delete_chatbot(chatbot.id)
    for website in uow.websites.of_chatbot(chatbot.id):
        uow.websites.delete(website)
    uow.chatbots.delete(chatbot)
    return True


def exported_chatbots(*, uow: UnitOfWork, owner_id: uuid.UUID) -> list[Chatbot]:
    """Every chatbot of the owner (those being deleted left out), oldest first: their data
    export's section."""
    return uow.chatbots.all_of(owner_id)
