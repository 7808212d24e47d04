"""Stripe's webhook signature scheme, both ways (issue 17; Stripe's docs, "Verify webhook
signatures manually"): the header ``Stripe-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>…]``,
where each ``v1`` is HMAC-SHA256, keyed with a webhook signing secret, of ``"<t>.<raw body>"``.

`sign` is what the fake provider's events are signed with (`services.provider_events`; a test
checks them with the `stripe` package's own `stripe.Webhook.construct_event`, unmodified).
`verify` is what our inbound endpoint checks, on the raw bytes before anything parses them:

* the header must hold exactly one ``t`` (an integer) and at least one ``v1``; other schemes
  (``v0``, the test-mode scheme) are ignored, as Stripe's libraries do;
* the timestamp must be within `tolerance_seconds` (300, Stripe's default) of now, either way:
  an old one is a replay, one from the future a forgery or a broken clock (Stripe's libraries
  reject only old ones; rejecting both costs nothing);
* it is genuine when *any* ``v1`` matches the HMAC under *any* of our secrets: Stripe sends one
  ``v1`` per active secret while its secret is being rolled, and we accept several of ours (the
  settings' comma-separated list) while we change ours;
* every comparison is constant-time (`hmac.compare_digest`), and every pair is compared (no early
  exit on the first match), so timing tells nothing about which secret or signature matched.

`stripe.WebhookSignature.verify_header` does most of this but takes one secret, reads the wall
clock itself (tests use a frozen clock) and accepts timestamps from the future; hence this module.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

SCHEME = "v1"
DEFAULT_TOLERANCE_SECONDS = 300
MAX_HEADER_LENGTH = 4096
"""A longer header is refused before it is split (no legitimate one comes near)."""
MAX_SIGNATURES = 16
"""At most this many signatures are checked per delivery (Stripe sends one per active secret)."""


class SignatureInvalid(Exception):
    """The signature header is missing, malformed, stale or matches none of the secrets; the
    message says which, for logs (the client learns only that the signature was refused)."""


def signature(payload: bytes, *, secret: str, timestamp: int) -> str:
    """The hex HMAC-SHA256 of ``"<timestamp>.<payload>"`` under `secret`."""
    signed = str(timestamp).encode("ascii") + b"." + payload
    return hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()


def sign(payload: bytes, *, secrets: Sequence[str], timestamp: int) -> str:
    """The ``Stripe-Signature`` header value for `payload` sent at `timestamp` (unix seconds):
    one ``v1`` per secret, as Stripe sends while a secret is being rolled."""
    if not secrets:
        raise ValueError("at least one secret is needed to sign")
    parts = [f"t={timestamp}"] + [
        f"{SCHEME}={signature(payload, secret=secret, timestamp=timestamp)}" for secret in secrets
    ]
    return ",".join(parts)


def parse_header(header: str) -> tuple[int, list[str]]:
    """The timestamp and the ``v1`` signatures of a header.

    Raises:
        SignatureInvalid: too long, no or several ``t``, a ``t`` that is not an integer, no ``v1``.
    """
    if len(header) > MAX_HEADER_LENGTH:
        raise SignatureInvalid("signature header too long")
    timestamps: list[str] = []
    signatures: list[str] = []
    for item in header.split(","):
        key, separator, value = item.strip().partition("=")
        if not separator:
            continue
        if key == "t":
            timestamps.append(value)
        elif key == SCHEME:
            signatures.append(value)
    if len(timestamps) != 1 or not timestamps[0].isascii() or not timestamps[0].isdigit():
        raise SignatureInvalid("signature header without one integer timestamp")
    if not signatures:
        raise SignatureInvalid(f"signature header without a {SCHEME} signature")
    return int(timestamps[0]), signatures[:MAX_SIGNATURES]


def verify(
    payload: bytes,
    header: str | None,
    *,
    secrets: Sequence[str],
    now: float,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
) -> int:
    """Check that `header` signs `payload` under one of `secrets`, within `tolerance_seconds` of
    `now` (unix seconds). Returns the signed timestamp.

    Raises:
        SignatureInvalid: no header, a malformed one, a stale one, or no signature matching.
    """
    if not secrets:
        raise SignatureInvalid("no webhook secret is configured")
    if not header:
        raise SignatureInvalid("no signature header")
    timestamp, given = parse_header(header)
    if abs(now - timestamp) > tolerance_seconds:
        raise SignatureInvalid("signature timestamp outside the tolerance")
    matched = False
    for secret in secrets:
        expected = signature(payload, secret=secret, timestamp=timestamp).encode("ascii")
        for candidate in given:
            # compare_digest on bytes: a non-ASCII candidate cannot raise, and costs the same time
            matched |= hmac.compare_digest(expected, candidate.encode("utf-8", errors="replace"))
    if not matched:
        raise SignatureInvalid("no signature matches")
    return timestamp
