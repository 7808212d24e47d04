"""The account rules as services (no HTTP): a unit of work on the test database, a frozen clock
moved forward instead of sleeping, and an in-memory mailer. Lockout windows and durations,
reset-link lifetimes and session expiry are checked to the second."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from adapters.mail import MemoryMailer
from persistence.unit_of_work import UnitOfWork
from services import accounts
from services.accounts import AuthConfig, Lockout, PasswordReset
from services.audit import RequestMeta
from services.clock import FrozenClock
from services.errors import InvalidCredentials, InvalidResetToken, InvalidToken, LoginLocked
from services.passwords import PasswordHasher, PasswordPolicy
from services.tokens import TokenIssuer
from tests.helpers import PASSWORD, TEST_SECRET, session_factory, unique_email

META = RequestMeta(client_address="127.0.0.1", user_agent="service-test", request_id="service-test")
WRONG = "not the password at all"
NEW_PASSWORD = "marmalade quietly juggles thunder"


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(datetime(2026, 12, 2, 9, 0, tzinfo=UTC))


@pytest.fixture
def mailer() -> MemoryMailer:
    return MemoryMailer()


@pytest.fixture
def auth(mailer: MemoryMailer) -> AuthConfig:
    """3 failures within a minute lock an email for two minutes; reset links work an hour."""
    return AuthConfig(
        tokens=TokenIssuer(key=TEST_SECRET, issuer="charter", audience="charter-api", access_ttl_seconds=900),
        passwords=PasswordHasher(4),
        refresh_ttl_seconds=3600,
        policy=PasswordPolicy(min_length=15, min_strength=3),
        lockout=Lockout(max_failures=3, window=timedelta(minutes=1), duration=timedelta(minutes=2)),
        reset=PasswordReset(ttl=timedelta(hours=1), url_template="https://app.example/r?t={token}", mailer=mailer),
    )


@pytest.fixture
def run(app, clock, auth):
    """Call a service of `services.accounts` in a unit of work of its own, as a request would
    (committed, or rolled back unless the error must persist), with the frozen clock."""
    factory = session_factory(app)

    def call(service, **arguments):
        with UnitOfWork(factory) as uow:
            return service(uow=uow, clock=clock, auth=auth, meta=META, **arguments)

    return call


@pytest.fixture
def email(run) -> str:
    address = unique_email("rules")
    run(accounts.register, email=address, password=PASSWORD, display_name="Rule Tester")
    return address


def _fail(run, email: str, times: int) -> None:
    for _ in range(times):
        with pytest.raises(InvalidCredentials):
            run(accounts.login, email=email, password=WRONG)


def test_the_lockout_ends_after_its_duration_to_the_second(run, clock, email):
    _fail(run, email, 3)
    with pytest.raises(LoginLocked) as locked:
        run(accounts.login, email=email, password=PASSWORD)
    assert locked.value.retry_after == 121  # two minutes, rounded up

    clock.advance(minutes=2, seconds=-1)
    with pytest.raises(LoginLocked):
        run(accounts.login, email=email, password=PASSWORD)
    clock.advance(seconds=1)
    assert run(accounts.login, email=email, password=PASSWORD).access_token


def test_failures_outside_the_window_do_not_add_up(run, clock, email):
    _fail(run, email, 2)
    clock.advance(minutes=1)  # the window of the first failure has passed
    _fail(run, email, 1)
    assert run(accounts.login, email=email, password=PASSWORD).access_token


def test_a_reset_link_works_until_its_lifetime_ends(run, clock, email, mailer):
    run(accounts.request_password_reset, email=email)
    run(accounts.request_password_reset, email=email)  # asking again voids the first link
    assert len(mailer.sent) == 2
    first, second = (message.get_content().split("?t=")[1].split()[0] for message in mailer.sent)

    with pytest.raises(InvalidResetToken):
        run(accounts.confirm_password_reset, token=first, new_password=NEW_PASSWORD)
    clock.advance(hours=1)
    with pytest.raises(InvalidResetToken):  # expired exactly at its lifetime
        run(accounts.confirm_password_reset, token=second, new_password=NEW_PASSWORD)


def test_a_session_expires_a_refresh_lifetime_after_its_last_refresh(run, clock, email):
    tokens = run(accounts.login, email=email, password=PASSWORD)
    clock.advance(minutes=59)
    refreshed = run(accounts.refresh, refresh_token=tokens.refresh_token)
    clock.advance(minutes=59)  # 118 minutes after the login, 59 after the refresh: still open
    again = run(accounts.refresh, refresh_token=refreshed.refresh_token)
    clock.advance(hours=1)
    with pytest.raises(InvalidToken):
        run(accounts.refresh, refresh_token=again.refresh_token)
