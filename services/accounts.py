"""Accounts and sessions (briefs 002, 004): register, log in with lockout, rotate refresh
tokens, log out, list and revoke sessions, change and reset passwords. Every security event is
written to the audit log (`services.audit`)."""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from persistence.accounts.models import AuthSession, PasswordResetToken, RefreshToken, User
from persistence.unit_of_work import UnitOfWork
from services import audit
from services.audit import EventType, RequestMeta
from services.clock import Clock
from services.cursors import decode_cursor, page
from services.errors import (
    AccountDeactivated,
    EmailTaken,
    InvalidCredentials,
    InvalidResetToken,
    InvalidToken,
    LoginLocked,
    NotFound,
    RefreshTokenReused,
    WrongPassword,
)
from services.notifications import Mailer, password_reset_message
from services.passwords import PasswordHasher, PasswordPolicy
from services.tokens import AccessClaims, TokenIssuer, expiry, hash_refresh_token, new_refresh_token

LAST_USED_RESOLUTION = timedelta(minutes=1)
"""A session's `last_used_at` is written at most once a minute, not on every request."""


@dataclass(frozen=True)
class Lockout:
    """Account lockout after repeated failed logins (brief 004; OWASP Authentication Cheat Sheet)."""

    max_failures: int
    window: timedelta
    duration: timedelta


@dataclass(frozen=True)
class PasswordReset:
    """How password reset links are made and mailed."""

    ttl: timedelta
    url_template: str
    mailer: Mailer


@dataclass(frozen=True)
class AuthConfig:
    """What the account rules need besides the database, built once at start-up."""

    tokens: TokenIssuer
    passwords: PasswordHasher
    refresh_ttl_seconds: int
    policy: PasswordPolicy
    lockout: Lockout
    reset: PasswordReset


@dataclass(frozen=True)
class IssuedTokens:
    """A token pair as answered to the client (lifetimes in seconds)."""

    access_token: str
    expires_in: int
    refresh_token: str
    refresh_expires_in: int


@dataclass(frozen=True)
class SessionPage:
    """A page of open sessions and which of them made the request."""

    items: list[AuthSession]
    current_id: uuid.UUID
    next_cursor: str | None


def normalise_email(email: str) -> str:
    """The stored form of an email: lower case, so `Ada@Example.com` and `ada@example.com` are one."""
    return email.lower()


def email_digest(email: str) -> str:
    """SHA-256 of the normalised email: how lockout counters and audit details name an email
    without storing it."""
    return hashlib.sha256(normalise_email(email).encode("utf-8")).hexdigest()


def password_context(email: str, display_name: str) -> list[str]:
    """Words a guesser would try first for this account (NIST SP 800-63B: context-specific
    words): the email, its local part and its parts, the name, its words, both run together
    either way round (``jonathan.smithers`` -> ``jonathansmithers``, ``smithersjonathan``),
    and the service's name."""
    local = email.split("@")[0]
    local_parts = [part for part in re.split(r"[^0-9A-Za-z]+", local) if part]
    name_parts = display_name.split()
    joined = ["".join(parts) for parts in (local_parts, local_parts[::-1], name_parts, name_parts[::-1])]
    words = [email, local, *local_parts, display_name, *name_parts, *joined, "charter"]
    return list(dict.fromkeys(word.lower() for word in words if word))


def register(
    *, uow: UnitOfWork, clock: Clock, auth: AuthConfig, email: str, password: str, display_name: str, meta: RequestMeta
) -> User:
    """Create an account. Raises WeakPassword, or EmailTaken when the email is in use (also when
    a concurrent registration of the same email commits first: the unique index decides)."""
    users = uow.users
    email = normalise_email(email)
    auth.policy.check(password, context=password_context(email, display_name))
    if users.email_taken(email):
        raise EmailTaken("An account with this email already exists.")
    now = clock.now()
    user = User(
        id=uuid.uuid4(),
        email=email,
        display_name=display_name,
        password_hash=auth.passwords.hash(password),
        role="user",
        status="active",
        created_at=now,
        updated_at=now,
    )
    if not users.add(user):  # a concurrent registration took the email after the check above
        raise EmailTaken("An account with this email already exists.")
    audit.record(uow, EventType.REGISTERED, meta=meta, actor_id=user.id, subject_id=user.id, now=now)
    return user


def login(
    *, uow: UnitOfWork, clock: Clock, auth: AuthConfig, email: str, password: str, meta: RequestMeta
) -> IssuedTokens:
    """Check credentials and start a session.

    Raises:
        LoginLocked: the email is locked after too many failures (alike whether or not an account
            has it; the correct password is refused too until the lockout ends).
        InvalidCredentials: unknown email or wrong password, alike in answer and timing (one
            bcrypt check either way). The failure counts towards the lockout.
        AccountDeactivated: right password, but an administrator deactivated the account.
    """
    now = clock.now()
    digest = email_digest(email)
    throttles = uow.throttles
    locked_until = throttles.locked_until(digest, now)
    if locked_until is not None:
        raise _locked(locked_until, now)
    user = uow.users.get_by_email(normalise_email(email))
    if not auth.passwords.verify(password, user.password_hash if user else None) or user is None:
        _record_failed_login(uow, auth, digest, user, meta, now)
        raise InvalidCredentials("The email or password is incorrect.")
    if user.status != "active":
        raise AccountDeactivated("This account has been deactivated. Contact an administrator.")
    throttles.clear(digest)
    if auth.passwords.needs_rehash(user.password_hash):
        user.password_hash = auth.passwords.hash(password)  # the configured bcrypt cost changed
    session = _start_session(uow, auth, user, meta, now)
    audit.record(
        uow,
        EventType.LOGIN_SUCCEEDED,
        meta=meta,
        actor_id=user.id,
        subject_id=user.id,
        now=now,
        details={"session_id": str(session.id)},
    )
    return _issue(auth, user_id=user.id, session_id=session.id, refresh_token=session.refresh_token, now=now)


def _locked(until: datetime, now: datetime) -> LoginLocked:
    seconds = max(int((until - now).total_seconds()) + 1, 1)
    return LoginLocked(
        "Too many failed logins for this account. Try again later, or reset the password.", retry_after=seconds
    )


def _record_failed_login(
    uow: UnitOfWork,
    auth: AuthConfig,
    digest: str,
    user: User | None,
    meta: RequestMeta,
    now: datetime,
) -> None:
    subject = user.id if user else None
    details = {"email_digest": digest, "account_exists": user is not None}
    audit.record(uow, EventType.LOGIN_FAILED, meta=meta, subject_id=subject, details=details, now=now)
    locked_until = uow.throttles.record_failure(
        digest,
        now=now,
        window=auth.lockout.window,
        max_failures=auth.lockout.max_failures,
        lockout=auth.lockout.duration,
    )
    if locked_until is not None:
        audit.record(
            uow,
            EventType.LOCKED_OUT,
            meta=meta,
            subject_id=subject,
            now=now,
            details={**details, "locked_until": locked_until.isoformat()},
        )


@dataclass(frozen=True)
class _NewSession:
    id: uuid.UUID
    refresh_token: str


def _start_session(uow: UnitOfWork, auth: AuthConfig, user: User, meta: RequestMeta, now: datetime) -> _NewSession:
    session = AuthSession(
        id=uuid.uuid4(),
        user_id=user.id,
        created_at=now,
        last_used_at=now,
        expires_at=expiry(now, auth.refresh_ttl_seconds),
        user_agent=(meta.user_agent or None) and meta.user_agent[:500],
        client_address=meta.client_address,
    )
    refresh_token, token_hash = new_refresh_token()
    uow.sessions.add(
        session,
        RefreshToken(
            id=uuid.uuid4(), session_id=session.id, token_hash=token_hash, created_at=now, expires_at=session.expires_at
        ),
    )
    return _NewSession(session.id, refresh_token)


def refresh(*, uow: UnitOfWork, clock: Clock, auth: AuthConfig, refresh_token: str, meta: RequestMeta) -> IssuedTokens:
    """Rotate a refresh token: the one presented is used up and a new pair is issued.

    Raises:
        InvalidToken: unknown or expired token, or a session that has ended.
        RefreshTokenReused: the token was already rotated (OAuth 2.0 Security BCP, RFC 9700
            section 4.14.2): the whole session is revoked, and that revocation is committed.
    """
    sessions = uow.sessions
    now = clock.now()
    found = sessions.find_refresh_token(hash_refresh_token(refresh_token))
    if found is None:
        raise InvalidToken("The refresh token is invalid or expired.")
    stored, session = found
    if session.revoked_at is not None or session.expires_at <= now or stored.expires_at <= now:
        raise InvalidToken("The refresh token is invalid or expired.")
    if stored.used_at is not None or not sessions.mark_refresh_token_used(stored.id, now):
        sessions.revoke(session.id, now=now, reason="refresh_token_reuse")
        audit.record(
            uow,
            EventType.REFRESH_TOKEN_REUSED,
            meta=meta,
            subject_id=session.user_id,
            now=now,
            details={"session_id": str(session.id)},
        )
        raise RefreshTokenReused("This refresh token was already used; the session has been ended. Log in again.")
    new_token, new_hash = new_refresh_token()
    expires_at = expiry(now, auth.refresh_ttl_seconds)
    sessions.add_refresh_token(
        RefreshToken(id=uuid.uuid4(), session_id=session.id, token_hash=new_hash, created_at=now, expires_at=expires_at)
    )
    sessions.touch(session.id, now=now, expires_at=expires_at)
    audit.record(
        uow,
        EventType.TOKEN_REFRESHED,
        meta=meta,
        actor_id=session.user_id,
        subject_id=session.user_id,
        now=now,
        details={"session_id": str(session.id)},
    )
    return _issue(auth, user_id=session.user_id, session_id=session.id, refresh_token=new_token, now=now)


def logout(
    *, uow: UnitOfWork, clock: Clock, user: User, claims: AccessClaims, all_sessions: bool, meta: RequestMeta
) -> None:
    """End the caller's session, or with `all_sessions` every session of the account: their
    access and refresh tokens fail from the next request on, on every process."""
    sessions = uow.sessions
    now = clock.now()
    if all_sessions:
        ended = sessions.revoke_all(user.id, now=now, reason="logout_all")
        audit.record(
            uow,
            EventType.LOGGED_OUT_EVERYWHERE,
            meta=meta,
            actor_id=user.id,
            subject_id=user.id,
            now=now,
            details={"sessions_ended": ended},
        )
    else:
        sessions.revoke(claims.session_id, now=now, reason="logout")
        audit.record(
            uow,
            EventType.LOGGED_OUT,
            meta=meta,
            actor_id=user.id,
            subject_id=user.id,
            now=now,
            details={"session_id": str(claims.session_id)},
        )


def current_user(*, uow: UnitOfWork, clock: Clock, claims: AccessClaims) -> User:
    """The user of a verified access token whose session is still open and whose account is
    active; records the session's use (at most once a minute).

    Raises InvalidToken when the session was ended, expired, or the account is gone or deactivated.
    """
    sessions = uow.sessions
    now = clock.now()
    found = sessions.active_user(session_id=claims.session_id, user_id=claims.user_id, now=now)
    if found is None:
        raise InvalidToken("The session of this access token has ended.")
    user, last_used_at = found
    if last_used_at < now - LAST_USED_RESOLUTION:  # a write at most once a minute, not per request
        sessions.mark_used(claims.session_id, now=now, older_than=now - LAST_USED_RESOLUTION)
    return user


def list_sessions(
    *, uow: UnitOfWork, clock: Clock, user: User, claims: AccessClaims, limit: int, cursor: str | None
) -> SessionPage:
    """A page of the user's open sessions, newest first. Raises InvalidInput for a bad cursor."""
    before = decode_cursor(cursor) if cursor else None
    rows = uow.sessions.list_active(user_id=user.id, now=clock.now(), limit=limit + 1, before=before)
    items, next_cursor = page(rows, limit, lambda session: (session.created_at, session.id))
    return SessionPage(items=items, current_id=claims.session_id, next_cursor=next_cursor)


def exported_sessions(*, uow: UnitOfWork, user_id: uuid.UUID) -> list[AuthSession]:
    """Every session of the user, ended ones included, oldest first: their data export's section."""
    return uow.sessions.all_of_user(user_id)


def revoke_session(*, uow: UnitOfWork, clock: Clock, user: User, session_id: uuid.UUID, meta: RequestMeta) -> None:
    """End one of the user's open sessions. Raises NotFound for another user's or an ended one."""
    sessions = uow.sessions
    now = clock.now()
    if sessions.get_active(user_id=user.id, session_id=session_id, now=now) is None:
        raise NotFound("No open session with this id for this user.")
    sessions.revoke(session_id, now=now, reason="revoked")
    audit.record(
        uow,
        EventType.SESSION_REVOKED,
        meta=meta,
        actor_id=user.id,
        subject_id=user.id,
        now=now,
        details={"session_id": str(session_id)},
    )


def change_password(
    *,
    uow: UnitOfWork,
    clock: Clock,
    auth: AuthConfig,
    user: User,
    claims: AccessClaims,
    current_password: str,
    new_password: str,
    meta: RequestMeta,
) -> None:
    """Set a new password, proven by the current one; every other session is ended.

    Raises WrongPassword (current password wrong) or WeakPassword (policy).
    """
    if not auth.passwords.verify(current_password, user.password_hash):
        raise WrongPassword("The current password is not correct.")
    auth.policy.check(new_password, context=password_context(user.email, user.display_name), pointer="/new_password")
    now = clock.now()
    user.password_hash = auth.passwords.hash(new_password)
    user.updated_at = now
    ended = uow.sessions.revoke_all(user.id, now=now, reason="password_changed", keep=claims.session_id)
    audit.record(
        uow,
        EventType.PASSWORD_CHANGED,
        meta=meta,
        actor_id=user.id,
        subject_id=user.id,
        now=now,
        details={"other_sessions_ended": ended},
    )


def request_password_reset(*, uow: UnitOfWork, clock: Clock, auth: AuthConfig, email: str, meta: RequestMeta) -> None:
    """Mail a single-use reset link if an active account has this email.

    The caller answers the same whether or not it does: the mail goes out after the commit,
    from a background thread, so neither the answer nor its timing tells.
    """
    now = clock.now()
    user = uow.users.get_by_email(normalise_email(email))
    details = {"email_digest": email_digest(email), "account_exists": user is not None}
    audit.record(
        uow,
        EventType.PASSWORD_RESET_REQUESTED,
        meta=meta,
        subject_id=user.id if user else None,
        now=now,
        details=details,
    )
    if user is None or user.status != "active":
        return
    resets = uow.resets
    resets.discard_unused(user.id)
    token, token_hash = new_refresh_token()
    resets.add(
        PasswordResetToken(
            id=uuid.uuid4(), user_id=user.id, token_hash=token_hash, created_at=now, expires_at=now + auth.reset.ttl
        )
    )
    message = password_reset_message(
        to=user.email,
        link=auth.reset.url_template.replace("{token}", token),
        ttl_minutes=int(auth.reset.ttl.total_seconds() // 60),
    )
    uow.after_commit(lambda: auth.reset.mailer.send(message))


def confirm_password_reset(
    *, uow: UnitOfWork, clock: Clock, auth: AuthConfig, token: str, new_password: str, meta: RequestMeta
) -> None:
    """Set a new password with a reset token; the token is used up and every session ended.

    Raises InvalidResetToken (unknown, expired, used) or WeakPassword (policy).
    """
    now = clock.now()
    resets = uow.resets
    stored = resets.find(hash_refresh_token(token))
    if stored is None or stored.used_at is not None or stored.expires_at <= now:
        raise InvalidResetToken("This reset link is invalid, expired or already used. Ask for a new one.")
    user = uow.users.get(stored.user_id)
    if user is None or user.status != "active":
        raise InvalidResetToken("This reset link is invalid, expired or already used. Ask for a new one.")
    auth.policy.check(new_password, context=password_context(user.email, user.display_name), pointer="/new_password")
    if not resets.use(stored.id, now):
        raise InvalidResetToken("This reset link is invalid, expired or already used. Ask for a new one.")
    user.password_hash = auth.passwords.hash(new_password)
    user.updated_at = now
    ended = uow.sessions.revoke_all(user.id, now=now, reason="password_reset")
    resets.discard_unused(user.id)
    uow.throttles.clear(email_digest(user.email))
    audit.record(
        uow,
        EventType.PASSWORD_RESET_COMPLETED,
        meta=meta,
        actor_id=user.id,
        subject_id=user.id,
        now=now,
        details={"sessions_ended": ended},
    )


def _issue(
    auth: AuthConfig, *, user_id: uuid.UUID, session_id: uuid.UUID, refresh_token: str, now: datetime
) -> IssuedTokens:
    return IssuedTokens(
        access_token=auth.tokens.issue(user_id=user_id, session_id=session_id, now=now),
        expires_in=auth.tokens.access_ttl_seconds,
        refresh_token=refresh_token,
        refresh_expires_in=auth.refresh_ttl_seconds,
    )
