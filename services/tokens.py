"""Access tokens (JWT, RFC 7519, used per RFC 8725) and opaque refresh tokens."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import jwt

from services.clock import Clock, SystemClock
from services.errors import InvalidToken

ALGORITHM = "HS256"
"""The only algorithm accepted: pinned, so `alg: none` or an RS/HS confusion cannot pass
(RFC 8725 sections 2.1 and 3.1)."""

ACCESS_TOKEN_TYPE = "at+jwt"  # noqa: S105 - a media type, not a secret
"""Explicit typing (RFC 8725 section 3.11, RFC 9068): a JWT of another kind is refused."""

REQUIRED_CLAIMS = ("iss", "aud", "sub", "exp", "iat", "jti", "sid")

VERIFIED_TOKENS = 10_000
"""How many verified access tokens `TokenIssuer.verify` remembers (a few MB at most)."""


@dataclass(frozen=True)
class AccessClaims:
    """The verified claims the service uses: the user (`sub`) and the session (`sid`)."""

    user_id: uuid.UUID
    session_id: uuid.UUID
    token_id: str
    expires_at: int


class TokenIssuer:
    """Issues and verifies access tokens.

    Args:
        key: the HS256 secret (at least 32 bytes, checked by settings).
        issuer: the `iss` claim written and required.
        audience: the `aud` claim written and required.
        access_ttl_seconds: lifetime of an access token.
    """

    def __init__(
        self, *, key: str, issuer: str, audience: str, access_ttl_seconds: int, clock: Clock | None = None
    ) -> None:
        self._key = key
        self.issuer = issuer
        self.audience = audience
        self.access_ttl_seconds = access_ttl_seconds
        self._clock = clock or SystemClock()
        self._verified: dict[str, AccessClaims] = {}

    def issue(self, *, user_id: uuid.UUID, session_id: uuid.UUID, now: datetime) -> str:
        """A signed access token for `user_id` in session `session_id`, valid from `now`."""
        issued_at = int(now.timestamp())
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": str(user_id),
            "sid": str(session_id),
            "jti": uuid.uuid4().hex,
            "iat": issued_at,
            "exp": issued_at + self.access_ttl_seconds,
        }
        return jwt.encode(claims, self._key, algorithm=ALGORITHM, headers={"typ": ACCESS_TOKEN_TYPE})

    def verify(self, token: str) -> AccessClaims:
        """Check signature, algorithm, type, issuer, audience, expiry and required claims.

        A token verified before is remembered (up to `VERIFIED_TOKENS`, oldest forgotten
        first) with its claims: everything checked of it but the expiry is a property of its
        bytes, so only the expiry is checked again, against this issuer's clock (a token expires
        at `exp`, as PyJWT has it; a first verification checks it with both clocks). Verifying
        a signature cost about 0.2 ms of CPU per authenticated request (issue 13). Whether its
        session is still open is not the token's to say: that is read on every request
        (`services.accounts.current_user`).

        Raises:
            InvalidToken: for any failure; the reason is not told to the client.
        """
        known = self._verified.get(token)
        if known is not None:
            if known.expires_at > self._clock.now().timestamp():
                return known
            self._verified.pop(token, None)
        claims = self._verify_signed(token)
        if len(self._verified) >= VERIFIED_TOKENS:
            self._verified.pop(next(iter(self._verified), ""), None)
        self._verified[token] = claims
        return claims

    def _verify_signed(self, token: str) -> AccessClaims:
        try:
            decoded = jwt.api_jwt.decode_complete(
                token,
                self._key,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": list(REQUIRED_CLAIMS)},
            )
            if decoded["header"].get("typ") != ACCESS_TOKEN_TYPE:
                raise InvalidToken("The access token has the wrong type.")
            payload = decoded["payload"]
            if payload["exp"] <= self._clock.now().timestamp():  # PyJWT checked it with the system's clock
                raise InvalidToken("The access token has expired.")
            return AccessClaims(
                user_id=uuid.UUID(payload["sub"]),
                session_id=uuid.UUID(payload["sid"]),
                token_id=str(payload["jti"]),
                expires_at=int(payload["exp"]),
            )
        except (jwt.PyJWTError, ValueError, TypeError, AttributeError) as error:
            raise InvalidToken("The access token is invalid or expired.") from error


def new_refresh_token() -> tuple[str, str]:
    """A fresh opaque refresh token and its SHA-256 hex digest (the only form stored).

    256 random bits make a slow hash unnecessary: the token cannot be guessed or brute-forced.
    """
    token = secrets.token_urlsafe(32)
    return token, hash_refresh_token(token)


def hash_refresh_token(token: str) -> str:
    """The stored form of a refresh token: SHA-256, hex."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def expiry(now: datetime, seconds: int) -> datetime:
    """`now` plus `seconds`."""
    return now + timedelta(seconds=seconds)
