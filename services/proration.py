"""Proration (issue 17): what a change of plan costs, as invoice lines. Pure functions: no clock,
no database; every amount is an integer count of minor units (cents).

The rules (README, "Billing"):

* **Time is counted in seconds** of the current period [`period_start`, `period_end`): the unused
  part of the period at `at` is ``(period_end - at) / (period_end - period_start)``, kept as an
  exact `fractions.Fraction` (no float anywhere).
* **An upgrade** (same interval, a higher price) applies at once and is invoiced at once, on the
  same billing cycle: a ``proration_credit`` line gives back the unused part of the old plan and
  a ``proration_charge`` line charges the rest of the period on the new plan. Rounded **once**:
  the exact credit is rounded half-to-even, the exact net (new minus old, for the unused part)
  is rounded half-to-even, and the charge line is ``rounded net - rounded credit``; so the lines
  add up to the total exactly and the total is the exact net rounded once.
* **A downgrade** (same interval, a lower or equal price; or to the free plan) applies at the
  period's end (`pending_plan_code`); nothing is refunded.
* **Interval changes, one rule** (lago-api#1834 shows what goes wrong when a monthly→yearly switch
  is prorated as if both plans shared a cycle):
  - *monthly → yearly* is always an upgrade: it applies now and **starts a new billing cycle
    anchored now**; the unused part of the current month is credited (a ``proration_credit``
    line, its exact value rounded once) and the full yearly price is charged (a
    ``subscription`` line for [now, now + 1 year)). The total is ``yearly price - credit``.
  - *yearly → monthly* always applies at the end of the yearly period, with no refund; the
    monthly cycle is anchored at that end.
* From the free plan (price 0) a paid plan starts a new cycle anchored now and charges its full
  price (nothing to credit).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from fractions import Fraction

from dateutil.relativedelta import relativedelta


class ChangeKind(StrEnum):
    """How a change of plan is carried out (see the module's rules)."""

    NEW_CYCLE = "new_cycle"
    """From a free plan, or monthly → yearly: applies now, new cycle anchored now."""
    PRORATED_UPGRADE = "prorated_upgrade"
    """Same interval, higher price: applies now on the same cycle, with proration lines."""
    AT_PERIOD_END = "at_period_end"
    """Same interval with a lower or equal price, yearly → monthly, or to a free plan."""


@dataclass(frozen=True)
class PlanTerms:
    """What proration needs of a plan: its `code`, `interval` (``month`` or ``year``) and
    `price` per interval in minor units (>= 0)."""

    code: str
    interval: str
    price: int


@dataclass(frozen=True)
class Line:
    """An invoice line to be: `kind` (``subscription``, ``proration_credit``,
    ``proration_charge``), a signed `amount` in minor units, the plan it is about and the time
    [`period_start`, `period_end`) it covers."""

    kind: str
    amount: int
    plan_code: str
    period_start: datetime
    period_end: datetime


def change_kind(old: PlanTerms, new: PlanTerms) -> ChangeKind:
    """How a change from `old` to `new` is carried out (the module's rules).

    Raises:
        ValueError: `old` and `new` are the same plan.
    """
    if old.code == new.code:
        raise ValueError("a change of plan needs another plan")
    if new.price == 0:
        return ChangeKind.AT_PERIOD_END
    if old.price == 0:
        return ChangeKind.NEW_CYCLE
    if old.interval != new.interval:
        return ChangeKind.NEW_CYCLE if new.interval == "year" else ChangeKind.AT_PERIOD_END
    return ChangeKind.PRORATED_UPGRADE if new.price > old.price else ChangeKind.AT_PERIOD_END


def unused_fraction(period_start: datetime, period_end: datetime, at: datetime) -> Fraction:
    """The unused part of [`period_start`, `period_end`) at `at`, exactly, in whole seconds
    (microseconds are dropped from each duration: a second is the unit of proration).

    Raises:
        ValueError: an empty period, or `at` outside [`period_start`, `period_end`].
    """
    total = int((period_end - period_start).total_seconds())
    remaining = int((period_end - at).total_seconds())
    if total <= 0:
        raise ValueError("an empty period")
    if not 0 <= remaining <= total:
        raise ValueError("the moment of the change lies outside the period")
    return Fraction(remaining, total)


def round_half_even(value: Fraction) -> int:
    """`value` rounded to the nearest integer, ties to even (Python's `round` on a Fraction)."""
    return round(value)


def upgrade_lines(
    old: PlanTerms, new: PlanTerms, *, period_start: datetime, period_end: datetime, at: datetime
) -> list[Line]:
    """The two lines of an upgrade on the same cycle at `at`: the credit (<= 0) for the unused
    part of `old` and the charge for the rest of the period on `new`. Their sum is the exact
    net ``(new.price - old.price) * unused`` rounded once (half-to-even); the credit is its exact
    value rounded once; the charge is the difference.

    Example (README): 2900 → 9900 at exactly half of a 30-day period: credit -1450, charge 4950,
    total 3500.

    Raises:
        ValueError: see `unused_fraction`.
    """
    unused = unused_fraction(period_start, period_end, at)
    credit = round_half_even(old.price * unused)
    net = round_half_even((new.price - old.price) * unused)
    return [
        Line("proration_credit", -credit, old.code, at, period_end),
        Line("proration_charge", net + credit, new.code, at, period_end),
    ]


def interval_of(interval: str) -> relativedelta:
    """One `interval` (``month`` or ``year``) as a calendar step.

    Raises:
        ValueError: another interval.
    """
    if interval == "month":
        return relativedelta(months=1)
    if interval == "year":
        return relativedelta(years=1)
    raise ValueError(f"unknown interval {interval!r}")


def new_cycle_lines(
    old: PlanTerms, new: PlanTerms, *, period_start: datetime, period_end: datetime, at: datetime
) -> list[Line]:
    """The lines of a change that starts a new cycle at `at` (from a free plan, or monthly →
    yearly): a credit for the unused part of `old`'s current period (left out when `old` is free)
    and the full price of `new` for [`at`, `at` + one interval of `new`).

    Raises:
        ValueError: see `unused_fraction`.
    """
    lines: list[Line] = []
    if old.price > 0:
        credit = round_half_even(old.price * unused_fraction(period_start, period_end, at))
        lines.append(Line("proration_credit", -credit, old.code, at, period_end))
    lines.append(Line("subscription", new.price, new.code, at, at + interval_of(new.interval)))
    return lines


def total(lines: list[Line]) -> int:
    """The sum of the lines' amounts."""
    return sum(line.amount for line in lines)
