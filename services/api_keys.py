"""API keys (issue 16): long-lived, scoped credentials a user makes for scripts and integrations,
accepted as ``Authorization: Bearer <key>`` wherever their scopes allow.

Rules and where they come from:

* **Shown once, stored hashed** (API_STYLE, "Credentials other than sessions"): a key is
  ``chk_`` + 16 hex digits (the *prefix*, not secret: shown in lists, used to find the key through
  a unique index) + ``_`` + ``secrets.token_urlsafe(32)`` (256 random bits). Only the SHA-256 of
  the whole key is kept. A fast hash is the norm for machine-made secrets of this strength (GitHub's
  and Stripe's keys are stored so): nothing can be guessed of 256 random bits, so a slow password
  hash would only cost CPU on every request. The stored and computed digests are compared with
  `hmac.compare_digest` (constant time). Not an HMAC under the server's secret: rotating
  `JWT_SECRET` must not invalidate every key.
* **Scoped** (`Scope`; the contract's `ApiKeyScope` lists the same values): each operation that
  admits keys names the scopes it needs in ``x-api-key-scopes`` (`server.contract.api_key_scopes`
  reads and checks them at start-up); a key without them, or on an operation that declares none,
  is 403 `/problems/insufficient-scope` naming the scopes needed (`authorize_scopes`). Keys never
  reach the operations of the tags in `KEYLESS_TAGS` (sessions, passwords, the account, the audit
  log, API keys themselves) nor `admin` operations: a contract that says otherwise does not start.
* **A key acts as its owner**: the owner's user is the request's caller (owner-scoped reads work
  as for them, and the per-user rate limit counts the owner's budget, shared with their tokens).
* **Revoked or expired: 401 at once** (`authenticate` reads the key on every request). An
  account that is deactivated or deleted takes its keys with it.
* **A cap per user** (`MAX_ACTIVE_KEYS_PER_USER`, 25 keys neither revoked nor expired): one more is
  409 `/problems/api-key-limit-reached`. The owner's account row is locked for the count (README,
  "Read, check, write: locked"), so concurrent creations cannot pass it together.
* **Quota** (issue 17): a key counts on the owner's ``api_keys`` meter (`USAGE_METERS`,
  `services.usage`) from its creation until it is revoked or expires (an expired key is given
  back at the owner's next creation, before the check, so the meter and the cap above agree);
  a creation over the plan's limit is 402 `/problems/quota-exceeded`.
* **`last_used_at`** is written at most once a minute per key (`LAST_USED_RESOLUTION`, as a
  session's), by a statement of its own outside the request's transaction.
* **Revocation keeps the row** (`revoked_at`): revoked keys are not listed nor readable (404), but
  stay in the owner's data export (never their hash) until the account is deleted.
* **Audit** (brief 004): `api_key_created` and `api_key_revoked` name the key's id, name, prefix
  and scopes (never the secret).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from persistence.accounts.models import User
from persistence.api_keys.models import ApiKey
from persistence.unit_of_work import UnitOfWork
from services import audit, usage
from services.accounts import LAST_USED_RESOLUTION
from services.audit import EventType, RequestMeta
from services.clock import Clock
from services.cursors import decode_cursor, page
from services.errors import Conflict, Forbidden, InvalidInput, InvalidToken, NotFound, ProblemType


class Scope(StrEnum):
    """What a key may do; the contract's `ApiKeyScope` and the README list the same values."""

    TASKS_READ = "tasks:read"
    """Read the owner's tasks, tags, statistics and reminders."""
    TASKS_WRITE = "tasks:write"
    """Create, change, complete and delete the owner's tasks and reminders."""
    CHATBOTS_READ = "chatbots:read"
    """Read the owner's chatbots and their documents and website sources."""
    CHATBOTS_WRITE = "chatbots:write"
    """Create, change and delete chatbots, upload documents, add and recrawl websites."""
    KNOWLEDGE_READ = "knowledge:read"
    """Search a chatbot's knowledge."""
    CHAT = "chat"
    """Talk to the owner's chatbots (the conversation operations)."""


KEYLESS_TAGS = frozenset({"auth", "users", "audit", "api-keys"})
"""Tags whose operations never admit a key, whatever the contract says: sessions, passwords,
the account and its export, the audit log, and API keys themselves (a leaked key must not be
able to make more keys, end sessions, change the password or delete the account)."""

KEY_PREFIX = "chk_"
"""What every key starts with: recognisable in logs and by secret scanners, and what tells a key
from an access token (a JWT starts with ``eyJ``)."""
KEY_PATTERN = re.compile(r"^(chk_[0-9a-f]{16})_[A-Za-z0-9_-]{43}$")
"""A whole key: its prefix (group 1), then the secret, 43 characters of URL-safe base64."""
MAX_ACTIVE_KEYS_PER_USER = 25
"""A user's keys that are neither revoked nor expired, at most."""
MAX_NAME_LENGTH = 100
"""A key's name, in characters (the contract's `maxLength`)."""
USAGE_METERS = [
    usage.Meter(
        name="api_keys",
        unit="keys",
        periodic=False,
        description="Your API keys that are not revoked (an expired one stops counting when you next create a key).",
    )
]
"""The meter this area counts (`services.usage`)."""


class ApiKeyLimitReached(Conflict):
    """The owner already has `MAX_ACTIVE_KEYS_PER_USER` active keys."""

    problem = ProblemType("/problems/api-key-limit-reached", "API key limit reached", 409)


class InsufficientScope(Forbidden):
    """An API key was presented to an operation its scopes do not cover (or one that admits no
    key); the detail names the scopes the operation needs."""

    problem = ProblemType("/problems/insufficient-scope", "Insufficient scope", 403)


@dataclass(frozen=True)
class CreatedKey:
    """A new key's row and the key itself, answered this once."""

    key: ApiKey
    secret: str


@dataclass(frozen=True)
class KeyPage:
    """One page of keys and the next page's cursor (None on the last)."""

    items: list[ApiKey]
    next_cursor: str | None


@dataclass(frozen=True)
class Authenticated:
    """A presented key that was accepted, and its owner (the request's caller)."""

    user: User
    key: ApiKey


def looks_like_key(token: str) -> bool:
    """Whether a bearer token is shaped as an API key (``chk_…``), not an access token: the
    bearer check sends it to `authenticate` instead of the JWT verification. Pure, no I/O."""
    return token.startswith(KEY_PREFIX)


def well_formed_key(token: str) -> bool:
    """Whether a bearer token has the exact shape of a key (`KEY_PATTERN`). Pure, no I/O."""
    return KEY_PATTERN.fullmatch(token) is not None


def hash_key(key: str) -> str:
    """The stored form of a key: SHA-256 of the whole key, 64 hex digits (see the module's
    docstring for why a fast hash)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key() -> tuple[str, str]:
    """A fresh key and its prefix: ``chk_`` + 16 hex digits (64 random bits, to find it) + ``_``
    + `secrets.token_urlsafe(32)` (256 random bits, the secret)."""
    prefix = KEY_PREFIX + secrets.token_hex(8)
    return f"{prefix}_{secrets.token_urlsafe(32)}", prefix


def is_active(key: ApiKey, *, now: datetime) -> bool:
    """Whether the key is neither revoked nor expired at `now`."""
    return key.revoked_at is None and (key.expires_at is None or key.expires_at > now)


def _checked_scopes(scopes: Iterable[str]) -> list[str]:
    given = list(scopes)
    if not given:
        raise InvalidInput("Give the key at least one scope.", pointer="/scopes")
    known = {scope.value for scope in Scope}
    for index, scope in enumerate(given):
        if scope not in known:
            names = ", ".join(sorted(known))
            raise InvalidInput(f"Unknown scope {scope!r}; the scopes are {names}.", pointer=f"/scopes/{index}")
    return sorted(set(given))


def create_key(
    *,
    uow: UnitOfWork,
    clock: Clock,
    owner: User,
    name: str,
    scopes: Iterable[str],
    expires_at: datetime | None = None,
    meta: RequestMeta,
) -> CreatedKey:
    """Make a key for `owner` and record `api_key_created`; the answer holds the key, the only
    time it is shown.

    Args:
        name: what the owner calls it, 1 to `MAX_NAME_LENGTH` characters (the contract's limits).
        scopes: `Scope` values, at least one; duplicates dropped, stored sorted.
        expires_at: an aware instant after now when the key stops working; None: it never expires.

    Raises:
        InvalidInput: no scope, an unknown one, or an `expires_at` not after now (400, naming the member).
        ApiKeyLimitReached: the owner already has `MAX_ACTIVE_KEYS_PER_USER` active keys (409).
        QuotaExceeded: the owner's plan allows no more keys (402).
    """
    chosen = _checked_scopes(scopes)
    now = clock.now()
    if expires_at is not None and expires_at <= now:
        raise InvalidInput("The expiry must be in the future.", pointer="/expires_at")
    uow.api_keys.lock_owner(owner.id)  # concurrent creations are counted one after the other
    if uow.api_keys.count_active(owner.id, now=now) >= MAX_ACTIVE_KEYS_PER_USER:
        raise ApiKeyLimitReached(
            f"You have {MAX_ACTIVE_KEYS_PER_USER} active API keys, the most allowed; revoke one first."
        )
    for old in uow.api_keys.all_of(owner.id):
        if old.revoked_at is None and not is_active(old, now=now):  # expired: no longer counted
            _release_usage(uow=uow, clock=clock, owner_id=owner.id, key_id=old.id)
    secret, prefix = new_key()
    key_id = uuid.uuid4()
    usage.record_usage(
        uow, owner_id=owner.id, meter="api_keys", quantity=1, idempotency_key=f"api_key:{key_id}", clock=clock
    )
    key = ApiKey(
        id=key_id,
        owner_id=owner.id,
        name=name,
        prefix=prefix,
        secret_hash=hash_key(secret),
        scopes=chosen,
        created_at=now,
        expires_at=expires_at,
        last_used_at=None,
        revoked_at=None,
    )
    uow.api_keys.add(key)
    audit.record(
        uow,
        EventType.API_KEY_CREATED,
        meta=meta,
        now=now,
        actor_id=owner.id,
        subject_id=owner.id,
        details=_audit_details(key),
    )
    return CreatedKey(key, secret)


def _release_usage(*, uow: UnitOfWork, clock: Clock, owner_id: uuid.UUID, key_id: uuid.UUID) -> None:
    """Give back a key's place on the ``api_keys`` meter, once, whether it expired or was revoked first."""
    key = f"api_key:{key_id}:released"
    usage.record_usage(uow, owner_id=owner_id, meter="api_keys", quantity=-1, idempotency_key=key, clock=clock)


def _audit_details(key: ApiKey) -> dict[str, object]:
    return {"api_key_id": str(key.id), "name": key.name, "prefix": key.prefix, "scopes": list(key.scopes)}


def get_key(*, uow: UnitOfWork, owner_id: uuid.UUID, key_id: uuid.UUID) -> ApiKey:
    """The owner's key (expired ones included).

    Raises:
        NotFound: no such key, a revoked one, or another user's (API_STYLE, Security: no existence leak).
    """
    key = uow.api_keys.get(owner_id=owner_id, key_id=key_id)
    if key is None:
        raise NotFound("No API key with this id exists for you.")
    return key


def list_keys(*, uow: UnitOfWork, owner_id: uuid.UUID, limit: int, cursor: str | None = None) -> KeyPage:
    """The owner's keys that were not revoked (expired ones included), newest first, `limit`
    per page after `cursor`.

    Raises:
        InvalidInput: a cursor this list did not make.
    """
    rows = uow.api_keys.page(owner_id=owner_id, limit=limit + 1, before=decode_cursor(cursor) if cursor else None)
    items, next_cursor = page(rows, limit, lambda key: (key.created_at, key.id))
    return KeyPage(items, next_cursor)


def revoke_key(*, uow: UnitOfWork, clock: Clock, owner: User, key_id: uuid.UUID, meta: RequestMeta) -> None:
    """Revoke the owner's key at once (the next request with it is 401) and record `api_key_revoked`.

    Raises:
        NotFound: no such key, one already revoked, or another user's.
    """
    key = get_key(uow=uow, owner_id=owner.id, key_id=key_id)
    now = clock.now()
    if not uow.api_keys.revoke(owner_id=owner.id, key_id=key_id, now=now):
        raise NotFound("No API key with this id exists for you.")  # revoked by a concurrent request
    _release_usage(uow=uow, clock=clock, owner_id=owner.id, key_id=key_id)
    details = _audit_details(key)
    audit.record(
        uow, EventType.API_KEY_REVOKED, meta=meta, now=now, actor_id=owner.id, subject_id=owner.id, details=details
    )


def authenticate(*, uow: UnitOfWork, clock: Clock, key: str) -> Authenticated:
    """The owner of a presented key, if the key is well-formed, known (by its prefix), its
    secret matches (compared in constant time), it is neither revoked nor expired and its owner's
    account is active; records its use (at most once a minute).

    Raises:
        InvalidToken: for any failure (401); the reason is not told to the client.
    """
    match = KEY_PATTERN.fullmatch(key)
    found = uow.api_keys.by_prefix(match.group(1)) if match else None
    if found is None:
        raise InvalidToken("The API key is invalid, expired or revoked.")
    stored, user = found
    now = clock.now()
    if not hmac.compare_digest(stored.secret_hash, hash_key(key)) or not is_active(stored, now=now):
        raise InvalidToken("The API key is invalid, expired or revoked.")
    if user.status != "active":
        raise InvalidToken("The API key is invalid, expired or revoked.")
    if stored.last_used_at is None or stored.last_used_at < now - LAST_USED_RESOLUTION:
        uow.api_keys.mark_used(stored.id, now=now, older_than=now - LAST_USED_RESOLUTION)
    return Authenticated(user, stored)


def authorize_scopes(*, operation_id: str, required: frozenset[str] | None, granted: Iterable[str]) -> None:
    """Check that a key holding `granted` scopes may call an operation needing `required` (its
    ``x-api-key-scopes``: every one of them), or None when the operation admits no key.

    Raises:
        InsufficientScope: the operation admits no key, or the key lacks a required scope (403).
    """
    if required is None:
        raise InsufficientScope(f"{operation_id} cannot be called with an API key; use an access token.")
    missing = sorted(required - set(granted))
    if missing:
        raise InsufficientScope(f"{operation_id} needs an API key with the scope {', '.join(missing)}.")


def exported_keys(*, uow: UnitOfWork, owner_id: uuid.UUID) -> list[ApiKey]:
    """Every key of the owner, revoked ones included, oldest first: their data export's section."""
    return uow.api_keys.all_of(owner_id)
