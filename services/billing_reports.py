"""The administrators' billing summary (issue 17, brief 000's usage analytics for money):
subscriptions per plan, monthly recurring revenue, churn and failed payments over a period."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction

from persistence.unit_of_work import UnitOfWork
from services.errors import InvalidInput

LIVE_STATUSES = ("active", "trialing", "past_due")
"""Statuses of a subscription that counts as active in the summary."""
BILLED_STATUSES = ("active", "past_due")
"""Statuses whose price counts in MRR (a trial pays nothing yet)."""


@dataclass(frozen=True)
class BillingSummary:
    """The summary over [`since`, `until`): `active_subscriptions` (plan code -> count, now),
    `mrr` (currency -> minor units, now), `cancellations` and `paying_at_start` (churn's
    numerator and denominator), `churn_rate` and `failed_payments` (attempts in the period)."""

    since: datetime
    until: datetime
    active_subscriptions: dict[str, int]
    mrr: dict[str, int]
    cancellations: int
    paying_at_start: int
    churn_rate: float
    failed_payments: int


def monthly_recurring_revenue(billed: list[tuple[int, str, str, int]]) -> dict[str, int]:
    """MRR per currency from (price in minor units, interval, currency, subscriptions) rows: a
    yearly price counts price / 12 per month; each currency's exact sum is rounded once, half to
    even (e.g. three yearly 29000 and one 2900 monthly: 3 * 29000 / 12 + 2900 = 10150 exactly)."""
    exact: dict[str, Fraction] = defaultdict(Fraction)
    for price, interval, currency, count in billed:
        exact[currency] += Fraction(price * count, 12 if interval == "year" else 1)
    return {currency: round(amount) for currency, amount in sorted(exact.items())}


def summary(*, uow: UnitOfWork, since: datetime, until: datetime) -> BillingSummary:
    """The billing summary. MRR: each billed subscription's monthly price (a yearly price / 12),
    summed exactly per currency (fractions) and rounded once, half to even. Churn: paid
    subscriptions that ended in the period (the history's ``canceled``) / accounts on a paid plan
    (active, trialing or past due) at `since` (0 when there were none). Failed payments: the
    history's ``charge_failed`` entries in the period.

    Raises:
        InvalidInput: `until` is not after `since`.
    """
    if until <= since:
        raise InvalidInput("until must be after since.", parameter="until")
    counts = uow.subscriptions.counts_by_plan_and_status()
    active: dict[str, int] = defaultdict(int)
    billed: list[tuple[int, str, str, int]] = []
    for (code, status), count in counts.items():
        if status in LIVE_STATUSES:
            active[code] += count
        plan = uow.plans.get(code)
        if plan is not None and plan.price > 0 and status in BILLED_STATUSES:
            billed.append((plan.price, plan.interval, plan.currency, count))
    cancellations = uow.invoices.history_count(kind="canceled", since=since, until=until)
    paying = uow.invoices.paying_at(since)
    return BillingSummary(
        since=since,
        until=until,
        active_subscriptions=dict(sorted(active.items())),
        mrr=monthly_recurring_revenue(billed),
        cancellations=cancellations,
        paying_at_start=paying,
        churn_rate=cancellations / paying if paying else 0.0,
        failed_payments=uow.invoices.history_count(kind="charge_failed", since=since, until=until),
    )
