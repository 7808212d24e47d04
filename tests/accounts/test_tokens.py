"""Access tokens: a verified token is remembered, but only for as long as it is valid, and a
token that was never verified (tampered, expired, another type) is still refused (RFC 8725)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import jwt
import pytest

from services.clock import FrozenClock
from services.errors import InvalidToken
from services.tokens import TokenIssuer
from tests.helpers import TEST_SECRET


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(datetime.now(UTC))


@pytest.fixture
def issuer(clock) -> TokenIssuer:
    return TokenIssuer(key=TEST_SECRET, issuer="charter", audience="charter-api", access_ttl_seconds=900, clock=clock)


def _token(issuer: TokenIssuer, clock: FrozenClock) -> tuple[str, uuid.UUID]:
    user = uuid.uuid4()
    return issuer.issue(user_id=user, session_id=uuid.uuid4(), now=clock.now()), user


def test_a_verified_token_is_not_verified_again_while_it_is_valid(issuer, clock, monkeypatch):
    token, user = _token(issuer, clock)
    assert issuer.verify(token).user_id == user
    monkeypatch.setattr(jwt.api_jwt, "decode_complete", lambda *a, **k: pytest.fail("verified twice"))
    assert issuer.verify(token).user_id == user


def test_a_remembered_token_expires_at_its_exp(issuer, clock):
    token, _ = _token(issuer, clock)
    issuer.verify(token)
    clock.at += timedelta(seconds=899)
    issuer.verify(token)  # one second left
    clock.at += timedelta(seconds=1)
    with pytest.raises(InvalidToken):
        issuer.verify(token)  # at exp: refused, as PyJWT refuses it (its check runs again)


def test_a_tampered_token_is_refused_after_the_genuine_one_was_verified(issuer, clock):
    token, _ = _token(issuer, clock)
    issuer.verify(token)
    header, payload, signature = token.split(".")
    for forged in (f"{header}.{payload}.{signature[:-2]}AA", f"{header}.{payload[:-2]}AA.{signature}"):
        with pytest.raises(InvalidToken):
            issuer.verify(forged)


def test_the_memory_is_bounded(issuer, clock, monkeypatch):
    monkeypatch.setattr("services.tokens.VERIFIED_TOKENS", 3)
    tokens = [_token(issuer, clock)[0] for _ in range(5)]
    for token in tokens:
        issuer.verify(token)
    assert list(issuer._verified) == tokens[2:]
