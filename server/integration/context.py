"""What a handler needs from the request it serves: the unit of work, the clock, the account
configuration and the authenticated user, and the app-wide objects in a typed `AppContext`.
Handlers import these, never Flask."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import flask
from connexion import context as connexion_context
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from persistence.accounts.models import User
from persistence.conversations.models import Conversation
from persistence.unit_of_work import UnitOfWork
from server.integration.request_context import current_request_id, current_state
from server.settings import Settings
from services import accounts, api_keys, public_chatbots
from services.access import Access, authorize
from services.accounts import AuthConfig
from services.audit import RequestMeta
from services.billing_state import BillingConfig
from services.clock import Clock
from services.errors import InvalidToken, NotFound
from services.jobs import JobEngine
from services.payments import PaymentProvider
from services.provider_events import ProviderEventConfig
from services.tokens import AccessClaims
from services.webhooks import WebhookConfig

EXTENSION = "charter"


@dataclass(frozen=True)
class ServiceInfo:
    """What `GET /` tells about the service (brief 001)."""

    name: str
    version: str
    docs_url: str
    openapi_url: str
    api_prefix: str


@dataclass
class AppContext:
    """The objects `create_app` builds once and every request shares.

    Attributes:
        settings: the configuration, read once.
        engine: the process's database engine (its pool).
        session_factory: transactional sessions, for requests that write.
        read_session_factory: autocommit sessions, for GET and HEAD.
        auth: token issuer, password hasher and policies, lockout and reset settings.
        clock: what the services take as the current time (a test may swap in a FrozenClock).
        probes: readiness checks by dependency name: each answers True when it is reachable,
            or is None when the dependency is not configured.
        started_at: `time.monotonic()` at start-up, for the liveness probe's uptime.
        service_info: what `GET /` says.
        access: each operation's access policy (its `x-access`), by operationId.
        api_key_scopes: the scopes each operation that admits API keys needs (its
            `x-api-key-scopes`), by operationId; the others refuse keys.
        jobs: the job engine: the declared kinds and the queue (this process only enqueues).
        webhooks: the webhook adapters (SSRF guard, sender, secret box).
        publish_events: receives a request's unit of work and the events it recorded, at its
            commit and in its transaction (`UnitOfWork.publish`).
        breaker_states: the state of each outside dependency's circuit breaker in this process,
            by name (``closed``, ``open``, ``half_open``; a family ``closed`` or
            ``partly_open``): `adapters.resilience.states`.
        payment_provider: the payment provider PAYMENT_PROVIDER names (the one `billing` holds).
        billing: the billing configuration (provider, TRIAL_DAYS, DUNNING_RETRY_DAYS), the one
            the job engine's context holds too.
        provider_events: the inbound provider webhooks' secrets and tolerance (billing, issue 17).
    """

    settings: Settings
    engine: Engine
    session_factory: sessionmaker[Session]
    read_session_factory: sessionmaker[Session]
    auth: AuthConfig
    clock: Clock
    probes: dict[str, Callable[[], bool] | None]
    started_at: float
    service_info: ServiceInfo
    access: dict[str, Access]
    jobs: JobEngine
    webhooks: WebhookConfig
    publish_events: Callable[[UnitOfWork, list[Any]], None]
    api_key_scopes: dict[str, frozenset[str]] = field(default_factory=dict)
    breaker_states: Callable[[], dict[str, str]] = dict
    payment_provider: PaymentProvider | None = None
    billing: BillingConfig | None = None
    provider_events: ProviderEventConfig = field(default_factory=ProviderEventConfig)


def state() -> AppContext:
    """The app-wide objects built by `create_app`."""
    context: AppContext = flask.current_app.extensions[EXTENSION]
    return context


def job_engine() -> JobEngine:
    """The job engine, for operations that start or change jobs."""
    return state().jobs


def webhook_config() -> WebhookConfig:
    """The webhook adapters, for the webhook operations."""
    return state().webhooks


def billing_config() -> BillingConfig:
    """The billing configuration, for the billing operations."""
    config = state().billing
    if config is None:
        raise RuntimeError("the app was built without a billing configuration")
    return config


def clock() -> Clock:
    """The clock the services read the current time from."""
    return state().clock


READ_METHODS = frozenset({"GET", "HEAD"})


def unit_of_work() -> UnitOfWork:
    """The request's unit of work, created on first use.

    GET and HEAD read without a transaction (autocommit: no BEGIN and COMMIT round trips). The
    few writes a read makes stand alone and are safe to keep if the request then fails: the
    once-a-minute `last_used_at` of a session, and the audit event of a data export.
    """
    if "unit_of_work" not in flask.g:
        app = state()
        factory = app.read_session_factory if flask.request.method in READ_METHODS else app.session_factory
        flask.g.unit_of_work = UnitOfWork(factory, publish=app.publish_events)
    unit: UnitOfWork = flask.g.unit_of_work
    return unit


def fresh_units() -> Callable[[], UnitOfWork]:
    """A factory of units of work of their own, not the request's, for work that goes on after
    the handler returned (a streamed answer's steps): each is used as ``with units() as uow:``,
    commits when its block ends, and holds a pooled connection only while the block runs."""
    app = state()
    return lambda: UnitOfWork(app.session_factory, publish=app.publish_events)


def commit_request_unit() -> None:
    """Commit what the request's unit of work holds so far (the caller's session check), so it
    keeps no transaction (on SQLite, possibly the write lock) while a stream's own units of work
    run; the request's end commits nothing more."""
    unit = flask.g.get("unit_of_work")
    if unit is not None:
        unit.commit()


def auth_config() -> AuthConfig:
    """Token issuer, password hasher and lifetimes."""
    return state().auth


def header(name: str) -> str | None:
    """A header of the request being served, or None."""
    return flask.request.headers.get(name)


def request_meta() -> RequestMeta:
    """Where the request came from, for sessions and audit events: the client address (the
    forwarded one behind TRUSTED_PROXIES), the User-Agent and the request id."""
    return RequestMeta(
        client_address=printable(flask.request.remote_addr, limit=64),
        user_agent=printable(flask.request.headers.get("User-Agent"), limit=500),
        request_id=current_request_id(),
    )


def printable(text: str | None, *, limit: int) -> str | None:
    """Client-sent text made safe to store and show: control characters (a tab is legal in a
    header) become spaces, and the length is capped."""
    if text is None:
        return None
    return "".join(" " if ord(ch) < 0x20 or ord(ch) == 0x7F else ch for ch in text)[:limit]


def access_claims() -> AccessClaims | None:
    """The verified claims of the request's access token, or None on a public operation."""
    try:
        token_info = connexion_context.context.get("token_info")
    except RuntimeError:  # no operation matched (e.g. an unknown path on its way to a 404)
        return None
    return token_info.get("claims") if isinstance(token_info, dict) else None


def _presented_api_key() -> str | None:
    """The API key the request's bearer check handed on (`server.integration.security`), or None."""
    try:
        token_info = connexion_context.context.get("token_info")
    except RuntimeError:
        return None
    key = token_info.get("api_key") if isinstance(token_info, dict) else None
    return key if isinstance(key, str) else None


def _presented_visitor_token() -> str | None:
    """The visitor token the request's bearer check handed on, or None."""
    try:
        token_info = connexion_context.context.get("token_info")
    except RuntimeError:
        return None
    token = token_info.get("visitor_token") if isinstance(token_info, dict) else None
    return token if isinstance(token, str) else None


def visitor_conversation() -> Conversation:
    """The visitor's conversation its token opened (`Access.VISITOR` operations). Raises
    InvalidToken on any other operation (a wiring bug)."""
    conversation = flask.g.get("visitor_conversation")
    if conversation is None:
        raise InvalidToken("This operation needs a visitor token.")
    return conversation


def principal() -> User:
    """The authenticated user. Raises InvalidToken on a public operation (a wiring bug)."""
    user = flask.g.get("principal")
    if user is None:
        raise InvalidToken("This operation needs an access token.")
    return user


def load_principal() -> None:
    """Before each request: when an access token was verified, check its session is still open
    and remember its user; when an API key was presented, check it (known, secret matching,
    neither revoked nor expired: 401 otherwise) and that its scopes cover the operation's
    `x-api-key-scopes` (403 otherwise), and remember its owner as the caller; on a `visitor`
    operation, check the visitor token opens the conversation the path names
    (`services.public_chatbots.authenticate_visitor`: 401 or 404) and remember that
    conversation (`visitor_conversation`); then apply the
    operation's access policy (`x-access`, through `services.access.authorize`), so no handler
    runs for a caller its policy refuses. A logged-out session's tokens fail here, on every
    process, because the check reads the database.

    A request that connexion's router did not match never reaches a handler: Flask's router is
    more lenient with odd percent-encoded paths, and connexion's handler wrapper would fail
    without an operation, so such a request is a 404 here.
    """
    try:
        operation_id = connexion_context.operation.operation_id
    except RuntimeError:
        raise NotFound("No operation matches this path.") from None
    claims = access_claims()
    caller = None
    if claims is not None:
        caller = flask.g.principal = accounts.current_user(uow=unit_of_work(), clock=clock(), claims=claims)
    elif (key := _presented_api_key()) is not None:
        found = api_keys.authenticate(uow=unit_of_work(), clock=clock(), key=key)
        caller = flask.g.principal = found.user
        flask.g.api_key = found.key
        api_keys.authorize_scopes(
            operation_id=operation_id, required=state().api_key_scopes.get(operation_id), granted=found.key.scopes
        )
    policy = state().access[operation_id]
    visitor = False
    if policy is Access.VISITOR and (token := _presented_visitor_token()) is not None:
        conversation_id = _path_uuid("conversation_id")
        if conversation_id is None:
            raise NotFound("No conversation with this id for this visitor token.")
        flask.g.visitor_conversation, _chatbot = public_chatbots.authenticate_visitor(
            uow=unit_of_work(), clock=clock(), token=token, conversation_id=conversation_id
        )
        visitor = True
    if caller is not None:
        request_state = current_state()
        if request_state is not None:
            request_state.user_id = str(caller.id)
    authorize(policy, caller=caller, owner_id=_path_owner() if policy is Access.OWNER else None, visitor=visitor)


def _path_owner() -> uuid.UUID | None:
    """The `user_id` of the request's path (already checked as a UUID by the contract)."""
    return _path_uuid("user_id")


def _path_uuid(name: str) -> uuid.UUID | None:
    """The path parameter `name` as a UUID (already checked as one by the contract), or None."""
    value = (flask.request.view_args or {}).get(name)
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def payment_provider() -> PaymentProvider:
    """The payment provider PAYMENT_PROVIDER names (set up by `create_app`)."""
    provider = state().payment_provider
    if provider is None:
        raise LookupError("the app was built without a payment provider")
    return provider


def provider_event_config() -> ProviderEventConfig:
    """The inbound provider webhooks' secrets and signature tolerance."""
    return state().provider_events


def raw_body() -> bytes:
    """The request body exactly as received (for a signature over the bytes: the provider
    webhooks, whose contract body is marked ``x-raw-body`` so nothing parses it before)."""
    return flask.request.get_data(cache=True)
