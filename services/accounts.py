"""Accounts and sessions: register, log in, rotate refresh tokens, log out (briefs 002, 004)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from persistence.auth_sessions import AuthSessionRepository
from persistence.models import AuthSession, RefreshToken, User
from persistence.users import UserRepository
from services.errors import EmailTaken, InvalidCredentials, InvalidToken, RefreshTokenReused
from services.passwords import PasswordHasher
from services.tokens import AccessClaims, TokenIssuer, expiry, hash_refresh_token, new_refresh_token


@dataclass(frozen=True)
class AuthConfig:
    """What the account rules need besides the database, built once at start-up."""

    tokens: TokenIssuer
    passwords: PasswordHasher
    refresh_ttl_seconds: int


@dataclass(frozen=True)
class IssuedTokens:
    """A token pair as answered to the client (lifetimes in seconds)."""

    access_token: str
    expires_in: int
    refresh_token: str
    refresh_expires_in: int


def normalise_email(email: str) -> str:
    """The stored form of an email: lower case, so `Ada@Example.com` and `ada@example.com` are one."""
    return email.lower()


def register(*, db: Session, auth: AuthConfig, email: str, password: str, display_name: str) -> User:
    """Create an account. Raises EmailTaken when the (case-insensitive) email is in use."""
    users = UserRepository(db)
    email = normalise_email(email)
    if users.email_taken(email):
        raise EmailTaken("An account with this email already exists.")
    now = datetime.now(UTC)
    user = User(
        id=uuid.uuid4(),
        email=email,
        display_name=display_name,
        password_hash=auth.passwords.hash(password),
        created_at=now,
        updated_at=now,
    )
    users.add(user)
    return user


def login(*, db: Session, auth: AuthConfig, email: str, password: str) -> IssuedTokens:
    """Check credentials and start a session.

    Raises InvalidCredentials for an unknown email and for a wrong password alike; both paths
    run one bcrypt check, so neither the answer nor its timing tells whether the account exists.
    """
    user = UserRepository(db).get_by_email(normalise_email(email))
    if not auth.passwords.verify(password, user.password_hash if user else None) or user is None:
        raise InvalidCredentials("The email or password is incorrect.")
    now = datetime.now(UTC)
    session = AuthSession(
        id=uuid.uuid4(),
        user_id=user.id,
        created_at=now,
        last_used_at=now,
        expires_at=expiry(now, auth.refresh_ttl_seconds),
    )
    refresh_token, token_hash = new_refresh_token()
    AuthSessionRepository(db).add(
        session,
        RefreshToken(
            id=uuid.uuid4(),
            session_id=session.id,
            token_hash=token_hash,
            created_at=now,
            expires_at=session.expires_at,
        ),
    )
    return _issue(auth, user_id=user.id, session_id=session.id, refresh_token=refresh_token, now=now)


def refresh(*, db: Session, auth: AuthConfig, refresh_token: str) -> IssuedTokens:
    """Rotate a refresh token: the one presented is used up and a new pair is issued.

    Raises:
        InvalidToken: unknown or expired token, or a session that has ended.
        RefreshTokenReused: the token was already rotated (OAuth 2.0 Security BCP, RFC 9700
            section 4.14.2): the whole session is revoked, and that revocation is committed.
    """
    sessions = AuthSessionRepository(db)
    now = datetime.now(UTC)
    found = sessions.find_refresh_token(hash_refresh_token(refresh_token))
    if found is None:
        raise InvalidToken("The refresh token is invalid or expired.")
    stored, session = found
    if session.revoked_at is not None or session.expires_at <= now or stored.expires_at <= now:
        raise InvalidToken("The refresh token is invalid or expired.")
    if stored.used_at is not None or not sessions.mark_refresh_token_used(stored.id, now):
        sessions.revoke(session.id, now=now, reason="refresh_token_reuse")
        raise RefreshTokenReused("This refresh token was already used; the session has been ended. Log in again.")
    new_token, new_hash = new_refresh_token()
    expires_at = expiry(now, auth.refresh_ttl_seconds)
    sessions.add_refresh_token(
        RefreshToken(
            id=uuid.uuid4(),
            session_id=session.id,
            token_hash=new_hash,
            created_at=now,
            expires_at=expires_at,
        )
    )
    sessions.touch(session.id, now=now, expires_at=expires_at)
    return _issue(auth, user_id=session.user_id, session_id=session.id, refresh_token=new_token, now=now)


def logout(*, db: Session, session_id: uuid.UUID) -> None:
    """End one session: its access and refresh tokens fail from the next request on."""
    AuthSessionRepository(db).revoke(session_id, now=datetime.now(UTC), reason="logout")


def current_user(*, db: Session, claims: AccessClaims) -> User:
    """The user of a verified access token whose session is still open.

    Raises InvalidToken when the session was ended (logout, reuse) or expired, or the user is gone.
    """
    user = AuthSessionRepository(db).active_user(
        session_id=claims.session_id, user_id=claims.user_id, now=datetime.now(UTC)
    )
    if user is None:
        raise InvalidToken("The session of this access token has ended.")
    return user


def _issue(
    auth: AuthConfig, *, user_id: uuid.UUID, session_id: uuid.UUID, refresh_token: str, now: datetime
) -> IssuedTokens:
    return IssuedTokens(
        access_token=auth.tokens.issue(user_id=user_id, session_id=session_id, now=now),
        expires_in=auth.tokens.access_ttl_seconds,
        refresh_token=refresh_token,
        refresh_expires_in=auth.refresh_ttl_seconds,
    )
