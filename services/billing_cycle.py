"""The billing cycle (issue 17): what the periodic `billing.cycle` job does — roll every
subscription whose period has ended (renewals invoiced and charged, cancellations and downgrades
applied, trials ended) and retry the invoices whose next payment attempt is due (dunning), each
subscription and each invoice in a unit of work of its own, in bounded batches."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from persistence.unit_of_work import UnitOfWork
from services import invoices, subscriptions
from services.billing_state import BillingConfig
from services.clock import Clock

log = structlog.get_logger(__name__)

BATCH = 100
"""Subscriptions (and invoices) looked at per batch."""
MAX_BATCHES = 50
"""Batches per run at most (the next run goes on)."""


@dataclass
class CycleReport:
    """What a run did: periods rolled, invoices retried by outcome, and the ids that failed."""

    rolled: int = 0
    retried: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def run_cycle(*, unit_of_work: Callable[[], UnitOfWork], config: BillingConfig, clock: Clock) -> CycleReport:
    """One run: roll the due subscriptions, then retry the due invoices. Idempotent: a period is
    invoiced once (the roll moves it in the invoice's unit of work; invoices are unique by
    subscription, period start and reason) and a retry is made only when it is due. A failure of
    one subscription or invoice is logged and counted in `errors`; the others go on."""
    report = CycleReport()
    failed: set[uuid.UUID] = set()
    for _ in range(MAX_BATCHES):
        with unit_of_work() as uow:
            owners = [owner for owner in subscriptions.due_for_roll(uow=uow, clock=clock, limit=BATCH + len(failed))]
        owners = [owner for owner in owners if owner not in failed][:BATCH]
        if not owners:
            break
        for owner_id in owners:
            try:
                with unit_of_work() as uow:
                    report.rolled += subscriptions.roll_subscription(
                        uow=uow, config=config, clock=clock, owner_id=owner_id
                    )
            except Exception:
                log.exception("billing_roll_failed", owner_id=str(owner_id))
                failed.add(owner_id)
                report.errors.append(str(owner_id))
    tried: set[uuid.UUID] = set()
    for _ in range(MAX_BATCHES):
        with unit_of_work() as uow:
            due = invoices.due_invoices(uow=uow, now=clock.now(), limit=BATCH + len(tried))
        due = [invoice_id for invoice_id in due if invoice_id not in tried][:BATCH]
        if not due:
            break
        for invoice_id in due:
            tried.add(invoice_id)
            try:
                with unit_of_work() as uow:
                    outcome = invoices.retry_due_invoice(uow=uow, config=config, clock=clock, invoice_id=invoice_id)
            except Exception:
                log.exception("billing_retry_failed", invoice_id=str(invoice_id))
                report.errors.append(str(invoice_id))
                continue
            if outcome is not None:
                report.retried[outcome] = report.retried.get(outcome, 0) + 1
    return report
