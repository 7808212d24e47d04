"""Subscriptions (issue 17, brief 003: "subscription plans, upgrades/downgrades"): every account
is on a plan; an account that never subscribed is on the free plan from its first use of billing.

This module holds what every area needs to know of an account's plan (`current_subscription`,
`current_plan`): the quota checks of services.usage read it before work a quota covers.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from persistence.billing.models import Invoice, Plan, Subscription
from persistence.unit_of_work import UnitOfWork
from services.audit import RequestMeta
from services.billing_periods import period_containing
from services.billing_state import (
    FREE_PLAN,
    BillingConfig,
    PaymentDeclined,
    PaymentMethodRequired,
    PaymentProviderDown,
    SubscriptionPastDue,
    changed,
    to_free_plan,
)
from services.clock import Clock
from services.errors import Conflict, InvalidInput
from services.invoices import charge, collect, derived_invoice_id, make_invoice, settle, void_declined
from services.payments import PaymentProviderUnavailable
from services.proration import ChangeKind, Line, PlanTerms, change_kind, new_cycle_lines, total, upgrade_lines


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


# --- changes of plan, cancellation, the period roll (issue 17, part A) ---------------------------


def _terms(plan: Plan) -> PlanTerms:
    return PlanTerms(code=plan.code, interval=plan.interval, price=plan.price)


def _plan(uow: UnitOfWork, code: str) -> Plan:
    plan = uow.plans.get(code)
    assert plan is not None  # a foreign key
    return plan


@dataclass(frozen=True)
class ChangeResult:
    """A change of plan: the subscription after it, and the invoice it made (None if none)."""

    subscription: Subscription
    invoice: Invoice | None


def get_subscription(*, uow: UnitOfWork, owner_id: uuid.UUID, clock: Clock) -> Subscription:
    """The account's subscription (made on the free plan on first use)."""
    return current_subscription(uow, owner_id=owner_id, clock=clock)


def _catch_up(uow: UnitOfWork, *, config: BillingConfig, clock: Clock, subscription: Subscription) -> Subscription:
    """Roll the subscription's ended periods first (the job may be late), so a change is made
    within the period that contains now."""
    for _ in range(MAX_ROLLS_PER_CALL):
        if not _roll_once(uow, config=config, clock=clock, subscription=subscription):
            break
    return subscription


def change_plan(
    *,
    uow: UnitOfWork,
    config: BillingConfig,
    clock: Clock,
    owner_id: uuid.UUID,
    plan_code: str,
    meta: RequestMeta,
) -> ChangeResult:
    """Subscribe to `plan_code` or change to it (services/proration.py states the rules):

    * the account's first paid plan starts a trial of TRIAL_DAYS (status ``trialing``, no card
      needed, nothing charged; the roll job charges the first invoice at the trial's end);
    * from the free plan (after a trial was used) and monthly → yearly: applies now, a new cycle
      anchored now, invoiced and charged now (a credit for an unused paid month);
    * an upgrade on the same interval: applies now, invoiced and charged now with proration lines;
    * a downgrade, yearly → monthly, or to the free plan: at the period's end (`pending_plan_code`);
    * while ``trialing``: any change applies now, uncharged (the trial goes on);
    * the current plan again: undoes a scheduled downgrade or cancellation.

    Holds the subscription's row locked: concurrent changes of one account are serialised.

    Raises:
        InvalidInput: an unknown or inactive plan, or one in another currency than the current paid plan.
        SubscriptionPastDue: a payment is overdue.
        PaymentMethodRequired: a charge is due and the account has no default payment method.
        PaymentDeclined: the charge was declined (nothing changed).
        PaymentProviderDown: the provider did not answer (nothing changed).
    """
    subscription = current_subscription(uow, owner_id=owner_id, clock=clock, lock=True)
    _catch_up(uow, config=config, clock=clock, subscription=subscription)
    new = uow.plans.get(plan_code)
    if new is None or (not new.active and new.code != subscription.plan_code):
        raise InvalidInput(f"No plan {plan_code!r} is offered; GET /api/v1/plans lists them.", pointer="/plan_code")
    if subscription.status == "past_due":
        raise SubscriptionPastDue(
            "A payment of your subscription is overdue: it is retried on its schedule; add a payment method meanwhile."
        )
    old = _plan(uow, subscription.plan_code)
    previous_status = subscription.status

    def record(reason: str) -> None:
        changed(
            uow,
            clock=clock,
            subscription=subscription,
            previous_plan=old.code,
            previous_status=previous_status,
            reason=reason,
            meta=meta,
            actor_id=owner_id,
        )

    if new.code == old.code:
        if subscription.pending_plan_code or subscription.cancel_at_period_end:
            subscription.pending_plan_code = None
            subscription.cancel_at_period_end = False
            record("resumed")
        return ChangeResult(subscription, None)
    if old.price > 0 and new.price > 0 and old.currency != new.currency:
        raise InvalidInput("A plan in another currency cannot replace the current one.", pointer="/plan_code")
    now = clock.now()
    if subscription.status == "trialing":
        if new.price == 0:
            to_free_plan(
                uow, clock=clock, subscription=subscription, at=now, reason="canceled", meta=meta, actor_id=owner_id
            )
        else:
            subscription.plan_code = new.code
            subscription.pending_plan_code = None
            subscription.cancel_at_period_end = False
            record("plan_changed")
        return ChangeResult(subscription, None)
    kind = change_kind(_terms(old), _terms(new))
    if kind is ChangeKind.AT_PERIOD_END:
        subscription.pending_plan_code = new.code
        subscription.cancel_at_period_end = False
        record("downgrade_scheduled")
        return ChangeResult(subscription, None)
    if old.price == 0 and config.trial_days > 0 and not uow.invoices.ever_paid(owner_id):
        end = now + timedelta(days=config.trial_days)
        subscription.plan_code = new.code
        subscription.status = "trialing"
        subscription.billing_cycle_anchor = now
        subscription.current_period_start = now
        subscription.current_period_end = end
        subscription.trial_end = end
        subscription.canceled_at = None
        subscription.pending_plan_code = None
        subscription.cancel_at_period_end = False
        record("subscribed")
        return ChangeResult(subscription, None)
    prorate = new_cycle_lines if kind is ChangeKind.NEW_CYCLE else upgrade_lines
    lines = prorate(
        _terms(old),
        _terms(new),
        period_start=subscription.current_period_start,
        period_end=subscription.current_period_end,
        at=now,
    )
    invoice = None
    if total(lines) > 0:
        if uow.payment_methods.default_of(owner_id) is None or subscription.provider_customer_id is None:
            raise PaymentMethodRequired(
                f"{new.name} costs {new.price} {new.currency} minor units per {new.interval}: add a payment method "
                "first (POST /api/v1/billing/payment-methods)."
            )
        reason = "subscription_create" if old.price == 0 else "subscription_update"
        invoice = make_invoice(
            uow,
            clock=clock,
            subscription=subscription,
            invoice_id=derived_invoice_id(
                subscription, subscription.version, reason, uow.invoices.count_of_owner(owner_id)
            ),
            billing_reason=reason,
            currency=new.currency,
            lines=lines,
        )
        try:
            outcome = charge(uow, config=config, invoice=invoice, subscription=subscription)
        except PaymentProviderUnavailable:
            raise PaymentProviderDown(
                "The payment provider did not answer; nothing was charged. Retry later."
            ) from None
        if outcome.status != "succeeded":
            void_declined(uow, clock=clock, invoice=invoice, outcome=outcome)
            raise PaymentDeclined(
                f"The charge was declined ({outcome.failure_code or outcome.status}): {outcome.failure_message or ''} "
                "Nothing changed.".strip(),
                decline_code=outcome.failure_code,
            )
    subscription.plan_code = new.code
    subscription.status = "active"
    subscription.pending_plan_code = None
    subscription.cancel_at_period_end = False
    subscription.canceled_at = None
    if kind is ChangeKind.NEW_CYCLE:
        start, end = period_containing(now, new.interval, now)
        subscription.billing_cycle_anchor = now
        subscription.current_period_start = start
        subscription.current_period_end = end
    record("subscribed" if old.price == 0 else "plan_changed")
    if invoice is not None:
        settle(uow, clock=clock, invoice=invoice, subscription=subscription, payment_id=outcome.payment_id or "")
    return ChangeResult(subscription, invoice)


def cancel(
    *, uow: UnitOfWork, config: BillingConfig, clock: Clock, owner_id: uuid.UUID, at_period_end: bool, meta: RequestMeta
) -> Subscription:
    """Cancel the paid subscription: at the period's end (`at_period_end`, the default: it stays
    until then and can be resumed) or now (back on the free plan at once, nothing refunded).

    Raises:
        NothingToCancel: the account is on the free plan.
    """
    subscription = current_subscription(uow, owner_id=owner_id, clock=clock, lock=True)
    _catch_up(uow, config=config, clock=clock, subscription=subscription)
    plan = _plan(uow, subscription.plan_code)
    if plan.price == 0:
        raise NothingToCancel("You are on the free plan: there is no paid subscription to cancel.")
    if not at_period_end:
        to_free_plan(
            uow, clock=clock, subscription=subscription, at=clock.now(), reason="canceled", meta=meta, actor_id=owner_id
        )
        return subscription
    if subscription.cancel_at_period_end:
        return subscription
    previous_status = subscription.status
    subscription.cancel_at_period_end = True
    subscription.pending_plan_code = None
    changed(
        uow,
        clock=clock,
        subscription=subscription,
        previous_plan=plan.code,
        previous_status=previous_status,
        reason="cancel_scheduled",
        meta=meta,
        actor_id=owner_id,
    )
    return subscription


def resume(
    *, uow: UnitOfWork, config: BillingConfig, clock: Clock, owner_id: uuid.UUID, meta: RequestMeta
) -> Subscription:
    """Undo a cancellation or a downgrade scheduled for the period's end.

    Raises:
        NothingToResume: nothing is scheduled.
    """
    subscription = current_subscription(uow, owner_id=owner_id, clock=clock, lock=True)
    _catch_up(uow, config=config, clock=clock, subscription=subscription)
    if not subscription.cancel_at_period_end and subscription.pending_plan_code is None:
        raise NothingToResume("Nothing is scheduled for the period's end: there is nothing to resume.")
    subscription.cancel_at_period_end = False
    subscription.pending_plan_code = None
    changed(
        uow,
        clock=clock,
        subscription=subscription,
        previous_plan=subscription.plan_code,
        previous_status=subscription.status,
        reason="resumed",
        meta=meta,
        actor_id=owner_id,
    )
    return subscription


class NothingToCancel(Conflict):
    """A cancellation on the free plan."""


class NothingToResume(Conflict):
    """A resumption with nothing scheduled."""


MAX_ROLLS_PER_CALL = 24
"""Most periods one call of `roll_subscription` rolls (a job late by years catches up over runs)."""


def _roll_once(uow: UnitOfWork, *, config: BillingConfig, clock: Clock, subscription: Subscription) -> bool:
    """Roll the subscription (locked by the caller) past its current period if it has ended:
    a cancellation or a downgrade to free takes effect (free plan), a pending plan replaces the
    current one, the period moves on (a yearly → monthly change anchors the new cycle at the
    period's end; a trial's end anchors it there too), and a paid period is invoiced and charged
    (failure: ``past_due`` and dunning). False when there was nothing to roll."""
    now = clock.now()
    end = subscription.current_period_end
    if end > now or subscription.status not in ("active", "trialing"):
        return False
    previous_plan, previous_status = subscription.plan_code, subscription.status
    if subscription.cancel_at_period_end or subscription.pending_plan_code == FREE_PLAN:
        to_free_plan(uow, clock=clock, subscription=subscription, at=end, reason="canceled")
        return True
    current = _plan(uow, subscription.plan_code)
    plan = _plan(uow, subscription.pending_plan_code) if subscription.pending_plan_code else current
    if plan.price == 0:  # the free plan: only the period moves, to the one containing now
        start, new_end = period_containing(subscription.billing_cycle_anchor, plan.interval, now)
        subscription.current_period_start, subscription.current_period_end = start, new_end
        subscription.updated_at = now
        return True
    if subscription.status == "trialing" or plan.interval != current.interval:
        subscription.billing_cycle_anchor = end
    subscription.plan_code = plan.code
    subscription.pending_plan_code = None
    start, new_end = period_containing(subscription.billing_cycle_anchor, plan.interval, end)
    subscription.current_period_start, subscription.current_period_end = start, new_end
    reason = "trial_ended" if previous_status == "trialing" else "renewed"
    subscription.status = "active"
    changed(
        uow,
        clock=clock,
        subscription=subscription,
        previous_plan=previous_plan,
        previous_status=previous_status,
        reason=reason,
    )
    if uow.invoices.of_period(subscription_id=subscription.id, period_start=start, billing_reason="subscription_cycle"):
        return True  # invoiced already (the unique constraint's backstop)
    invoice = make_invoice(
        uow,
        clock=clock,
        subscription=subscription,
        invoice_id=derived_invoice_id(subscription, start.isoformat(), "subscription_cycle"),
        billing_reason="subscription_cycle",
        currency=plan.currency,
        lines=[Line("subscription", plan.price, plan.code, start, new_end)],
    )
    collect(uow, config=config, clock=clock, invoice=invoice, subscription=subscription)
    return True


def roll_subscription(*, uow: UnitOfWork, config: BillingConfig, clock: Clock, owner_id: uuid.UUID) -> int:
    """Roll the account's subscription past every period that has ended (at most
    `MAX_ROLLS_PER_CALL`), under its lock; how many periods were rolled. Idempotent: a rerun
    finds nothing ended and invoices nothing."""
    subscription = current_subscription(uow, owner_id=owner_id, clock=clock, lock=True)
    rolled = 0
    for _ in range(MAX_ROLLS_PER_CALL):
        if not _roll_once(uow, config=config, clock=clock, subscription=subscription):
            break
        rolled += 1
    return rolled


def due_for_roll(*, uow: UnitOfWork, clock: Clock, limit: int) -> list[uuid.UUID]:
    """Owners of up to `limit` active or trialing subscriptions whose period has ended."""
    return uow.subscriptions.due_for_roll(clock.now(), limit=limit)


def exported_subscription(*, uow: UnitOfWork, owner_id: uuid.UUID) -> list[Subscription]:
    """The account's subscription, if it has one (none is made): its data export's section."""
    subscription = uow.subscriptions.of_owner(owner_id)
    return [subscription] if subscription is not None else []
