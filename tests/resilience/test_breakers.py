"""The dependency breakers' registry and state machine (`adapters.resilience`): what readiness
and /metrics read, the joining rule (the last one made for a name is the one reported), the
retry rule (only what `retry_on` accepts, never the breaker's refusal, and no retry once a
failure opened the breaker), per-target families, and the readiness rule
(`services.health.readiness_status`)."""

from __future__ import annotations

import time

import pytest

from adapters import resilience
from adapters.resilience import Breaker, BreakerFamily, DependencyUnavailable
from services.health import readiness_status


def refused() -> None:
    raise ConnectionRefusedError("refused")


def test_a_breaker_opens_after_its_failures_fails_fast_then_lets_one_trial_through():
    breaker = Breaker("thing", failures=2, reset_seconds=0.3)
    calls = []

    def call() -> None:
        calls.append(1)
        refused()

    for _ in range(2):
        with pytest.raises(ConnectionRefusedError):
            breaker.call(call, counts=lambda error: True)
    assert breaker.state == "open"
    with pytest.raises(DependencyUnavailable) as raised:
        breaker.call(call, counts=lambda error: True)
    assert isinstance(raised.value, ConnectionError) and raised.value.dependency == "thing"
    assert len(calls) == 2  # not contacted while open

    time.sleep(0.35)
    assert breaker.state == "half_open"
    assert breaker.call(lambda: "answer", counts=lambda error: True) == "answer"
    assert breaker.state == "closed"


def test_errors_that_do_not_count_leave_the_breaker_closed():
    breaker = Breaker("thing", failures=1)
    for _ in range(3):
        with pytest.raises(ValueError):
            breaker.call(lambda: (_ for _ in ()).throw(ValueError("rejected")), counts=lambda error: False)
    assert breaker.state == "closed"


def test_retries_only_what_retry_on_accepts_and_stop_once_the_breaker_opened():
    attempts = []

    def flaky() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise ConnectionResetError("reset")
        return "ok"

    breaker = Breaker("thing", failures=5)
    result = breaker.call(
        flaky, counts=lambda e: True, retry_on=lambda e: isinstance(e, ConnectionResetError), attempts=3, wait_initial=0
    )
    assert (result, len(attempts)) == ("ok", 3)

    attempts.clear()
    opening = Breaker("other", failures=1)
    with pytest.raises(ConnectionResetError):  # the failure itself, not the breaker's refusal
        opening.call(flaky, counts=lambda e: True, retry_on=lambda e: True, attempts=3, wait_initial=0)
    assert len(attempts) == 1 and opening.state == "open"

    attempts.clear()
    with pytest.raises(ValueError):
        Breaker("third").call(
            lambda: attempts.append(1) or (_ for _ in ()).throw(ValueError("no")),
            counts=lambda e: True,
            retry_on=lambda e: isinstance(e, ConnectionError),
            attempts=3,
        )
    assert len(attempts) == 1


def test_joining_registers_the_latest_breaker_by_name_and_states_reads_them():
    first = resilience.join("payment_provider_test", failures=1)
    second = resilience.join("payment_provider_test", failures=1, fallback="charge later")
    assert resilience.BREAKERS["payment_provider_test"] is second is not first
    second.failed(ConnectionRefusedError())
    states = resilience.states()
    assert states["payment_provider_test"] == "open"
    assert "payment_provider_test" in resilience.degraded_by(states)
    resilience.reset_all()
    assert resilience.states()["payment_provider_test"] == "closed"
    del resilience.BREAKERS["payment_provider_test"]


def test_a_family_keeps_a_breaker_per_target_and_forgets_the_least_recently_used():
    family = BreakerFamily("receivers", failures=1, max_targets=2)
    family.for_url("https://a.example/hook").failed(ConnectionRefusedError())
    assert family.for_url("https://A.example:443/other").state == "open"  # same target
    assert family.for_url("http://a.example/hook").state == "closed"  # another port
    assert family.open_targets() == ["https://a.example:443"]
    assert family.state == "partly_open"
    family.for_url("https://b.example/")
    family.for_url("https://c.example/")
    assert family.open_targets() == []  # a.example:443 was the least recently used


@pytest.mark.parametrize(
    ("redis", "breakers", "status"),
    [
        ("ok", {"smtp": "closed", "web_fetch": "partly_open"}, "ready"),
        ("not_configured", {"smtp": "open"}, "degraded"),
        ("ok", {"answer_provider": "half_open"}, "degraded"),
        ("unavailable", {}, "degraded"),
    ],
)
def test_the_readiness_rule(redis, breakers, status):
    assert readiness_status({"database": "ok", "redis": redis}, breakers) == status
