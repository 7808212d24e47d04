"""Idempotency-Key for creating POSTs (API_STYLE, Safe writes; IETF draft "The
Idempotency-Key HTTP header field"): a retry gets the first answer instead of a second effect.

* first request with a key: processed; its answer is stored with the change, in one commit;
* same key, same request (method, path, body), after that: the stored answer, with
  `Idempotent-Replayed: true`;
* same key, another request: 422 `/problems/idempotency-key-reused`;
* same key while the first is still being processed: 409 `/problems/idempotency-in-progress`.

Keys are scoped to the authenticated user, so one user's key never reveals another's answer,
and kept for 24 hours. A request that fails releases its key, so it can be retried.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import flask

from persistence.idempotency.repository import IdempotencyClaimContended, IdempotencyClaims
from server.integration.context import clock, principal, state, unit_of_work
from services.errors import IdempotencyInProgress, IdempotencyKeyReused

HEADER = "Idempotency-Key"
RETENTION = timedelta(hours=24)
REPLAYED_HEADERS = ("Content-Type", "Location", "ETag")


def _fingerprint(body: Any) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{flask.request.method} {flask.request.path}\n{canonical}".encode()).hexdigest()


def idempotent(handler: Callable[..., tuple]) -> Callable[..., tuple]:
    """Decorate a handler of a creating POST whose answer is ``(body, status, headers)``."""

    @functools.wraps(handler)
    def wrapper(*args: Any, **kwargs: Any) -> tuple:
        key = flask.request.headers.get(HEADER)
        if key is None:
            return handler(*args, **kwargs)
        owner_id = principal().id
        records = IdempotencyClaims(state().session_factory)
        now = clock().now()
        fingerprint = _fingerprint(kwargs.get("body"))
        try:
            existing = records.claim(
                owner_id=owner_id, key=key, fingerprint=fingerprint, now=now, expires_at=now + RETENTION
            )
        except IdempotencyClaimContended:
            raise IdempotencyInProgress(
                "Other requests with this Idempotency-Key are being processed; retry later."
            ) from None
        if existing is not None:
            if existing.fingerprint != fingerprint:
                raise IdempotencyKeyReused(
                    "This Idempotency-Key was used for another request; use a new key for a new request."
                )
            if existing.state != "completed":
                raise IdempotencyInProgress(
                    "A request with this Idempotency-Key is still being processed; retry later."
                )
            headers = {**(existing.response_headers or {}), "Idempotent-Replayed": "true"}
            body = json.loads(existing.response_body) if existing.response_body else None
            return body, existing.response_status, headers
        flask.g.idempotency_claim = (records, owner_id, key)
        body, status, headers = handler(*args, **kwargs)
        stored = {name: value for name, value in headers.items() if name in REPLAYED_HEADERS}
        unit_of_work().idempotency.complete(
            owner_id=owner_id,
            key=key,
            status=status,
            headers=stored,
            body=json.dumps(body) if body is not None else None,
        )
        return body, status, headers

    return wrapper


def release_on_failure(failed: bool) -> None:
    """At the end of a request: a failed request with a claimed key releases it."""
    claim = flask.g.pop("idempotency_claim", None)
    if claim is not None and failed:
        records, owner_id, key = claim
        records.release(owner_id=owner_id, key=key)
