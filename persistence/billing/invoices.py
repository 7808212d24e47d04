"""Reads and writes of `invoices` and `invoice_lines` (issue 17). Every read of an account's
invoices takes the owner."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from persistence.billing.models import Invoice, InvoiceLine


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
