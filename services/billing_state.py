"""What the billing services share (issue 17): the billing configuration, the problems a change
of plan or a payment can end in, and how a change of an account's billing is recorded — the
billing history, the audit log, the outbound events and the in-app notifications — and the
return of an account to the free plan."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from persistence.billing.models import BillingHistory, Invoice, Plan, Subscription
from persistence.notifications.models import Notification
from persistence.unit_of_work import UnitOfWork
from services import audit, events
from services.audit import RequestMeta
from services.billing_periods import period_containing
from services.clock import Clock
from services.errors import Conflict, DomainError, ProblemType
from services.payments import PaymentProvider

FREE_PLAN = "free"
DEFAULT_RETRY_DAYS = (1, 3, 5)
"""DUNNING_RETRY_DAYS' default: a failed renewal is retried 1, 3 and 5 days after its first failure."""


@dataclass(frozen=True)
class BillingConfig:
    """The billing services' configuration (`server/` builds it from the settings).

    Attributes:
        provider: the payment provider (PAYMENT_PROVIDER).
        trial_days: days of trial on an account's first paid subscription (TRIAL_DAYS; 0: none).
        retry_days: days after a renewal's first failed charge when it is retried
            (DUNNING_RETRY_DAYS), increasing.
    """

    provider: PaymentProvider
    trial_days: int = 14
    retry_days: tuple[int, ...] = DEFAULT_RETRY_DAYS


class PaymentMethodRequired(DomainError):
    """A paid plan without a trial needs a default payment method to charge; nothing changed."""

    problem = ProblemType("/problems/payment-method-required", "Payment method required", 402)


class PaymentDeclined(DomainError):
    """The charge of a change of plan was declined (or needs the cardholder); the plan did not
    change. The attempt stays on record as a ``void`` invoice (`persist_changes`), so the next
    try is charged under a new idempotency key. `decline_code` is the provider's reason."""

    problem = ProblemType("/problems/payment-declined", "Payment declined", 402)

    persist_changes = True

    def __init__(self, detail: str, *, decline_code: str | None) -> None:
        super().__init__(detail)
        self.decline_code = decline_code


class PaymentProviderDown(DomainError):
    """The payment provider did not answer; nothing was charged and nothing changed."""

    problem = ProblemType("/problems/payment-provider-unavailable", "Payment provider unavailable", 503)


class SubscriptionPastDue(Conflict):
    """A change of plan while a payment is overdue: pay it first (the dunning retries, or a new
    payment method)."""

    problem = ProblemType("/problems/subscription-past-due", "Subscription past due", 409)


def timestamp(instant: datetime | None) -> str | None:
    """An instant as the contract writes it (RFC 3339, UTC, microseconds, ``Z``), or None."""
    if instant is None:
        return None
    return instant.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def subscription_data(subscription: Subscription) -> dict[str, Any]:
    """The contract's `Subscription`: the account's subscription as the API shows it."""
    return {
        "id": str(subscription.id),
        "plan_code": subscription.plan_code,
        "status": subscription.status,
        "current_period_start": timestamp(subscription.current_period_start),
        "current_period_end": timestamp(subscription.current_period_end),
        "billing_cycle_anchor": timestamp(subscription.billing_cycle_anchor),
        "trial_end": timestamp(subscription.trial_end),
        "cancel_at_period_end": subscription.cancel_at_period_end,
        "canceled_at": timestamp(subscription.canceled_at),
        "pending_plan_code": subscription.pending_plan_code,
        "next_payment_attempt_at": timestamp(subscription.next_payment_attempt_at),
        "created_at": timestamp(subscription.created_at),
        "updated_at": timestamp(subscription.updated_at),
        "version": subscription.version,
    }


def invoice_data(invoice: Invoice) -> dict[str, Any]:
    """The contract's `InvoiceEventData`: an invoice as its events show it."""
    return {
        "id": str(invoice.id),
        "number": invoice.number,
        "status": invoice.status,
        "billing_reason": invoice.billing_reason,
        "currency": invoice.currency,
        "total": invoice.total,
        "amount_due": invoice.amount_due,
        "amount_paid": invoice.amount_paid,
        "attempt_count": invoice.attempt_count,
        "next_payment_attempt_at": timestamp(invoice.next_payment_attempt_at),
        "last_payment_error": invoice.last_payment_error,
    }


def record_history(
    uow: UnitOfWork,
    *,
    subscription: Subscription,
    plan: Plan,
    kind: str,
    now: datetime,
    invoice_id: uuid.UUID | None = None,
) -> None:
    """Append to the account's billing history (under its subscription's lock)."""
    uow.invoices.record(
        BillingHistory(
            id=uuid.uuid4(),
            owner_id=subscription.owner_id,
            sequence=uow.invoices.history_length(subscription.owner_id) + 1,
            occurred_at=now,
            kind=kind,
            plan_code=plan.code,
            status=subscription.status,
            paid=plan.price > 0,
            invoice_id=invoice_id,
        )
    )


def changed(
    uow: UnitOfWork,
    *,
    clock: Clock,
    subscription: Subscription,
    previous_plan: str,
    previous_status: str,
    reason: str,
    meta: RequestMeta | None = None,
    actor_id: uuid.UUID | None = None,
) -> None:
    """Record a change of `subscription` made just now: its version and `updated_at`, the billing
    history (`reason` as the kind), the audit log (``subscription_updated``) and the event
    ``subscription.updated`` (with the previous plan and status and the reason)."""
    now = clock.now()
    subscription.version += 1
    subscription.updated_at = now
    uow.flush()
    plan = uow.plans.get(subscription.plan_code)
    assert plan is not None  # a foreign key
    record_history(uow, subscription=subscription, plan=plan, kind=reason, now=now)
    details = {
        "reason": reason,
        "plan_code": subscription.plan_code,
        "status": subscription.status,
        "previous_plan_code": previous_plan,
        "previous_status": previous_status,
        "pending_plan_code": subscription.pending_plan_code,
        "cancel_at_period_end": subscription.cancel_at_period_end,
    }
    audit.record(
        uow,
        audit.EventType.SUBSCRIPTION_UPDATED,
        meta=meta or RequestMeta(),
        now=now,
        actor_id=actor_id,
        subject_id=subscription.owner_id,
        details=details,
    )
    events.emit(
        uow,
        clock=clock,
        owner_id=subscription.owner_id,
        type=events.EventType.SUBSCRIPTION_UPDATED,
        data={
            "subscription": subscription_data(subscription),
            "previous_plan_code": previous_plan,
            "previous_status": previous_status,
            "reason": reason,
        },
    )


def notify(uow: UnitOfWork, *, owner_id: uuid.UUID, now: datetime, type: str, title: str, body: str) -> None:
    """An in-app notification about the account's billing."""
    uow.notifications.add(
        Notification(
            id=uuid.uuid4(),
            owner_id=owner_id,
            type=type,
            title=title[:300],
            body=body[:2000],
            task_id=None,
            reminder_id=None,
            created_at=now,
            read_at=None,
        )
    )


def to_free_plan(
    uow: UnitOfWork,
    *,
    clock: Clock,
    subscription: Subscription,
    at: datetime,
    reason: str,
    meta: RequestMeta | None = None,
    actor_id: uuid.UUID | None = None,
) -> None:
    """End the paid subscription at `at`: the account is back on the free plan (status
    ``active``, a new cycle anchored at `at`, `canceled_at` = `at`), nothing pending, no dunning.
    Recorded as `reason` (``canceled``): its event says the previous plan and status."""
    previous_plan, previous_status = subscription.plan_code, subscription.status
    free = uow.plans.get(FREE_PLAN)
    if free is None:  # the catalogue ships with migration 0015
        raise LookupError("the free plan is missing from the catalogue")
    start, end = period_containing(at, free.interval, max(at, clock.now()))
    subscription.plan_code = FREE_PLAN
    subscription.status = "active"
    subscription.billing_cycle_anchor = at
    subscription.current_period_start = start
    subscription.current_period_end = end
    subscription.trial_end = None
    subscription.cancel_at_period_end = False
    subscription.canceled_at = at
    subscription.pending_plan_code = None
    subscription.dunning_attempts = 0
    subscription.next_payment_attempt_at = None
    changed(
        uow,
        clock=clock,
        subscription=subscription,
        previous_plan=previous_plan,
        previous_status=previous_status,
        reason=reason,
        meta=meta,
        actor_id=actor_id,
    )
