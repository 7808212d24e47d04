"""Circuit breakers and retries for the outside dependencies, in one place (issue 18, "Resilience").

Every adapter that calls something outside the process guards the call with a `Breaker`
(pybreaker's state machine) and retries only what is safe to retry with `retrying` (stamina).
The breakers of a process are kept in one registry, `BREAKERS`, by dependency name; the
readiness probe (`GET /api/v1/health/ready`) and `/metrics` read it (`states`), so a dependency
that fails shows there by name without any other change.

**Joining** (a new adapter, e.g. a payment provider): the wiring (`server/worker.py`) makes the
named breaker and hands it to the adapter — one line::

    PaymentClient(..., breaker=resilience.join("payment_provider", fallback="…", **breaker_policy(settings)))

(`join` registers it under its name; `breaker_policy` reads BREAKER_FAILURES and
BREAKER_RESET_SECONDS.)

and the adapter wraps each call::

    self.breaker.admit()                 # DependencyUnavailable (a ConnectionError) while open
    try:
        answer = send()
    except TransientError as error:
        self.breaker.failed(error)       # may open it
        raise
    self.breaker.succeeded()             # closes a half-open breaker

or, in one call with the retries, ``self.breaker.call(send, counts=is_transient,
retry_on=is_safe_to_repeat, attempts=2)``. An adapter built without a breaker (tests) makes its
own, unregistered (`Breaker(name)`), so tests never share state.

**Targets, not dependencies.** Webhook receivers and crawled sites are many independent hosts:
one broken receiver must not stop everybody's webhooks. They use a `BreakerFamily`, one breaker
per target (scheme, host and port), registered under the family's name; a family is reported
`partly_open` (never `open`), which the readiness probe lists but does not count as degraded —
another customer's website being down is not this instance's problem.

**States** (`Breaker.state`): ``closed`` (calls pass), ``open`` (calls fail at once, without
contacting the dependency, for `reset_seconds`), ``half_open`` (the reset time has passed: the
next call is a trial; success closes the breaker, failure opens it again).

Breakers are per process (pybreaker's memory storage), like the answer provider's was: an API
process reports the breakers of the calls it makes (answers, password-reset mail), a worker's
breakers (reminder mail, scans, webhook deliveries, crawls) log their state changes
(``dependency_breaker_state``). pybreaker holds a lock for the whole guarded call, which would
serialise every call of a process, so the call runs outside it: the breaker is asked before
(`admit`) and told the outcome after (`succeeded`, `failed`).
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Literal, TypeVar
from urllib.parse import urlsplit

import pybreaker
import stamina
import structlog

T = TypeVar("T")
log = structlog.get_logger(__name__)

BreakerState = Literal["closed", "open", "half_open"]
FamilyState = Literal["closed", "partly_open"]

DEFAULT_FAILURES = 5
DEFAULT_RESET_SECONDS = 30.0


class DependencyUnavailable(ConnectionError):
    """A call was refused without being made: the dependency's breaker is open.

    A `ConnectionError` (so an `OSError`): callers that already treat an unreachable dependency
    as such (a mail job, a scan) need no change.

    Attributes:
        dependency: the breaker's name (``smtp``, ``clamd``, …), or ``family:target``.
    """

    def __init__(self, dependency: str) -> None:
        super().__init__(f"the circuit breaker of {dependency} is open")
        self.dependency = dependency


class _Listener(pybreaker.CircuitBreakerListener):
    def state_change(self, cb: pybreaker.CircuitBreaker, old_state: object, new_state: object) -> None:
        old = _state_name(str(getattr(old_state, "name", old_state)))
        new = _state_name(str(getattr(new_state, "name", new_state)))
        if old != new:
            log.warning("dependency_breaker_state", dependency=cb.name, old=old, new=new)


def _state_name(value: str) -> BreakerState:
    if value == pybreaker.STATE_HALF_OPEN:
        return "half_open"
    return "open" if value == pybreaker.STATE_OPEN else "closed"


class Breaker:
    """One dependency's circuit breaker (module docstring).

    Args:
        name: the dependency, as readiness and metrics name it (``smtp``, ``answer_provider``).
        failures: failed calls in a row that open it.
        reset_seconds: how long it stays open before a trial call.
        fallback: what the caller does while it is open, in words (for people: logs, README).
        listen: log state changes (a family's per-target breakers do not: there may be many).
    """

    def __init__(
        self,
        name: str,
        *,
        failures: int = DEFAULT_FAILURES,
        reset_seconds: float = DEFAULT_RESET_SECONDS,
        fallback: str = "",
        listen: bool = True,
    ) -> None:
        self.name = name
        self.fallback = fallback
        self.storage = pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED)
        self.breaker = pybreaker.CircuitBreaker(
            fail_max=failures,
            reset_timeout=reset_seconds,
            state_storage=self.storage,
            throw_new_error_on_trip=False,
            listeners=[_Listener()] if listen else [],
            name=name,
        )

    @property
    def failures(self) -> int:
        """Failed calls in a row that open the breaker."""
        return int(self.breaker.fail_max)

    @property
    def reset_seconds(self) -> float:
        """Seconds the breaker stays open before a trial call."""
        return float(self.breaker.reset_timeout)

    def configure(self, *, failures: int, reset_seconds: float) -> None:
        """Change the thresholds (the wiring re-reads settings)."""
        self.breaker.fail_max = failures
        self.breaker.reset_timeout = reset_seconds

    @property
    def state(self) -> BreakerState:
        """``closed``, ``open`` (failing fast now) or ``half_open`` (the next call is a trial;
        pybreaker itself says so only once that call is made)."""
        state = _state_name(str(self.breaker.current_state))
        if state == "open" and not self._still_open():
            return "half_open"
        return state

    def _still_open(self) -> bool:
        opened_at = self.storage.opened_at
        return opened_at is not None and datetime.now(UTC) < opened_at + timedelta(seconds=self.reset_seconds)

    def admit(self) -> None:
        """Raise `DependencyUnavailable` while the breaker is open and its reset time has not
        passed; otherwise return (a half-open breaker admits the trial call)."""
        if self.breaker.current_state == pybreaker.STATE_OPEN and self._still_open():
            raise DependencyUnavailable(self.name)

    def succeeded(self) -> None:
        """Record a successful call (closes a half-open breaker, resets the failure count)."""
        with contextlib.suppress(pybreaker.CircuitBreakerError):  # opened meanwhile by other failures: that stands
            self.breaker.call(_nothing)

    def failed(self, error: Exception) -> None:
        """Record a failed call (the `failures`-th in a row opens the breaker)."""
        try:
            self.breaker.call(_raise, error)
        except (pybreaker.CircuitBreakerError, type(error)):
            pass

    def reset(self) -> None:
        """Close the breaker and forget its failures (tests, an operator's `charter` shell)."""
        self.breaker.close()

    def call(
        self,
        function: Callable[[], T],
        *,
        counts: Callable[[Exception], bool],
        retry_on: Callable[[Exception], bool] | None = None,
        attempts: int = 1,
        wait_initial: float = 0.1,
        wait_max: float = 2.0,
        timeout: float | None = None,
        success_counts: bool = True,
    ) -> T:
        """Call `function` through the breaker, retrying what may be repeated.

        Args:
            function: one attempt at the call.
            counts: whether an error is the dependency's failure (counted by the breaker; others,
                e.g. a rejected request, are the caller's and count neither way).
            success_counts: whether `function` returning is a success for the breaker; False when
                it is only the first step (connecting) and the caller records the outcome of the
                whole exchange (`succeeded`, `failed`) itself.
            retry_on: whether an error may be retried (only what is safe to repeat: nothing was
                done, or doing it twice changes nothing); None: no retry.
            attempts: attempts in all, retries included (stamina: exponential backoff with jitter,
                from `wait_initial` up to `wait_max` seconds, within `timeout` seconds in all).

        Raises:
            DependencyUnavailable: the breaker is open (never retried).
            whatever `function` raised last (also when that failure opened the breaker: the
                retries stop there).
        """
        retryable = retry_on or (lambda _error: False)
        for attempt in stamina.retry_context(
            # Not retried: the breaker's refusal, and any failure that opened the breaker.
            on=lambda error: (
                not isinstance(error, DependencyUnavailable) and retryable(error) and self.state == "closed"
            ),
            attempts=max(1, attempts),
            timeout=timeout,
            wait_initial=wait_initial,
            wait_max=wait_max,
            wait_jitter=wait_initial,
        ):
            with attempt:
                self.admit()
                try:
                    result = function()
                except Exception as error:
                    if counts(error):
                        self.failed(error)
                    raise
                if success_counts:
                    self.succeeded()
                return result
        raise AssertionError("unreachable: stamina makes at least one attempt")  # pragma: no cover


def _nothing() -> None:
    return None


def _raise(error: Exception) -> None:
    raise error


class BreakerFamily:
    """A breaker per target (scheme, host and port) of one kind of dependency: webhook
    receivers, crawled sites. At most `max_targets` are kept (the least recently used go).

    Args:
        name: the family, as readiness and metrics name it (``webhook_delivery``, ``web_fetch``).
        failures, reset_seconds: each target's breaker's thresholds.
        fallback: what the caller does for a target whose breaker is open, in words.
    """

    def __init__(
        self,
        name: str,
        *,
        failures: int = DEFAULT_FAILURES,
        reset_seconds: float = DEFAULT_RESET_SECONDS,
        fallback: str = "",
        max_targets: int = 1024,
    ) -> None:
        self.name = name
        self.failures = failures
        self.reset_seconds = reset_seconds
        self.fallback = fallback
        self.max_targets = max_targets
        self._breakers: OrderedDict[str, Breaker] = OrderedDict()
        self._lock = threading.Lock()

    def configure(self, *, failures: int, reset_seconds: float) -> None:
        """Change the thresholds, of the targets known and to come."""
        with self._lock:
            self.failures, self.reset_seconds = failures, reset_seconds
            for breaker in self._breakers.values():
                breaker.configure(failures=failures, reset_seconds=reset_seconds)

    def for_url(self, url: str) -> Breaker:
        """The breaker of `url`'s target (``scheme://host:port``)."""
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return self.for_target(f"{parts.scheme}://{(parts.hostname or '').lower()}:{port}")

    def for_target(self, target: str) -> Breaker:
        """The breaker of `target`, made on first use."""
        with self._lock:
            breaker = self._breakers.get(target)
            if breaker is None:
                breaker = Breaker(
                    f"{self.name}:{target}",
                    failures=self.failures,
                    reset_seconds=self.reset_seconds,
                    fallback=self.fallback,
                    listen=False,
                )
                self._breakers[target] = breaker
                while len(self._breakers) > self.max_targets:
                    self._breakers.popitem(last=False)
            else:
                self._breakers.move_to_end(target)
            return breaker

    def open_targets(self) -> list[str]:
        """The targets whose breaker is open or half-open now."""
        with self._lock:
            return [target for target, breaker in self._breakers.items() if breaker.state != "closed"]

    @property
    def state(self) -> FamilyState:
        """``partly_open`` when some target's breaker is open or half-open, else ``closed``."""
        return "partly_open" if self.open_targets() else "closed"

    def reset(self) -> None:
        """Forget every target's breaker."""
        with self._lock:
            self._breakers.clear()


BREAKERS: dict[str, Breaker | BreakerFamily] = {}
"""The process's dependency breakers by name: what readiness and /metrics report."""
_REGISTRY_LOCK = threading.Lock()


def join(
    name: str, *, failures: int = DEFAULT_FAILURES, reset_seconds: float = DEFAULT_RESET_SECONDS, fallback: str = ""
) -> Breaker:
    """A new breaker for dependency `name`, registered under that name (replacing the one made
    before: the wiring builds each adapter once per process, so the last is the one in use, and
    an app built again — tests — starts with a closed breaker)."""
    breaker = Breaker(name, failures=failures, reset_seconds=reset_seconds, fallback=fallback)
    register(breaker)
    return breaker


def join_family(
    name: str, *, failures: int = DEFAULT_FAILURES, reset_seconds: float = DEFAULT_RESET_SECONDS, fallback: str = ""
) -> BreakerFamily:
    """A new breaker family `name` (a breaker per target), registered as `join` does."""
    family = BreakerFamily(name, failures=failures, reset_seconds=reset_seconds, fallback=fallback)
    register(family)
    return family


def register(breaker: Breaker | BreakerFamily) -> None:
    """Put a breaker (or family) in the registry under its name, replacing one of that name."""
    with _REGISTRY_LOCK:
        BREAKERS[breaker.name] = breaker


def states() -> dict[str, str]:
    """Each registered dependency's state by name, sorted: ``closed``, ``open``, ``half_open``,
    or, for a family, ``closed`` or ``partly_open``."""
    with _REGISTRY_LOCK:
        known = dict(BREAKERS)
    return {name: known[name].state for name in sorted(known)}


def degraded_by(current: dict[str, str]) -> list[str]:
    """The dependencies (of `states()`) whose breaker makes the instance degraded: a single
    breaker open or half-open (a family's open targets do not)."""
    return [name for name, state in current.items() if state in ("open", "half_open")]


def reset_all() -> None:
    """Close every registered breaker (tests)."""
    with _REGISTRY_LOCK:
        known = list(BREAKERS.values())
    for breaker in known:
        breaker.reset()


def retrying(
    function: Callable[[], T],
    *,
    retry_on: Callable[[Exception], bool],
    attempts: int,
    wait_initial: float = 0.1,
    wait_max: float = 2.0,
    timeout: float | None = None,
) -> T:
    """Call `function`, retrying errors `retry_on` accepts (stamina: backoff with jitter), at most
    `attempts` attempts in all within `timeout` seconds; for retries without a breaker."""
    for attempt in stamina.retry_context(
        on=retry_on, attempts=max(1, attempts), timeout=timeout, wait_initial=wait_initial, wait_max=wait_max
    ):
        with attempt:
            return function()
    raise AssertionError("unreachable: stamina makes at least one attempt")  # pragma: no cover
