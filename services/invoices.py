"""Invoices (issue 17): made final at once (status ``open``), charged to the account's default
payment method through the payment provider, paid or retried on the dunning schedule.

* **Numbering**: ``<first 8 hex digits of the account id, upper case>-<sequence>``, the sequence
  counting the account's invoices from 1 (``3F2A9C1B-0001``), as Stripe numbers per customer. An
  account's invoices are only made under its subscription's lock, so its sequence has no gap and
  no repeat; `number` is unique in the database as well. Invoices are never deleted.
* **Charging**: the idempotency key of a charge is ``<invoice id>:<attempt number>``, so a retried
  job or request never charges one attempt twice. Invoice ids of changes of plan are derived from
  the subscription's id and version, and those of renewals from the subscription and the period,
  so a retry of work whose commit was lost charges the same key again (the provider answers the
  first outcome) instead of charging a second time.
* **Dunning** (a renewal whose charge failed): the subscription is ``past_due`` and the invoice is
  retried DUNNING_RETRY_DAYS (default 1, 3, 5) days after its first failure by the `billing.cycle`
  job; a success makes the subscription ``active`` again; when the last retry fails the invoice is
  ``uncollectible`` and the subscription ends: the account is back on the free plan.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from persistence.billing.models import Invoice, InvoiceLine, Subscription
from persistence.unit_of_work import UnitOfWork
from services import audit, events
from services.audit import RequestMeta
from services.billing_state import (
    DEFAULT_RETRY_DAYS,
    BillingConfig,
    changed,
    invoice_data,
    notify,
    record_history,
    to_free_plan,
)
from services.clock import Clock
from services.cursors import decode_cursor, page
from services.errors import NotFound
from services.payments import ChargeOutcome, PaymentProviderUnavailable
from services.proration import Line

INVOICE_NAMESPACE = uuid.UUID("6c1f3a52-4b7e-4d0a-9a61-2f9e8c5b7d13")
"""The namespace of the invoices' derived ids (UUID version 5)."""
PROVIDER_DOWN_RETRY = timedelta(hours=1)
"""When a charge could not reach the provider, the next attempt is this much later (not a dunning
attempt: nothing was tried)."""
LINE_DESCRIPTIONS = {
    "subscription": "{plan}",
    "proration_credit": "Unused time on {plan}",
    "proration_charge": "Remaining time on {plan}",
}


def invoice_number(owner_id: uuid.UUID, sequence: int) -> str:
    """The number of the account's `sequence`-th invoice (see the module's docstring)."""
    return f"{owner_id.hex[:8].upper()}-{sequence:04d}"


def derived_invoice_id(subscription: Subscription, *parts: object) -> uuid.UUID:
    """An invoice id derived from the subscription and `parts` (its version for a change of plan,
    the period's start for a renewal): the same work done again names the same invoice."""
    return uuid.uuid5(INVOICE_NAMESPACE, ":".join([str(subscription.id), *map(str, parts)]))


def make_invoice(
    uow: UnitOfWork,
    *,
    clock: Clock,
    subscription: Subscription,
    invoice_id: uuid.UUID,
    billing_reason: str,
    currency: str,
    lines: Sequence[Line],
) -> Invoice:
    """Write a final invoice (``open``; ``paid`` at once when its total is 0) with `lines`, under
    the subscription's lock (the caller holds it). Its period spans the lines'."""
    now = clock.now()
    plan_names = {line.plan_code: (uow.plans.get(line.plan_code) or None) for line in lines}
    total = sum(line.amount for line in lines)
    invoice = Invoice(
        id=invoice_id,
        owner_id=subscription.owner_id,
        subscription_id=subscription.id,
        number=invoice_number(subscription.owner_id, uow.invoices.count_of_owner(subscription.owner_id) + 1),
        status="open" if total > 0 else "paid",
        billing_reason=billing_reason,
        currency=currency,
        subtotal=total,
        total=total,
        amount_due=max(total, 0),
        amount_paid=0,
        period_start=min(line.period_start for line in lines),
        period_end=max(line.period_end for line in lines),
        created_at=now,
        finalized_at=now,
        paid_at=None if total > 0 else now,
        voided_at=None,
        attempt_count=0,
        next_payment_attempt_at=None,
        last_payment_error=None,
        provider_payment_id=None,
    )
    if total <= 0:
        invoice.amount_due = 0
    rows = []
    for position, line in enumerate(lines, start=1):
        plan = plan_names[line.plan_code]
        name = plan.name if plan is not None else line.plan_code
        rows.append(
            InvoiceLine(
                id=uuid.uuid4(),
                invoice_id=invoice.id,
                position=position,
                kind=line.kind,
                description=LINE_DESCRIPTIONS[line.kind].format(plan=name)[:300],
                plan_code=line.plan_code,
                amount=line.amount,
                period_start=line.period_start,
                period_end=line.period_end,
            )
        )
    uow.invoices.add(invoice, rows)
    return invoice


def charge(uow: UnitOfWork, *, config: BillingConfig, invoice: Invoice, subscription: Subscription) -> ChargeOutcome:
    """Make the next payment attempt of `invoice` (its `attempt_count` grows by one): charge its
    `amount_due` to the account's default payment method, idempotency key ``<id>:<attempt>``.
    Without a default method or a provider customer the attempt fails at once
    (``payment_method_missing``). The outcome is returned, not recorded.

    Raises:
        services.payments.PaymentProviderUnavailable: the provider did not answer (the attempt
            is not counted).
    """
    attempt = invoice.attempt_count + 1
    method = uow.payment_methods.default_of(subscription.owner_id)
    if method is None or subscription.provider_customer_id is None:
        invoice.attempt_count = attempt
        return ChargeOutcome(
            status="declined",
            payment_id=None,
            failure_code="payment_method_missing",
            failure_message="The account has no default payment method.",
        )
    outcome = config.provider.charge(
        customer_id=subscription.provider_customer_id,
        provider_payment_method_id=method.provider_payment_method_id,
        amount=invoice.amount_due,
        currency=invoice.currency,
        idempotency_key=f"{invoice.id}:{attempt}",
        description=f"Invoice {invoice.number}",
    )
    invoice.attempt_count = attempt
    return outcome


def void_declined(uow: UnitOfWork, *, clock: Clock, invoice: Invoice, outcome: ChargeOutcome) -> None:
    """The invoice of a change of plan whose charge was declined: ``void``, with the attempt and
    its error (the change itself is not made; `PaymentDeclined` keeps this record). The next try
    makes a new invoice, charged under a new key (a retry of the same key would only repeat the
    decline)."""
    invoice.status = "void"
    invoice.voided_at = clock.now()
    invoice.amount_due = 0
    invoice.last_payment_error = f"{outcome.failure_code or outcome.status}: {outcome.failure_message or ''}"[:500]
    invoice.provider_payment_id = outcome.payment_id
    uow.flush()


def collect(
    uow: UnitOfWork, *, config: BillingConfig, clock: Clock, invoice: Invoice, subscription: Subscription
) -> str:
    """Charge `invoice` now and record the outcome (`settle` or `fail`); under the subscription's
    lock. Returns ``paid``, ``failed`` or ``unavailable`` (the provider did not answer: the next
    attempt is in an hour, not counted as a dunning attempt)."""
    try:
        outcome = charge(uow, config=config, invoice=invoice, subscription=subscription)
    except PaymentProviderUnavailable:
        invoice.next_payment_attempt_at = clock.now() + PROVIDER_DOWN_RETRY
        return "unavailable"
    if outcome.status == "succeeded":
        settle(uow, clock=clock, invoice=invoice, subscription=subscription, payment_id=outcome.payment_id or "")
        return "paid"
    fail(
        uow,
        clock=clock,
        invoice=invoice,
        subscription=subscription,
        payment_id=outcome.payment_id,
        failure_code=outcome.failure_code or outcome.status,
        failure_message=outcome.failure_message or "The payment failed.",
        retry_days=config.retry_days,
    )
    return "failed"


def settle(
    uow: UnitOfWork, *, clock: Clock, invoice: Invoice, subscription: Subscription | None, payment_id: str
) -> None:
    """Record `invoice` paid by the provider's payment `payment_id`; a ``past_due`` subscription
    it was dunning for is ``active`` again. History, audit, ``invoice.paid`` (and
    ``subscription.updated``)."""
    now = clock.now()
    invoice.status = "paid"
    invoice.amount_paid = invoice.total
    invoice.amount_due = 0
    invoice.paid_at = now
    invoice.next_payment_attempt_at = None
    invoice.provider_payment_id = payment_id or invoice.provider_payment_id
    uow.flush()
    audit.record(
        uow,
        audit.EventType.INVOICE_PAID,
        meta=RequestMeta(),
        now=now,
        subject_id=invoice.owner_id,
        details={"invoice_id": str(invoice.id), "number": invoice.number, "amount": invoice.total},
    )
    events.emit(
        uow,
        clock=clock,
        owner_id=invoice.owner_id,
        type=events.EventType.INVOICE_PAID,
        data={"invoice": invoice_data(invoice)},
    )
    if subscription is None:
        return
    plan = uow.plans.get(subscription.plan_code)
    assert plan is not None
    record_history(uow, subscription=subscription, plan=plan, kind="charge_succeeded", now=now, invoice_id=invoice.id)
    if subscription.status == "past_due" and invoice.subscription_id == subscription.id:
        subscription.status = "active"
        subscription.dunning_attempts = 0
        subscription.next_payment_attempt_at = None
        changed(
            uow,
            clock=clock,
            subscription=subscription,
            previous_plan=plan.code,
            previous_status="past_due",
            reason="recovered",
        )
        notify(
            uow,
            owner_id=subscription.owner_id,
            now=now,
            type="billing_payment_recovered",
            title=f"Payment received for invoice {invoice.number}",
            body="Your subscription is active again. Thank you.",
        )


def fail(
    uow: UnitOfWork,
    *,
    clock: Clock,
    invoice: Invoice,
    subscription: Subscription | None,
    payment_id: str | None,
    failure_code: str,
    failure_message: str,
    retry_days: Sequence[int],
) -> None:
    """Record a failed payment attempt of `invoice` and apply the dunning schedule: while retries
    remain (`retry_days` after its first attempt, `finalized_at`) the next attempt is scheduled
    and the subscription is ``past_due``; after the last one the invoice is ``uncollectible`` and
    the subscription ends (back on the free plan). History, audit, notification,
    ``invoice.payment_failed`` (and ``subscription.updated``)."""
    now = clock.now()
    attempts = max(invoice.attempt_count, 1)
    invoice.last_payment_error = f"{failure_code}: {failure_message}"[:500]
    invoice.provider_payment_id = payment_id or invoice.provider_payment_id
    final = attempts > len(retry_days)
    first_attempt = invoice.finalized_at or now
    invoice.next_payment_attempt_at = None if final else first_attempt + timedelta(days=retry_days[attempts - 1])
    if final:
        invoice.status = "uncollectible"
        invoice.voided_at = None
    uow.flush()
    audit.record(
        uow,
        audit.EventType.INVOICE_PAYMENT_FAILED,
        meta=RequestMeta(),
        now=now,
        subject_id=invoice.owner_id,
        details={
            "invoice_id": str(invoice.id),
            "number": invoice.number,
            "attempt": attempts,
            "failure_code": failure_code,
            "final": final,
        },
    )
    events.emit(
        uow,
        clock=clock,
        owner_id=invoice.owner_id,
        type=events.EventType.INVOICE_PAYMENT_FAILED,
        data={"invoice": invoice_data(invoice)},
    )
    if subscription is None or invoice.subscription_id != subscription.id:
        return
    plan = uow.plans.get(subscription.plan_code)
    assert plan is not None
    record_history(uow, subscription=subscription, plan=plan, kind="charge_failed", now=now, invoice_id=invoice.id)
    if final:
        to_free_plan(uow, clock=clock, subscription=subscription, at=now, reason="canceled")
        notify(
            uow,
            owner_id=subscription.owner_id,
            now=now,
            type="billing_subscription_canceled",
            title=f"Subscription canceled: invoice {invoice.number} could not be paid",
            body=f"The last attempt failed ({failure_code}). Your account is back on the free plan.",
        )
        return
    previous_status = subscription.status
    subscription.dunning_attempts = attempts
    subscription.next_payment_attempt_at = invoice.next_payment_attempt_at
    if previous_status in ("active", "trialing"):
        subscription.status = "past_due"
    changed(
        uow,
        clock=clock,
        subscription=subscription,
        previous_plan=plan.code,
        previous_status=previous_status,
        reason="payment_failed",
    )
    notify(
        uow,
        owner_id=subscription.owner_id,
        now=now,
        type="billing_payment_failed",
        title=f"Payment failed for invoice {invoice.number}",
        body=(
            f"The charge failed ({failure_code}). It is retried on "
            f"{invoice.next_payment_attempt_at:%Y-%m-%d}; update your payment method before then."
            if invoice.next_payment_attempt_at
            else f"The charge failed ({failure_code})."
        ),
    )


def _subscription_of(uow: UnitOfWork, invoice: Invoice) -> Subscription | None:
    """The invoice's account's subscription, locked (lock order: subscription, then invoice)."""
    return uow.subscriptions.of_owner(invoice.owner_id, lock=True)


def mark_invoice_paid(uow: UnitOfWork, *, invoice_id: uuid.UUID, payment_id: str, clock: Clock) -> bool:
    """Record the invoice paid by the provider's payment `payment_id` (a provider event's way in).

    Idempotent: False, and nothing changed, when the invoice is unknown, already paid or void.
    A ``past_due`` subscription the invoice was dunning for becomes ``active`` and its dunning
    stops. (An ``uncollectible`` invoice paid late is recorded paid; the ended subscription stays
    ended.)
    """
    found = uow.invoices.by_id(invoice_id)
    if found is None:
        return False
    subscription = _subscription_of(uow, found)
    invoice = uow.invoices.by_id(invoice_id, lock=True)
    if invoice is None or invoice.status in ("paid", "void"):
        return False
    settle(uow, clock=clock, invoice=invoice, subscription=subscription, payment_id=payment_id)
    return True


def record_payment_failure(
    uow: UnitOfWork,
    *,
    invoice_id: uuid.UUID,
    payment_id: str,
    failure_code: str,
    failure_message: str,
    clock: Clock,
    retry_days: Sequence[int] = DEFAULT_RETRY_DAYS,
) -> bool:
    """Record a failed payment of the invoice (a provider event's way in) and apply the dunning
    schedule (`fail`; `retry_days`: DUNNING_RETRY_DAYS, default 1, 3, 5).

    False, and nothing changed, when the invoice is unknown, already paid, void or uncollectible
    (an out-of-order failure after a success is resolved by the invoice's own state), or when this
    very payment's failure is recorded already.
    """
    found = uow.invoices.by_id(invoice_id)
    if found is None:
        return False
    subscription = _subscription_of(uow, found)
    invoice = uow.invoices.by_id(invoice_id, lock=True)
    if invoice is None or invoice.status in ("paid", "void", "uncollectible"):
        return False
    if invoice.provider_payment_id == payment_id and invoice.last_payment_error is not None:
        return False
    fail(
        uow,
        clock=clock,
        invoice=invoice,
        subscription=subscription,
        payment_id=payment_id,
        failure_code=failure_code,
        failure_message=failure_message,
        retry_days=retry_days,
    )
    return True


def retry_due_invoice(uow: UnitOfWork, *, config: BillingConfig, clock: Clock, invoice_id: uuid.UUID) -> str | None:
    """The next payment attempt of an open invoice whose attempt is due (the dunning retries);
    None, nothing done, when it is no longer open or not due. Returns `collect`'s outcome."""
    found = uow.invoices.by_id(invoice_id)
    if found is None:
        return None
    subscription = _subscription_of(uow, found)
    invoice = uow.invoices.by_id(invoice_id, lock=True)
    now = clock.now()
    if invoice is None or invoice.status != "open" or invoice.next_payment_attempt_at is None:
        return None
    if invoice.next_payment_attempt_at > now or subscription is None:
        return None
    return collect(uow, config=config, clock=clock, invoice=invoice, subscription=subscription)


@dataclass(frozen=True)
class InvoicePage:
    """One page of invoices, newest first, and the cursor of the next (None on the last)."""

    items: list[Invoice]
    next_cursor: str | None


def list_invoices(*, uow: UnitOfWork, owner_id: uuid.UUID, limit: int, cursor: str | None = None) -> InvoicePage:
    """A page of the owner's invoices, newest first (keyset cursor: created_at and id).

    Raises:
        InvalidInput: a cursor this list did not make.
    """
    rows = uow.invoices.list_page(owner_id=owner_id, limit=limit + 1, before=decode_cursor(cursor) if cursor else None)
    items, next_cursor = page(rows, limit, lambda row: (row.created_at, row.id))
    return InvoicePage(items=items, next_cursor=next_cursor)


@dataclass(frozen=True)
class InvoiceView:
    """An invoice with its lines in order."""

    invoice: Invoice
    lines: list[InvoiceLine]


def get_invoice(*, uow: UnitOfWork, owner_id: uuid.UUID, invoice_id: uuid.UUID) -> InvoiceView:
    """One of the owner's invoices with its lines.

    Raises:
        NotFound: no such invoice of the owner (another account's is none).
    """
    invoice = uow.invoices.get(owner_id=owner_id, invoice_id=invoice_id)
    if invoice is None:
        raise NotFound("No invoice with this id exists for you.")
    return InvoiceView(invoice=invoice, lines=uow.invoices.lines(invoice.id))


def exported_invoices(*, uow: UnitOfWork, owner_id: uuid.UUID) -> list[InvoiceView]:
    """Every invoice of the owner with its lines, oldest first: their data export's section."""
    return [
        InvoiceView(invoice=invoice, lines=uow.invoices.lines(invoice.id))
        for invoice in uow.invoices.all_of_owner(owner_id)
    ]


def due_invoices(*, uow: UnitOfWork, now: datetime, limit: int) -> list[uuid.UUID]:
    """Ids of up to `limit` open invoices whose next payment attempt is due at `now`."""
    return uow.invoices.due_for_retry(now, limit=limit)
