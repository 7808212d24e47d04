"""Reads and writes of `invoices` and `invoice_lines` (issue 17). Every read of an account's
invoices takes the owner."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import func, select, tuple_
from sqlalchemy.orm import Session

from persistence.billing.models import BillingHistory, Invoice, InvoiceLine
from persistence.database import for_update


class InvoiceRepository:
    """Invoices and their lines within the caller's unit of work."""

    def __init__(self, db: Session) -> None:
        self.db = db

    def add(self, invoice: Invoice, lines: list[InvoiceLine]) -> None:
        """Stage an invoice with its lines and write them now."""
        self.db.add(invoice)
        self.db.add_all(lines)
        self.db.flush()

    def get(self, *, owner_id: uuid.UUID, invoice_id: uuid.UUID) -> Invoice | None:
        """The owner's invoice with this id, else None (also someone else's)."""
        statement = select(Invoice).where(Invoice.id == invoice_id, Invoice.owner_id == owner_id)
        return self.db.scalars(statement).one_or_none()

    def lines(self, invoice_id: uuid.UUID) -> list[InvoiceLine]:
        """The invoice's lines in order."""
        statement = select(InvoiceLine).where(InvoiceLine.invoice_id == invoice_id).order_by(InvoiceLine.position)
        return list(self.db.scalars(statement))

    def by_id(self, invoice_id: uuid.UUID, *, lock: bool = False) -> Invoice | None:
        """The invoice with this id, whoever owns it (the billing jobs and provider events), else
        None; `lock`: held locked until the unit of work ends."""
        statement = select(Invoice).where(Invoice.id == invoice_id)
        if lock:
            statement = for_update(self.db, statement)
        return self.db.scalars(statement).one_or_none()

    def by_payment(self, provider_payment_id: str) -> Invoice | None:
        """The invoice whose last charge is the provider's payment `provider_payment_id`, else None."""
        statement = select(Invoice).where(Invoice.provider_payment_id == provider_payment_id)
        return self.db.scalars(statement).first()

    def count_of_owner(self, owner_id: uuid.UUID) -> int:
        """How many invoices the owner has (the next number's sequence is this plus one)."""
        return self.db.scalar(select(func.count()).select_from(Invoice).where(Invoice.owner_id == owner_id)) or 0

    def of_period(self, *, subscription_id: uuid.UUID, period_start: datetime, billing_reason: str) -> Invoice | None:
        """The subscription's invoice for the period starting `period_start` with this reason, else None."""
        statement = select(Invoice).where(
            Invoice.subscription_id == subscription_id,
            Invoice.period_start == period_start,
            Invoice.billing_reason == billing_reason,
        )
        return self.db.scalars(statement).one_or_none()

    def list_page(
        self, *, owner_id: uuid.UUID, limit: int, before: tuple[datetime, uuid.UUID] | None = None
    ) -> list[Invoice]:
        """Up to `limit` of the owner's invoices, newest first, after the position `before`."""
        statement = select(Invoice).where(Invoice.owner_id == owner_id)
        if before is not None:
            statement = statement.where(tuple_(Invoice.created_at, Invoice.id) < tuple_(*before))
        statement = statement.order_by(Invoice.created_at.desc(), Invoice.id.desc()).limit(limit)
        return list(self.db.scalars(statement))

    def all_of_owner(self, owner_id: uuid.UUID) -> list[Invoice]:
        """Every invoice of the owner, oldest first (the data export)."""
        statement = select(Invoice).where(Invoice.owner_id == owner_id).order_by(Invoice.created_at, Invoice.id)
        return list(self.db.scalars(statement))

    def due_for_retry(self, now: datetime, *, limit: int) -> list[uuid.UUID]:
        """Ids of up to `limit` open invoices whose next payment attempt is due at `now`."""
        statement = (
            select(Invoice.id)
            .where(Invoice.status == "open", Invoice.next_payment_attempt_at <= now)
            .order_by(Invoice.next_payment_attempt_at, Invoice.id)
            .limit(limit)
        )
        return list(self.db.scalars(statement))

    def record(self, entry: BillingHistory) -> None:
        """Append an entry to the billing history."""
        self.db.add(entry)
        self.db.flush()

    def history_length(self, owner_id: uuid.UUID) -> int:
        """How many history entries the account has (the next one's sequence is this plus one)."""
        statement = select(func.count()).select_from(BillingHistory).where(BillingHistory.owner_id == owner_id)
        return self.db.scalar(statement) or 0

    def ever_paid(self, owner_id: uuid.UUID) -> bool:
        """Whether the account was ever on a paid plan (trial included), by its history."""
        statement = select(BillingHistory.id).where(BillingHistory.owner_id == owner_id, BillingHistory.paid.is_(True))
        return self.db.scalars(statement.limit(1)).first() is not None

    def history_of(self, owner_id: uuid.UUID) -> list[BillingHistory]:
        """The account's billing history, oldest first (its data export)."""
        statement = select(BillingHistory).where(BillingHistory.owner_id == owner_id).order_by(BillingHistory.sequence)
        return list(self.db.scalars(statement))

    def history_count(self, *, kind: str, since: datetime, until: datetime) -> int:
        """How many history entries of `kind` fall in [`since`, `until`)."""
        statement = (
            select(func.count())
            .select_from(BillingHistory)
            .where(BillingHistory.kind == kind, BillingHistory.occurred_at >= since, BillingHistory.occurred_at < until)
        )
        return self.db.scalar(statement) or 0

    def paying_at(self, at: datetime) -> int:
        """How many accounts were on a paid plan (status active, trialing or past due) at `at`,
        by each account's last history entry before it."""
        last = (
            select(BillingHistory.owner_id, func.max(BillingHistory.sequence).label("sequence"))
            .where(BillingHistory.occurred_at < at)
            .group_by(BillingHistory.owner_id)
            .subquery()
        )
        statement = (
            select(func.count())
            .select_from(BillingHistory)
            .join(last, (BillingHistory.owner_id == last.c.owner_id) & (BillingHistory.sequence == last.c.sequence))
            .where(BillingHistory.paid.is_(True), BillingHistory.status.in_(("active", "trialing", "past_due")))
        )
        return self.db.scalar(statement) or 0
