"""Billing (issue 17): plans and the catalogue, subscriptions, invoices and their lines, payment
methods, provider events, usage events and counters.

The catalogue ships as data: free, pro and business, monthly and yearly, prices in US cents.
Yearly plans cost ten months and allow twelve months' usage per (yearly) period.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import context, op

from persistence.types import UTCDateTime

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

MIB = 1024 * 1024
MONTHLY_QUOTAS = {
    "free": {
        "chatbots": 2,
        "messages": 100,
        "crawled_pages": 100,
        "documents": 10,
        "storage_bytes": 50 * MIB,
        "api_keys": 2,
    },
    "pro": {
        "chatbots": 10,
        "messages": 5_000,
        "crawled_pages": 5_000,
        "documents": 500,
        "storage_bytes": 2_048 * MIB,
        "api_keys": 10,
    },
    "business": {
        "chatbots": 50,
        "messages": 50_000,
        "crawled_pages": 50_000,
        "documents": 5_000,
        "storage_bytes": 20_480 * MIB,
        "api_keys": 25,
    },
}
PERIODIC_METERS = {"messages", "crawled_pages"}


def _quotas(tier: str, months: int) -> dict[str, int]:
    return {
        meter: limit * months if meter in PERIODIC_METERS else limit for meter, limit in MONTHLY_QUOTAS[tier].items()
    }


def catalogue() -> list[dict[str, object]]:
    """The plans the product ships with (also what `charter plans sync` restores)."""
    created = datetime(2026, 12, 2, tzinfo=UTC)
    rows: list[dict[str, object]] = [
        {"code": "free", "name": "Free", "interval": "month", "price": 0, "tier": 0, "quotas": _quotas("free", 1)},
        {
            "code": "pro_monthly",
            "name": "Pro (monthly)",
            "interval": "month",
            "price": 2_900,
            "tier": 1,
            "quotas": _quotas("pro", 1),
        },
        {
            "code": "pro_yearly",
            "name": "Pro (yearly)",
            "interval": "year",
            "price": 29_000,
            "tier": 1,
            "quotas": _quotas("pro", 12),
        },
        {
            "code": "business_monthly",
            "name": "Business (monthly)",
            "interval": "month",
            "price": 9_900,
            "tier": 2,
            "quotas": _quotas("business", 1),
        },
        {
            "code": "business_yearly",
            "name": "Business (yearly)",
            "interval": "year",
            "price": 99_000,
            "tier": 2,
            "quotas": _quotas("business", 12),
        },
    ]
    return [{**row, "currency": "USD", "active": True, "created_at": created} for row in rows]


def upgrade() -> None:
    plans = op.create_table(
        "plans",
        sa.Column("code", sa.String(40), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("interval", sa.String(10), nullable=False),
        sa.Column("price", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("tier", sa.Integer(), nullable=False),
        sa.Column("quotas", sa.JSON(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("code", name="pk_plans"),
    )
    if context.is_offline_mode():
        # SQL for a DBA (PostgreSQL): a JSON value has no literal form, a string literal is cast
        columns = [sa.column(c.name, sa.Text() if c.name == "quotas" else c.type) for c in plans.columns]
        text_quotas = sa.table(plans.name, *columns)
        op.bulk_insert(text_quotas, [{**row, "quotas": json.dumps(row["quotas"])} for row in catalogue()])
    else:
        op.bulk_insert(plans, catalogue())

    op.create_table(
        "subscriptions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("plan_code", sa.String(40), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("billing_cycle_anchor", UTCDateTime(), nullable=False),
        sa.Column("current_period_start", UTCDateTime(), nullable=False),
        sa.Column("current_period_end", UTCDateTime(), nullable=False),
        sa.Column("trial_end", UTCDateTime(), nullable=True),
        sa.Column("cancel_at_period_end", sa.Boolean(), nullable=False),
        sa.Column("canceled_at", UTCDateTime(), nullable=True),
        sa.Column("pending_plan_code", sa.String(40), nullable=True),
        sa.Column("provider", sa.String(20), nullable=True),
        sa.Column("provider_customer_id", sa.String(255), nullable=True),
        sa.Column("dunning_attempts", sa.Integer(), nullable=False),
        sa.Column("next_payment_attempt_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"], ondelete="CASCADE", name="fk_subscriptions_owner_id_users"),
        sa.ForeignKeyConstraint(["plan_code"], ["plans.code"], name="fk_subscriptions_plan_code_plans"),
        sa.ForeignKeyConstraint(["pending_plan_code"], ["plans.code"], name="fk_subscriptions_pending_plan_code_plans"),
        sa.PrimaryKeyConstraint("id", name="pk_subscriptions"),
        sa.UniqueConstraint("owner_id", name="uq_subscriptions_owner_id"),
    )
    op.create_index("ix_subscriptions_status_period_end", "subscriptions", ["status", "current_period_end"])
    op.create_index("ix_subscriptions_next_payment_attempt", "subscriptions", ["next_payment_attempt_at"])

    op.create_table(
        "invoices",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("subscription_id", sa.Uuid(), nullable=True),
        sa.Column("number", sa.String(40), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("billing_reason", sa.String(40), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("subtotal", sa.BigInteger(), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.Column("amount_due", sa.BigInteger(), nullable=False),
        sa.Column("amount_paid", sa.BigInteger(), nullable=False),
        sa.Column("period_start", UTCDateTime(), nullable=False),
        sa.Column("period_end", UTCDateTime(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("finalized_at", UTCDateTime(), nullable=True),
        sa.Column("paid_at", UTCDateTime(), nullable=True),
        sa.Column("voided_at", UTCDateTime(), nullable=True),
        sa.Column("attempt_count", sa.Integer(), nullable=False),
        sa.Column("next_payment_attempt_at", UTCDateTime(), nullable=True),
        sa.Column("last_payment_error", sa.String(500), nullable=True),
        sa.Column("provider_payment_id", sa.String(255), nullable=True),
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"], ondelete="CASCADE", name="fk_invoices_owner_id_users"),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.id"],
            ondelete="SET NULL",
            name="fk_invoices_subscription_id_subscriptions",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_invoices"),
        sa.UniqueConstraint("number", name="uq_invoices_number"),
    )
    op.create_index("ix_invoices_owner_created", "invoices", ["owner_id", "created_at", "id"])
    op.create_index("ix_invoices_status_next_attempt", "invoices", ["status", "next_payment_attempt_at"])

    op.create_table(
        "invoice_lines",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("invoice_id", sa.Uuid(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(30), nullable=False),
        sa.Column("description", sa.String(300), nullable=False),
        sa.Column("plan_code", sa.String(40), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("period_start", UTCDateTime(), nullable=False),
        sa.Column("period_end", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["invoice_id"], ["invoices.id"], ondelete="CASCADE", name="fk_invoice_lines_invoice_id_invoices"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_invoice_lines"),
        sa.UniqueConstraint("invoice_id", "position", name="uq_invoice_lines_invoice_position"),
    )

    op.create_table(
        "payment_methods",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("provider", sa.String(20), nullable=False),
        sa.Column("provider_payment_method_id", sa.String(255), nullable=False),
        sa.Column("brand", sa.String(20), nullable=False),
        sa.Column("last4", sa.String(4), nullable=False),
        sa.Column("exp_month", sa.Integer(), nullable=False),
        sa.Column("exp_year", sa.Integer(), nullable=False),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("detached_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], ondelete="CASCADE", name="fk_payment_methods_owner_id_users"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_payment_methods"),
    )
    op.create_index("ix_payment_methods_owner_created", "payment_methods", ["owner_id", "created_at", "id"])

    op.create_table(
        "provider_events",
        sa.Column("provider", sa.String(20), nullable=False),
        sa.Column("event_id", sa.String(255), nullable=False),
        sa.Column("type", sa.String(100), nullable=False),
        sa.Column("object_id", sa.String(255), nullable=True),
        sa.Column("created", UTCDateTime(), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("processed_at", UTCDateTime(), nullable=True),
        sa.Column("outcome", sa.String(40), nullable=True),
        sa.PrimaryKeyConstraint("provider", "event_id", name="pk_provider_events"),
    )

    op.create_table(
        "usage_events",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("meter", sa.String(40), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("idempotency_key", sa.String(200), nullable=False),
        sa.Column("period_start", UTCDateTime(), nullable=False),
        sa.Column("occurred_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"], ondelete="CASCADE", name="fk_usage_events_owner_id_users"),
        sa.PrimaryKeyConstraint("id", name="pk_usage_events"),
        sa.UniqueConstraint("owner_id", "meter", "idempotency_key", name="uq_usage_events_owner_meter_key"),
    )
    op.create_index("ix_usage_events_owner_meter_period", "usage_events", ["owner_id", "meter", "period_start"])

    op.create_table(
        "usage_counters",
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("meter", sa.String(40), nullable=False),
        sa.Column("period_start", UTCDateTime(), nullable=False),
        sa.Column("used", sa.BigInteger(), nullable=False),
        sa.Column("notified_percent", sa.Integer(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], ondelete="CASCADE", name="fk_usage_counters_owner_id_users"
        ),
        sa.PrimaryKeyConstraint("owner_id", "meter", "period_start", name="pk_usage_counters"),
    )


def downgrade() -> None:
    for table in (
        "usage_counters",
        "usage_events",
        "provider_events",
        "payment_methods",
        "invoice_lines",
        "invoices",
        "subscriptions",
        "plans",
    ):
        op.drop_table(table)
