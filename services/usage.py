"""Usage metering and quotas (issue 17, "Usage and quotas"; Lago's billable metrics and events):
the one interface every area records what it uses through, and the check that keeps an account
within its plan.

Rules and where they come from:

* **Meters are declared by the area that owns them** (ARCHITECTURE: "usage meters are declared
  by the area and discovered"): a service module lists its `Meter`s in ``USAGE_METERS``;
  `meters()` finds them in every module of the `services` package (as `jobs.discover` finds
  job kinds and the data export finds ``EXPORT_SECTIONS``). A name declared twice is refused.
  A meter's limit is the plan's ``quotas[name]`` (`services.subscriptions.current_plan`); null,
  or a meter the plan does not name, is no limit.
* **Two kinds of meter.** A *periodic* meter counts what was done in the billing period
  (messages answered, pages crawled): its counter is the one of the period
  `current_plan` says contains now, so usage resets with the period (whether or not the period
  roll job ran). A meter that is not periodic counts *what exists* (chatbots, documents, stored
  bytes, API keys: created +n, deleted -n): one counter for all time, kept under the fixed
  period start `ALL_TIME` (1970-01-01T00:00:00Z), with no reset time.
* **Idempotent** (issue 17: "each with an idempotency key so a retried job never counts
  twice"): a use is recorded once per (owner, meter, `idempotency_key`) — the unique index of
  `usage_events`; recording the same key again changes nothing.
* **Checked before the work, in its unit of work** (issue 17; API_STYLE, Money and quotas):
  `record_usage` locks the counter row (made at zero if absent, `insert_if_absent` then
  ``FOR UPDATE``; on SQLite the write lock), checks that `used + quantity` stays within the
  limit, and records the use, in the caller's unit of work, before the caller does the work.
  Concurrent uses at the edge of a quota are counted one after the other, so they never
  overshoot it. Over quota is 402 `/problems/quota-exceeded` (`QuotaExceeded`) with `meter`,
  `limit`, `used` and `reset_at`; the caller's unit of work is rolled back, so nothing is done.
  `check_quota` is the same check without the lock, for a quick refusal before work that is
  counted later (an upload before it is stored; a crawl before its job runs).
* **Giving back is never refused**: a negative quantity (a deletion) always counts, and a
  counter never goes below zero (what existed before metering began was never counted up).
* **Thresholds** (issue 17: "crossing 80 % and 100 % of a meter sends a notification and a
  webhook"): when a use takes a meter to or past a threshold of `THRESHOLDS` that the counter
  has not announced yet (`notified_percent`), the owner gets one in-app notification
  (``usage_threshold``) and a `usage.threshold_reached` event, for the highest threshold
  reached (a jump from 70 % to 100 % announces 100 % only). So each threshold is announced at
  most once per period; for all-time meters the mark comes down when usage drops below a
  threshold, so crossing it again announces it again.
"""

from __future__ import annotations

import importlib
import pkgutil
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

from persistence.billing.models import UsageCounter, UsageEvent
from persistence.notifications.models import Notification
from persistence.unit_of_work import UnitOfWork
from services import events
from services.clock import Clock
from services.errors import DomainError, ProblemType
from services.subscriptions import CurrentPlan, current_plan

ALL_TIME = datetime(1970, 1, 1, tzinfo=UTC)
"""The period start of the counters of meters that are not periodic (one counter for all time)."""
THRESHOLDS = (80, 100)
"""The percentages of a limit whose crossing is announced (notification and webhook)."""
NOTIFICATION_TYPE = "usage_threshold"
"""The in-app notification's `type` (the contract's `Notification.type` lists it)."""


@dataclass(frozen=True)
class Meter:
    """Something an account uses that its plan may limit.

    Attributes:
        name: the plan's `quotas` key and the API's name (``messages``).
        unit: what one of it is, plural (``messages``, ``bytes``).
        periodic: counted per billing period (resets with it); else counts what exists, for all time.
        description: one sentence for the API and the README.
    """

    name: str
    unit: str
    periodic: bool
    description: str


@cache
def meters() -> dict[str, Meter]:
    """Every meter the `services` modules declare in ``USAGE_METERS``, by name, in module-name order.

    Raises:
        ValueError: two declarations of one name.
    """
    import services

    found: dict[str, Meter] = {}
    for module_info in sorted(pkgutil.iter_modules(services.__path__), key=lambda module: module.name):
        module = importlib.import_module(f"{services.__name__}.{module_info.name}")
        for meter in getattr(module, "USAGE_METERS", []):
            if meter.name in found:
                raise ValueError(f"usage meter {meter.name!r} is declared twice (again in {module.__name__})")
            found[meter.name] = meter
    return found


def meter_named(name: str) -> Meter:
    """The declared meter `name`.

    Raises:
        KeyError: no module declares it (a bug of the caller).
    """
    return meters()[name]


class QuotaExceeded(DomainError):
    """The work would take a meter past the plan's limit: nothing was done (402)."""

    problem = ProblemType("/problems/quota-exceeded", "Quota exceeded", 402)

    def __init__(self, detail: str, *, meter: str, limit: int, used: int, reset_at: datetime | None) -> None:
        super().__init__(detail)
        self.meter = meter
        self.limit = limit
        self.used = used
        self.reset_at = reset_at

    def members(self) -> dict[str, Any]:
        """The problem's extension members: `meter`, `limit`, `used`, `reset_at` (RFC 3339, or
        null for a meter that does not reset)."""
        return {
            "meter": self.meter,
            "limit": self.limit,
            "used": self.used,
            "reset_at": events.timestamp(self.reset_at),
        }


@dataclass(frozen=True)
class MeterUsage:
    """One meter of an account now.

    Attributes:
        used: counted so far (this period for a periodic meter).
        limit: the plan's limit, None for none.
        remaining: what is left (None when unlimited, never below 0).
        reset_at: when a periodic meter resets (the period's end); None for the others.
    """

    meter: Meter
    used: int
    limit: int | None
    remaining: int | None
    reset_at: datetime | None


@dataclass(frozen=True)
class UsageReport:
    """An account's plan, its current period [`period_start`, `period_end`) and every meter."""

    plan_code: str
    period_start: datetime
    period_end: datetime
    meters: list[MeterUsage]


def _limit(plan: CurrentPlan, meter: Meter) -> int | None:
    value = plan.plan.quotas.get(meter.name)
    return None if value is None else int(value)


def _period_start(plan: CurrentPlan, meter: Meter) -> datetime:
    return plan.period_start if meter.periodic else ALL_TIME


def _reset_at(plan: CurrentPlan, meter: Meter) -> datetime | None:
    return plan.period_end if meter.periodic else None


def _exceeded(plan: CurrentPlan, meter: Meter, *, limit: int, used: int, quantity: int) -> QuotaExceeded:
    reset_at = _reset_at(plan, meter)
    when = f" It resets at {events.timestamp(reset_at)}." if reset_at is not None else ""
    return QuotaExceeded(
        f"Your plan ({plan.plan.name}) allows {limit} {meter.unit} for {meter.name}; {used} are used and this needs "
        f"{quantity} more.{when} Upgrade your plan for more.",
        meter=meter.name,
        limit=limit,
        used=used,
        reset_at=reset_at,
    )


def check_quota(uow: UnitOfWork, *, owner_id: uuid.UUID, meter: str, quantity: int, clock: Clock) -> None:
    """Refuse at once work that would take `meter` past the owner's limit, without locking or
    recording anything (a quick check before work that `record_usage` counts later; concurrent
    work may still pass it together, `record_usage` is the one that holds).

    Args:
        quantity: how much the work would use (at least 0; 0 checks that the meter is not over).

    Raises:
        QuotaExceeded: `used + quantity` is over the limit (or the meter is full and `quantity` is 0).
        KeyError: an undeclared meter.
    """
    declared = meter_named(meter)
    plan = current_plan(uow, owner_id=owner_id, clock=clock)
    limit = _limit(plan, declared)
    if limit is None:
        return
    counter = uow.usage.counter(owner_id=owner_id, meter=meter, period_start=_period_start(plan, declared))
    used = counter.used if counter is not None else 0
    if used + quantity > limit or (quantity == 0 and used >= limit):
        raise _exceeded(plan, declared, limit=limit, used=used, quantity=max(quantity, 1))


def record_usage(
    uow: UnitOfWork, *, owner_id: uuid.UUID, meter: str, quantity: int, idempotency_key: str, clock: Clock
) -> bool:
    """Count `quantity` of `meter` for the owner, once per `idempotency_key`, after checking the
    quota under the counter's lock (the module's rules), in the caller's unit of work: call it
    before doing the work it counts, so over quota nothing is done.

    Args:
        owner_id: the account charged (a chatbot's owner for its visitors' messages).
        meter: a declared meter's name.
        quantity: signed: positive is a use (checked against the limit), negative a release
            (a deletion; never refused, the counter stays at 0 or more).
        idempotency_key: what makes a retry count once (e.g. ``message:<id>``); its first 200
            characters are kept; the same key again returns False and changes nothing.

    Returns:
        Whether this call counted (False: the key was counted before).

    Raises:
        QuotaExceeded: a positive `quantity` would take the meter past the limit (402).
        KeyError: an undeclared meter.
    """
    declared = meter_named(meter)
    key = idempotency_key[:200]  # the column's length: a longer key is known by its first 200 characters
    plan = current_plan(uow, owner_id=owner_id, clock=clock)
    now = clock.now()
    period_start = _period_start(plan, declared)
    counter = uow.usage.locked_counter(owner_id=owner_id, meter=meter, period_start=period_start, now=now)
    if uow.usage.has_event(owner_id=owner_id, meter=meter, idempotency_key=key):
        return False
    limit = _limit(plan, declared)
    if quantity > 0 and limit is not None and counter.used + quantity > limit:
        raise _exceeded(plan, declared, limit=limit, used=counter.used, quantity=quantity)
    uow.usage.add_event(
        UsageEvent(
            id=uuid.uuid4(),
            owner_id=owner_id,
            meter=meter,
            quantity=quantity,
            idempotency_key=key,
            period_start=period_start,
            occurred_at=now,
        )
    )
    counter.used = max(0, counter.used + quantity)
    counter.updated_at = now
    _announce_thresholds(uow, clock=clock, plan=plan, meter=declared, counter=counter, limit=limit)
    uow.flush()
    return True


def _reached(used: int, limit: int | None) -> int:
    """The highest threshold `used` reaches of `limit` (0 for none, or for no limit)."""
    if limit is None or limit <= 0:
        return 0
    return max((threshold for threshold in THRESHOLDS if used * 100 >= threshold * limit), default=0)


def _announce_thresholds(
    uow: UnitOfWork, *, clock: Clock, plan: CurrentPlan, meter: Meter, counter: UsageCounter, limit: int | None
) -> None:
    reached = _reached(counter.used, limit)
    if reached < counter.notified_percent:
        counter.notified_percent = reached  # usage went down: crossing again announces again
        return
    if reached == counter.notified_percent or limit is None:
        return
    counter.notified_percent = reached
    reset_at = _reset_at(plan, meter)
    data = {
        "meter": meter.name,
        "unit": meter.unit,
        "threshold": reached,
        "used": counter.used,
        "limit": limit,
        "plan_code": plan.plan.code,
        "period_start": events.timestamp(plan.period_start) if meter.periodic else None,
        "reset_at": events.timestamp(reset_at),
    }
    events.emit(uow, clock=clock, owner_id=counter.owner_id, type=events.EventType.USAGE_THRESHOLD_REACHED, data=data)
    when = f" It resets at {events.timestamp(reset_at)}." if reset_at is not None else ""
    uow.notifications.add(
        Notification(
            id=uuid.uuid4(),
            owner_id=counter.owner_id,
            type=NOTIFICATION_TYPE,
            title=f"You have used {reached}% of your {meter.name} quota"[:300],
            body=(
                f"{counter.used} of {limit} {meter.unit} on your plan ({plan.plan.name}).{when} "
                "GET /api/v1/billing/usage shows every meter; a bigger plan raises the limits."
            )[:2000],
            task_id=None,
            reminder_id=None,
            created_at=clock.now(),
            read_at=None,
        )
    )


def usage_report(*, uow: UnitOfWork, owner_id: uuid.UUID, clock: Clock) -> UsageReport:
    """The owner's plan, current period and every declared meter's usage, limit, remaining and
    reset time (`GET /api/v1/billing/usage`). Reads only (the free subscription is made on first use)."""
    plan = current_plan(uow, owner_id=owner_id, clock=clock)
    items = []
    for meter in meters().values():
        counter = uow.usage.counter(owner_id=owner_id, meter=meter.name, period_start=_period_start(plan, meter))
        used = counter.used if counter is not None else 0
        limit = _limit(plan, meter)
        remaining = None if limit is None else max(0, limit - used)
        items.append(MeterUsage(meter, used, limit, remaining, _reset_at(plan, meter)))
    return UsageReport(plan.plan.code, plan.period_start, plan.period_end, items)


def exported_counters(*, uow: UnitOfWork, owner_id: uuid.UUID) -> list[UsageCounter]:
    """Every usage counter of the owner (each meter's, each period's), by meter then period:
    their data export's section."""
    return uow.usage.counters_of(owner_id)
