"""Subscriptions (issue 17, brief 003: "subscription plans, upgrades/downgrades"): every account
is on a plan; an account that never subscribed is on the free plan from its first use of billing.

This module holds what every area needs to know of an account's plan (`current_subscription`,
`current_plan`): the quota checks of services.usage read it before work a quota covers.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from persistence.billing.models import Plan, Subscription
from persistence.unit_of_work import UnitOfWork
from services.billing_periods import period_containing
from services.clock import Clock

FREE_PLAN = "free"
"""The plan every account starts on, and returns to when a paid subscription ends."""


@dataclass(frozen=True)
class CurrentPlan:
    """An account's plan and the period its usage counts in now: [`period_start`, `period_end`)."""

    plan: Plan
    subscription: Subscription
    period_start: datetime
    period_end: datetime


def current_subscription(uow: UnitOfWork, *, owner_id: uuid.UUID, clock: Clock, lock: bool = False) -> Subscription:
    """The account's subscription, made on the free plan (status ``active``, anchored now) if it
    has none yet. Two first calls at once make one row (``ON CONFLICT DO NOTHING``).

    Args:
        owner_id: the account.
        lock: hold the row locked until the unit of work ends (for a change of it).
    """
    subscription = uow.subscriptions.of_owner(owner_id, lock=lock)
    if subscription is not None:
        return subscription
    now = clock.now()
    free = uow.plans.get(FREE_PLAN)
    if free is None:  # the catalogue ships with migration 0015
        raise LookupError("the free plan is missing from the catalogue")
    start, end = period_containing(now, free.interval, now)
    uow.subscriptions.add_if_absent(
        {
            "id": uuid.uuid4(),
            "owner_id": owner_id,
            "plan_code": FREE_PLAN,
            "status": "active",
            "billing_cycle_anchor": now,
            "current_period_start": start,
            "current_period_end": end,
            "trial_end": None,
            "cancel_at_period_end": False,
            "canceled_at": None,
            "pending_plan_code": None,
            "provider": None,
            "provider_customer_id": None,
            "dunning_attempts": 0,
            "next_payment_attempt_at": None,
            "created_at": now,
            "updated_at": now,
            "version": 1,
        }
    )
    made = uow.subscriptions.of_owner(owner_id, lock=lock)
    assert made is not None  # written above, or by a concurrent first call
    return made


def current_plan(uow: UnitOfWork, *, owner_id: uuid.UUID, clock: Clock) -> CurrentPlan:
    """The account's plan and the period that contains now, counted from the subscription's
    billing cycle anchor — right even before the period roll job has moved the subscription on
    (so quotas reset on time whether or not the job ran)."""
    subscription = current_subscription(uow, owner_id=owner_id, clock=clock)
    plan = uow.plans.get(subscription.plan_code)
    assert plan is not None  # a foreign key
    start, end = period_containing(subscription.billing_cycle_anchor, plan.interval, clock.now())
    return CurrentPlan(plan=plan, subscription=subscription, period_start=start, period_end=end)
