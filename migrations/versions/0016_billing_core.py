"""Billing core (issue 17): a subscription's period is invoiced once — invoices are unique by
(subscription, period start, billing reason), so a rerun of the period roll never invoices a
period twice — and the billing history (`billing_history`), append-only, that the
administrators' summary (churn, failed payments) reads.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from persistence.types import UTCDateTime

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("invoices") as batch:
        batch.create_unique_constraint(
            "uq_invoices_subscription_period_reason", ["subscription_id", "period_start", "billing_reason"]
        )
    op.create_table(
        "billing_history",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("occurred_at", UTCDateTime(), nullable=False),
        sa.Column("kind", sa.String(30), nullable=False),
        sa.Column("plan_code", sa.String(40), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("paid", sa.Boolean(), nullable=False),
        sa.Column("invoice_id", sa.Uuid(), nullable=True),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], ondelete="CASCADE", name="fk_billing_history_owner_id_users"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_billing_history"),
    )
    op.create_index("ix_billing_history_owner_sequence", "billing_history", ["owner_id", "sequence"])
    op.create_index("ix_billing_history_kind_occurred", "billing_history", ["kind", "occurred_at"])


def downgrade() -> None:
    op.drop_table("billing_history")
    with op.batch_alter_table("invoices") as batch:
        batch.drop_constraint("uq_invoices_subscription_period_reason", type_="unique")
