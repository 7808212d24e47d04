"""Outbound webhooks (issue 14, slice 3): a user's endpoints, the events fanned out to them, and
their signed, retried deliveries.

Rules and where they come from:

* **Standard Webhooks** (standardwebhooks.com, spec v1): every delivery is a POST of the event
  (``{type, id, created_at, data}``, API_STYLE "Webhooks") with the headers `webhook-id` (the
  event id: the same on every attempt and on a redelivery, so receivers drop duplicates),
  `webhook-timestamp` (Unix seconds of the attempt) and `webhook-signature` (``v1,<base64
  HMAC-SHA256>`` of ``id.timestamp.body``, computed by the `standardwebhooks` library). The
  secret is ``whsec_`` + base64 of 32 random bytes, answered once, at creation or rotation.
* **Rotation**: after `rotate_secret` the previous secret keeps signing beside the new one for
  `WebhookConfig.rotation_overlap` (24 h): both signatures are in `webhook-signature`, so a
  receiver can switch secrets without dropping a delivery.
* **Secrets at rest are encrypted** (API_STYLE, "Credentials other than sessions") through the
  `SecretBox` port (MultiFernet under ENCRYPTION_KEYS); `reencrypt_secrets` moves them to the
  newest key (`charter rotate-encryption-key`).
* **SSRF guard** (API_STYLE, Webhooks; OWASP SSRF Prevention Cheat Sheet): a URL is checked by
  the `UrlGuard` port when the endpoint is created and again by the sender on every delivery
  (which follows no redirect).
* **At least once, with backoff**: each delivery is a `webhooks.deliver` job (jobs/webhooks.py)
  whose `RetryPolicy` waits 1 minute, doubling, up to a day between attempts; an attempt that
  gets no 2xx raises `DeliveryFailed` and the job engine retries it.
* **An endpoint failing continuously for a day is disabled** (`disable_after`, as Stripe and
  Svix do). Its owner is told by an in-app notification of type `webhook_endpoint_disabled`
  (in the transaction that disables it) and sees it on the endpoint (`enabled: false`,
  `disabled_reason`, `failing_since`); the log has `webhook_endpoint_disabled`.
"""

from __future__ import annotations

import base64
import json
import secrets
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import structlog
from standardwebhooks.webhooks import Webhook

from persistence.notifications.models import Notification
from persistence.unit_of_work import UnitOfWork
from persistence.webhooks.models import WebhookDelivery, WebhookEndpoint
from services import jobs as job_services
from services.clock import Clock
from services.cursors import decode_cursor, page
from services.errors import Conflict, InvalidInput, NotFound, ProblemType
from services.events import Event, EventType

log = structlog.get_logger(__name__)

DELIVER_KIND = "webhooks.deliver"
"""The job kind that delivers one webhook (declared in jobs/webhooks.py)."""
MAX_ENDPOINTS_PER_USER = 20
"""A user's endpoints at most (each event costs one job per endpoint)."""
SECRET_PREFIX = "whsec_"  # noqa: S105 - the Standard Webhooks prefix, not a secret
SECRET_BYTES = 32
"""Standard Webhooks: secrets of 24 to 64 random bytes, base64, prefixed ``whsec_``."""


class UnsafeWebhookUrl(InvalidInput):
    """The URL is refused by the SSRF guard (its `detail` names the rule: e.g. a loopback address)."""

    problem = ProblemType("/problems/unsafe-webhook-url", "Webhook URL refused", 422)


class DeliveryFailed(Exception):
    """An attempt got no 2xx answer: the `webhooks.deliver` job lets it propagate, so the job
    engine retries after the kind's backoff (it is not a `DomainError`, which would not be)."""


# --- ports ------------------------------------------------------------------------------------


class UrlGuard(Protocol):
    """The SSRF guard (`adapters/address_guard.py` `AddressGuard`; `FakeGuard` in tests)."""

    def check(self, url: str) -> str | None:
        """Why `url` may not be called (the rule, in words), or None when it may."""
        ...


class SendOutcome(Protocol):
    """What one attempt got: the receiver's status (None: no answer), its duration in
    milliseconds, and the error in words when no answer came."""

    @property
    def status_code(self) -> int | None: ...

    @property
    def duration_ms(self) -> int: ...

    @property
    def error(self) -> str | None: ...


class WebhookSender(Protocol):
    """POSTs a delivery (`adapters/webhook_http.py` `HttpxSender`; `FakeSender` in tests)."""

    def send(self, url: str, *, headers: dict[str, str], body: bytes) -> SendOutcome:
        """POST `body` with `headers` to `url`, applying the SSRF guard, following no redirect.
        Never raises for what the receiver does: no answer is an outcome with `error` set."""
        ...


class SecretBox(Protocol):
    """Encryption of secrets at rest (`adapters/secret_box.py` `FernetBox`)."""

    def encrypt(self, plaintext: str) -> str:
        """`plaintext` encrypted under the newest key."""
        ...

    def decrypt(self, token: str) -> str:
        """The plaintext of a token made under any key (raises ValueError when none decrypts it)."""
        ...

    def rotate(self, token: str) -> str:
        """The same plaintext encrypted under the newest key."""
        ...


@dataclass
class WebhookConfig:
    """What the webhook services need besides a unit of work and a clock (built by the wiring).

    Attributes:
        guard: the SSRF guard, applied when an endpoint is created.
        sender: delivers (and applies the guard again to every connection).
        box: encrypts the signing secrets at rest.
        rotation_overlap: how long a rotated-out secret keeps signing beside the new one.
        disable_after: how long an endpoint may fail continuously before it is disabled.
    """

    guard: UrlGuard
    sender: WebhookSender
    box: SecretBox
    rotation_overlap: timedelta = timedelta(hours=24)
    disable_after: timedelta = timedelta(days=1)


def config_of(engine: job_services.JobEngine) -> WebhookConfig:
    """The webhook configuration the wiring put in the job engine's `context`.

    Raises:
        LookupError: the wiring gave none (a bug of the wiring).
    """
    config = engine.context.get("webhooks")
    if not isinstance(config, WebhookConfig):
        raise LookupError("the job engine has no webhook configuration")
    return config


# --- endpoints ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CreatedEndpoint:
    """A new endpoint and its signing secret, answered once."""

    endpoint: WebhookEndpoint
    secret: str


@dataclass(frozen=True)
class EndpointPage:
    """One page of endpoints and the cursor of the next page (None on the last page)."""

    items: list[WebhookEndpoint]
    next_cursor: str | None


@dataclass(frozen=True)
class DeliveryView:
    """A delivery as the API shows it: the row and the next attempt's time when one is queued."""

    delivery: WebhookDelivery
    next_attempt_at: datetime | None


@dataclass(frozen=True)
class DeliveryPage:
    """One page of deliveries and the cursor of the next page."""

    items: list[DeliveryView]
    next_cursor: str | None


def new_secret() -> str:
    """A fresh signing secret: ``whsec_`` + base64 of 32 random bytes (Standard Webhooks)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def _check_url(config: WebhookConfig, url: str) -> None:
    refused = config.guard.check(url)
    if refused is not None:
        reason = refused if len(refused) <= 300 else refused[:299] + "…"  # a problem's message is bounded
        raise UnsafeWebhookUrl(f"This URL cannot receive webhooks: {reason}.", pointer="/url")


def create_endpoint(
    *,
    uow: UnitOfWork,
    clock: Clock,
    config: WebhookConfig,
    owner_id: uuid.UUID,
    url: str,
    event_types: Iterable[str],
    description: str | None = None,
) -> CreatedEndpoint:
    """Create an enabled endpoint for `owner_id` and its signing secret (the only time the
    secret is answered).

    Args:
        url: an http(s) URL the SSRF guard accepts (at most 2048 characters, the contract's limit).
        event_types: `EventType` values, at least one (the contract's enum); duplicates dropped.
        description: free text, at most 500 characters.

    Raises:
        UnsafeWebhookUrl: the guard refuses the URL (422, naming the rule).
        Conflict: the owner already has `MAX_ENDPOINTS_PER_USER` endpoints.
    """
    _check_url(config, url)
    if uow.webhooks.count_endpoints(owner_id) >= MAX_ENDPOINTS_PER_USER:
        raise Conflict(f"You have {MAX_ENDPOINTS_PER_USER} webhook endpoints, the most allowed; delete one first.")
    now = clock.now()
    secret = new_secret()
    endpoint = WebhookEndpoint(
        id=uuid.uuid4(),
        owner_id=owner_id,
        url=url,
        description=description,
        event_types=sorted(set(event_types)),
        enabled=True,
        disabled_reason=None,
        secret_encrypted=config.box.encrypt(secret),
        previous_secret_encrypted=None,
        previous_secret_expires_at=None,
        failing_since=None,
        created_at=now,
        updated_at=now,
    )
    uow.webhooks.add_endpoint(endpoint)
    return CreatedEndpoint(endpoint, secret)


def get_endpoint(
    *, uow: UnitOfWork, owner_id: uuid.UUID, endpoint_id: uuid.UUID, lock: bool = False
) -> WebhookEndpoint:
    """The owner's endpoint.

    Raises:
        NotFound: no such endpoint, or another user's (API_STYLE, Security: no existence leak).
    """
    endpoint = uow.webhooks.endpoint(owner_id=owner_id, endpoint_id=endpoint_id, lock=lock)
    if endpoint is None:
        raise NotFound("No webhook endpoint with this id exists for you.")
    return endpoint


def list_endpoints(*, uow: UnitOfWork, owner_id: uuid.UUID, limit: int, cursor: str | None = None) -> EndpointPage:
    """The owner's endpoints, newest first, `limit` per page after `cursor`.

    Raises:
        InvalidInput: a cursor this list did not make.
    """
    rows = uow.webhooks.endpoints_page(
        owner_id=owner_id, limit=limit + 1, before=decode_cursor(cursor) if cursor else None
    )
    items, next_cursor = page(rows, limit, lambda endpoint: (endpoint.created_at, endpoint.id))
    return EndpointPage(items, next_cursor)


def update_endpoint(
    *,
    uow: UnitOfWork,
    clock: Clock,
    owner_id: uuid.UUID,
    endpoint_id: uuid.UUID,
    changes: Mapping[str, Any],
) -> WebhookEndpoint:
    """Change an endpoint's `events` (event types), `enabled` or `description` (the members
    of a validated `WebhookEndpointUpdate` body; others are not accepted by the contract).
    Enabling an endpoint clears its run of failures and the reason it was disabled.

    Raises:
        NotFound: as `get_endpoint`.
    """
    endpoint = get_endpoint(uow=uow, owner_id=owner_id, endpoint_id=endpoint_id, lock=True)
    if "events" in changes:
        endpoint.event_types = sorted(set(changes["events"]))
    if "description" in changes:
        endpoint.description = changes["description"]
    if "enabled" in changes:
        enabled = bool(changes["enabled"])
        if enabled and not endpoint.enabled:
            endpoint.failing_since = None
            endpoint.disabled_reason = None
        elif not enabled and endpoint.enabled:
            endpoint.disabled_reason = "Disabled by its owner."
        endpoint.enabled = enabled
    endpoint.updated_at = clock.now()
    uow.flush()
    return endpoint


def delete_endpoint(*, uow: UnitOfWork, owner_id: uuid.UUID, endpoint_id: uuid.UUID) -> None:
    """Delete an endpoint and its deliveries (queued attempts find it gone and stop).

    Raises:
        NotFound: as `get_endpoint`.
    """
    uow.webhooks.delete_endpoint(get_endpoint(uow=uow, owner_id=owner_id, endpoint_id=endpoint_id, lock=True))


def rotate_secret(
    *, uow: UnitOfWork, clock: Clock, config: WebhookConfig, owner_id: uuid.UUID, endpoint_id: uuid.UUID
) -> CreatedEndpoint:
    """Give the endpoint a new signing secret (answered once). The current one keeps signing
    beside it for `config.rotation_overlap` (24 h); a secret rotated out before that is dropped.

    Raises:
        NotFound: as `get_endpoint`.
    """
    endpoint = get_endpoint(uow=uow, owner_id=owner_id, endpoint_id=endpoint_id, lock=True)
    now = clock.now()
    secret = new_secret()
    endpoint.previous_secret_encrypted = endpoint.secret_encrypted
    endpoint.previous_secret_expires_at = now + config.rotation_overlap
    endpoint.secret_encrypted = config.box.encrypt(secret)
    endpoint.updated_at = now
    uow.flush()
    return CreatedEndpoint(endpoint, secret)


def exported_endpoints(*, uow: UnitOfWork, owner_id: uuid.UUID) -> list[WebhookEndpoint]:
    """Every endpoint of the owner, oldest first: their data export's section (no secrets)."""
    return uow.webhooks.all_endpoints(owner_id)


# --- deliveries -------------------------------------------------------------------------------


def list_deliveries(
    *, uow: UnitOfWork, owner_id: uuid.UUID, endpoint_id: uuid.UUID, limit: int, cursor: str | None = None
) -> DeliveryPage:
    """The endpoint's deliveries, newest first, `limit` per page after `cursor`.

    Raises:
        NotFound: as `get_endpoint`.
        InvalidInput: a cursor this list did not make.
    """
    get_endpoint(uow=uow, owner_id=owner_id, endpoint_id=endpoint_id)
    rows = uow.webhooks.deliveries_page(
        endpoint_id=endpoint_id, limit=limit + 1, before=decode_cursor(cursor) if cursor else None
    )
    views = [DeliveryView(delivery, next_at) for delivery, next_at in rows]
    items, next_cursor = page(views, limit, lambda view: (view.delivery.created_at, view.delivery.id))
    return DeliveryPage(items, next_cursor)


def _new_delivery(
    uow: UnitOfWork,
    clock: Clock,
    engine: job_services.JobEngine,
    endpoint: WebhookEndpoint,
    *,
    event_id: str,
    event_type: str,
    payload: dict[str, Any],
) -> tuple[WebhookDelivery, Any]:
    delivery = WebhookDelivery(
        id=uuid.uuid4(),
        endpoint_id=endpoint.id,
        event_id=event_id,
        event_type=event_type,
        payload=payload,
        status="pending",
        attempts=0,
        created_at=clock.now(),
    )
    uow.webhooks.add_delivery(delivery)
    job = job_services.enqueue(
        uow=uow,
        clock=clock,
        engine=engine,
        kind=DELIVER_KIND,
        owner_id=endpoint.owner_id,
        subject=job_services.Subject("webhook_delivery", str(delivery.id)),
        payload={"delivery_id": str(delivery.id)},
    )
    delivery.job_id = job.id
    uow.flush()
    return delivery, job


def redeliver(
    *,
    uow: UnitOfWork,
    clock: Clock,
    engine: job_services.JobEngine,
    owner_id: uuid.UUID,
    endpoint_id: uuid.UUID,
    delivery_id: uuid.UUID,
) -> Any:
    """Deliver a delivery's event to its endpoint again, as a new delivery with the same
    `webhook-id` (the event's id) and its own job; returns that job (the answer is 202 with its
    `Location`). A disabled endpoint answers 409 and nothing is queued.

    Raises:
        NotFound: as `get_endpoint`, or no such delivery of this endpoint.
        Conflict: the endpoint is disabled (enable it first).
    """
    endpoint = get_endpoint(uow=uow, owner_id=owner_id, endpoint_id=endpoint_id)
    original = uow.webhooks.delivery(delivery_id)
    if original is None or original.endpoint_id != endpoint.id:
        raise NotFound("No delivery with this id exists for this webhook endpoint.")
    if not endpoint.enabled:
        raise Conflict("The webhook endpoint is disabled; enable it before redelivering.")
    _delivery, job = _new_delivery(
        uow,
        clock,
        engine,
        endpoint,
        event_id=original.event_id,
        event_type=original.event_type,
        payload=dict(original.payload),
    )
    return job


def fan_out(
    *, uow: UnitOfWork, clock: Clock, engine: job_services.JobEngine, events: Iterable[Event]
) -> list[uuid.UUID]:
    """Make a delivery (and its `webhooks.deliver` job) of each event for every enabled endpoint
    of the event's owner subscribed to its type, in `uow` — the unit of work that recorded the
    events, before it commits (`UnitOfWork.publish`: the deliveries are the outbox, committed
    with the change or not at all). One query per owner finds the endpoints. Returns the new
    deliveries' ids."""
    made: list[uuid.UUID] = []
    endpoints_of: dict[uuid.UUID, list[WebhookEndpoint]] = {}
    for event in events:
        if event.owner_id not in endpoints_of:
            endpoints_of[event.owner_id] = uow.webhooks.enabled_endpoints(event.owner_id)
        for endpoint in endpoints_of[event.owner_id]:
            if event.type in endpoint.event_types:
                delivery, _job = _new_delivery(
                    uow, clock, engine, endpoint, event_id=event.id, event_type=event.type, payload=event.payload()
                )
                made.append(delivery.id)
    return made


def signature_headers(
    *, event_id: str, timestamp: datetime, body: bytes, secrets_in_use: Iterable[str]
) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt: `webhook-id`, `webhook-timestamp` (Unix
    seconds) and `webhook-signature`, one ``v1,<signature>`` per secret, space-separated."""
    signatures = [
        Webhook(secret).sign(msg_id=event_id, timestamp=timestamp, data=body.decode()) for secret in secrets_in_use
    ]
    return {
        "webhook-id": event_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": " ".join(signatures),
        "content-type": "application/json",
        "user-agent": "Charter-Webhooks/1",
    }


def signing_secrets(config: WebhookConfig, endpoint: WebhookEndpoint, now: datetime) -> list[str]:
    """The secrets that sign now: the current one, and the previous one within its overlap."""
    in_use = [config.box.decrypt(endpoint.secret_encrypted)]
    if (
        endpoint.previous_secret_encrypted
        and endpoint.previous_secret_expires_at is not None
        and now < endpoint.previous_secret_expires_at
    ):
        in_use.append(config.box.decrypt(endpoint.previous_secret_encrypted))
    return in_use


@dataclass(frozen=True)
class AttemptReport:
    """What `deliver` did: `sent` (False: nothing to do, e.g. already delivered or the endpoint
    is gone or disabled), the receiver's status, and whether the endpoint was disabled now."""

    sent: bool
    status_code: int | None = None
    succeeded: bool = False
    endpoint_disabled: bool = False


def deliver(
    *,
    unit_of_work: Callable[[], UnitOfWork],
    clock: Clock,
    config: WebhookConfig,
    delivery_id: uuid.UUID,
    final_attempt: bool,
) -> AttemptReport:
    """One attempt of a delivery (the `webhooks.deliver` job's body). Idempotent: a delivery
    that succeeded, or whose endpoint is gone or disabled, is left as it is (a disabled
    endpoint's pending delivery ends `failed`). The request is sent outside any transaction.

    A 2xx answer is a success and ends the endpoint's run of failures. Anything else is a
    failure: when the endpoint has failed continuously for `config.disable_after` (a day) it is
    disabled (and `webhook_endpoint_disabled` logged); otherwise, unless `final_attempt`, the delivery
    stays `pending` and `DeliveryFailed` is raised so the job is retried after its backoff.

    Raises:
        DeliveryFailed: the attempt failed and another one will be made.
    """
    now = clock.now()
    with unit_of_work() as uow:
        delivery = uow.webhooks.delivery(delivery_id)
        endpoint = uow.webhooks.endpoint_by_id(delivery.endpoint_id) if delivery is not None else None
        if delivery is None or endpoint is None or delivery.status != "pending":
            return AttemptReport(sent=False)
        if not endpoint.enabled:
            delivery.status = "failed"
            delivery.last_error = "The endpoint is disabled."
            delivery.finished_at = now
            return AttemptReport(sent=False)
        url = endpoint.url
        body = json.dumps(delivery.payload, separators=(",", ":"), ensure_ascii=False).encode()
        headers = signature_headers(
            event_id=delivery.event_id, timestamp=now, body=body, secrets_in_use=signing_secrets(config, endpoint, now)
        )
    outcome = config.sender.send(url, headers=headers, body=body)
    succeeded = outcome.status_code is not None and 200 <= outcome.status_code < 300
    finished = clock.now()
    disabled = False
    with unit_of_work() as uow:
        delivery = uow.webhooks.delivery(delivery_id, lock=True)
        endpoint = uow.webhooks.endpoint_by_id(delivery.endpoint_id, lock=True) if delivery is not None else None
        if delivery is None or endpoint is None:
            return AttemptReport(sent=True, status_code=outcome.status_code, succeeded=succeeded)
        delivery.attempts += 1
        delivery.last_attempt_at = now
        delivery.last_status_code = outcome.status_code
        delivery.last_duration_ms = outcome.duration_ms
        delivery.last_error = (outcome.error or None) and (outcome.error or "")[:500]
        if succeeded:
            delivery.status = "succeeded"
            delivery.finished_at = finished
            endpoint.failing_since = None
        else:
            if delivery.last_error is None:
                delivery.last_error = f"The receiver answered {outcome.status_code}, not 2xx."
            endpoint.failing_since = endpoint.failing_since or now
            if endpoint.enabled and finished - endpoint.failing_since >= config.disable_after:
                disabled = True
                endpoint.enabled = False
                endpoint.disabled_reason = (
                    f"Every delivery failed for {config.disable_after} (since "
                    f"{endpoint.failing_since.isoformat()}); enable it again once it answers."
                )
                endpoint.updated_at = finished
                uow.notifications.add(endpoint_disabled_notification(endpoint, now=finished))
                log.warning(
                    "webhook_endpoint_disabled",
                    webhook_endpoint_id=str(endpoint.id),
                    owner_id=str(endpoint.owner_id),
                    failing_since=endpoint.failing_since.isoformat(),
                )
            if disabled or final_attempt:
                delivery.status = "failed"
                delivery.finished_at = finished
        last_error = delivery.last_error
    report = AttemptReport(sent=True, status_code=outcome.status_code, succeeded=succeeded, endpoint_disabled=disabled)
    if not succeeded and not disabled and not final_attempt:
        raise DeliveryFailed(last_error or "delivery failed")
    return report


def endpoint_disabled_notification(endpoint: WebhookEndpoint, *, now: datetime) -> Notification:
    """The in-app notification telling the owner that `endpoint` was disabled (issue 14: "an
    endpoint failing continuously for a day is disabled and its owner notified"): its URL in
    the title, why and how to enable it again in the body."""
    return Notification(
        id=uuid.uuid4(),
        owner_id=endpoint.owner_id,
        type="webhook_endpoint_disabled",
        title=f"Webhook endpoint disabled: {endpoint.url}"[:300],
        body=(
            f"{endpoint.disabled_reason} Endpoint {endpoint.id}: "
            f'PATCH /api/v1/webhook-endpoints/{endpoint.id} with {{"enabled": true}} to enable it.'
        )[:2000],
        task_id=None,
        reminder_id=None,
        created_at=now,
        read_at=None,
    )


def reencrypt_secrets(*, unit_of_work: Callable[[], UnitOfWork], box: SecretBox, batch: int = 500) -> int:
    """Encrypt every stored signing secret again under the newest key (after a new key was put
    first in ENCRYPTION_KEYS), one unit of work per `batch` endpoints; returns how many
    endpoints were rewritten. Safe to run again: it only re-encrypts.

    Raises:
        ValueError: a secret that no key decrypts (the key that made it was removed too early).
    """
    rewritten = 0
    after: uuid.UUID | None = None
    while True:
        with unit_of_work() as uow:
            endpoints = uow.webhooks.every_endpoint(after=after, limit=batch)
            for endpoint in endpoints:
                endpoint.secret_encrypted = box.rotate(endpoint.secret_encrypted)
                if endpoint.previous_secret_encrypted:
                    endpoint.previous_secret_encrypted = box.rotate(endpoint.previous_secret_encrypted)
            rewritten += len(endpoints)
        if len(endpoints) < batch:
            return rewritten
        after = endpoints[-1].id


def event_types() -> list[str]:
    """Every event type an endpoint can subscribe to."""
    return [str(kind) for kind in EventType]
