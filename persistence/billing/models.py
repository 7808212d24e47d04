"""The billing tables (issue 17). Money is an integer count of the currency's minor units
(cents) with an ISO 4217 `currency` code beside it, everywhere: never a float. The schema changes
only through Alembic migrations (0015).

Stripe's object model is the anchor (Plan/Price, Subscription, Invoice and its lines,
PaymentMethod, Event) and Lago's for usage (billable metrics, events with an idempotency key).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Index, Integer, String, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from persistence.base import Base
from persistence.types import UTCDateTime


class Plan(Base):
    """A plan of the catalogue (`code` such as ``pro_monthly``).

    `interval` is ``month`` or ``year``; `price` is what one interval costs, in minor units of
    `currency`. `tier` orders plans by what they give (0 free, 1 pro, 2 business): a change to a
    higher tier is an upgrade. `quotas` maps each meter name (``chatbots``, ``messages``,
    ``crawled_pages``, ``documents``, ``storage_bytes``, ``api_keys``) to its limit, or null for
    no limit. `active` false: kept for the subscriptions on it, offered to no one new.
    """

    __tablename__ = "plans"

    code: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    interval: Mapped[str] = mapped_column(String(10))
    price: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    tier: Mapped[int] = mapped_column(Integer)
    quotas: Mapped[dict[str, Any]] = mapped_column(JSON)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Subscription(Base):
    """An account's subscription: one row per account (`owner_id` unique), made on the free plan
    when first needed, and changed in place as the account changes plan (the invoices and the
    audit log keep the history).

    `status`: ``trialing | active | past_due | canceled | incomplete`` (Stripe's meanings). The
    current period is [`current_period_start`, `current_period_end`). `pending_plan_code`: a
    downgrade that takes effect at the period's end. `cancel_at_period_end`: a cancellation
    that takes effect then. `dunning_attempts` and `next_payment_attempt_at` drive the retries of a
    failed charge. Periods are counted from `billing_cycle_anchor` (period n starts n
    intervals after it, so a period that starts on the 31st keeps coming back to month ends
    instead of drifting). `provider`/`provider_customer_id`: the payment provider's customer.
    `version` grows with each change (the ETag).
    """

    __tablename__ = "subscriptions"
    __table_args__ = (
        Index("ix_subscriptions_status_period_end", "status", "current_period_end"),
        Index("ix_subscriptions_next_payment_attempt", "next_payment_attempt_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), unique=True)
    plan_code: Mapped[str] = mapped_column(ForeignKey("plans.code"))
    status: Mapped[str] = mapped_column(String(20))
    billing_cycle_anchor: Mapped[datetime] = mapped_column(UTCDateTime)
    current_period_start: Mapped[datetime] = mapped_column(UTCDateTime)
    current_period_end: Mapped[datetime] = mapped_column(UTCDateTime)
    trial_end: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    cancel_at_period_end: Mapped[bool] = mapped_column(Boolean, default=False)
    canceled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    pending_plan_code: Mapped[str | None] = mapped_column(ForeignKey("plans.code"), nullable=True)
    provider: Mapped[str | None] = mapped_column(String(20), nullable=True)
    provider_customer_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    dunning_attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_payment_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    version: Mapped[int] = mapped_column(Integer, default=1)


class Invoice(Base):
    """An invoice: `status` ``draft | open | paid | void | uncollectible`` (Stripe's). `number`
    is unique and never reused. `subtotal` is the sum of the lines, `total` what is owed after
    everything, `amount_due` what remains to collect and `amount_paid` what was collected, all in
    minor units of `currency`. `billing_reason`: ``subscription_create``, ``subscription_cycle``,
    ``subscription_update``. `attempt_count`, `next_payment_attempt_at` and `last_payment_error`
    record the collection attempts; `provider_payment_id` the provider's charge or intent."""

    __tablename__ = "invoices"
    __table_args__ = (
        Index("ix_invoices_owner_created", "owner_id", "created_at", "id"),
        Index("ix_invoices_status_next_attempt", "status", "next_payment_attempt_at"),
        UniqueConstraint(
            "subscription_id", "period_start", "billing_reason", name="uq_invoices_subscription_period_reason"
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    subscription_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("subscriptions.id", ondelete="SET NULL"), nullable=True
    )
    number: Mapped[str] = mapped_column(String(40), unique=True)
    status: Mapped[str] = mapped_column(String(20))
    billing_reason: Mapped[str] = mapped_column(String(40))
    currency: Mapped[str] = mapped_column(String(3))
    subtotal: Mapped[int] = mapped_column(BigInteger)
    total: Mapped[int] = mapped_column(BigInteger)
    amount_due: Mapped[int] = mapped_column(BigInteger)
    amount_paid: Mapped[int] = mapped_column(BigInteger, default=0)
    period_start: Mapped[datetime] = mapped_column(UTCDateTime)
    period_end: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finalized_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    voided_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    attempt_count: Mapped[int] = mapped_column(Integer, default=0)
    next_payment_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_payment_error: Mapped[str | None] = mapped_column(String(500), nullable=True)
    provider_payment_id: Mapped[str | None] = mapped_column(String(255), nullable=True)


class InvoiceLine(Base):
    """A line of an invoice, in order (`position`). `kind`: ``subscription`` (a period of a
    plan), ``proration_credit`` (negative `amount`: the unused part of the old plan) or
    ``proration_charge`` (the rest of the period on the new plan). `amount` is signed, in minor
    units; [`period_start`, `period_end`) is the time it covers."""

    __tablename__ = "invoice_lines"
    __table_args__ = (UniqueConstraint("invoice_id", "position", name="uq_invoice_lines_invoice_position"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    invoice_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("invoices.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(30))
    description: Mapped[str] = mapped_column(String(300))
    plan_code: Mapped[str | None] = mapped_column(String(40), nullable=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    period_start: Mapped[datetime] = mapped_column(UTCDateTime)
    period_end: Mapped[datetime] = mapped_column(UTCDateTime)


class PaymentMethod(Base):
    """A card (or other method) the account attached through a provider token. Only what can
    be shown is kept (brand, last four digits, expiry), never a card number. `is_default`: the
    method charged for invoices. `detached_at`: removed by the owner (kept for the export)."""

    __tablename__ = "payment_methods"
    __table_args__ = (Index("ix_payment_methods_owner_created", "owner_id", "created_at", "id"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    provider: Mapped[str] = mapped_column(String(20))
    provider_payment_method_id: Mapped[str] = mapped_column(String(255))
    brand: Mapped[str] = mapped_column(String(20))
    last4: Mapped[str] = mapped_column(String(4))
    exp_month: Mapped[int] = mapped_column(Integer)
    exp_year: Mapped[int] = mapped_column(Integer)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    detached_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class ProviderEvent(Base):
    """An inbound payment-provider event (webhook), stored once per (`provider`, `event_id`) so
    a redelivery is recognised and never processed twice. `object_id` names the object it is
    about (an invoice or payment); `processed_at` is set when it was applied (or found stale)."""

    __tablename__ = "provider_events"

    provider: Mapped[str] = mapped_column(String(20), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    type: Mapped[str] = mapped_column(String(100))
    object_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    created: Mapped[datetime] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    outcome: Mapped[str | None] = mapped_column(String(40), nullable=True)


class UsageEvent(Base):
    """One recorded use of a meter (Lago's event): `quantity` (signed: a deleted document is
    -1 on ``documents``) counted in the period starting `period_start`. (`owner_id`, `meter`,
    `idempotency_key`) is unique, so a retried job that records the same use again counts once."""

    __tablename__ = "usage_events"
    __table_args__ = (
        UniqueConstraint("owner_id", "meter", "idempotency_key", name="uq_usage_events_owner_meter_key"),
        Index("ix_usage_events_owner_meter_period", "owner_id", "meter", "period_start"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    meter: Mapped[str] = mapped_column(String(40))
    quantity: Mapped[int] = mapped_column(BigInteger)
    idempotency_key: Mapped[str] = mapped_column(String(200))
    period_start: Mapped[datetime] = mapped_column(UTCDateTime)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)


class UsageCounter(Base):
    """What an account used of a meter in a period: the running sum of its usage events, kept so
    a quota check reads (and locks) one row. Meters that count what exists (chatbots,
    documents, storage bytes, API keys) use one period for all time (see services.usage).
    `notified_percent`: the highest threshold (80, 100) already announced for this period."""

    __tablename__ = "usage_counters"

    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    meter: Mapped[str] = mapped_column(String(40), primary_key=True)
    period_start: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    used: Mapped[int] = mapped_column(BigInteger, default=0)
    notified_percent: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class BillingHistory(Base):
    """What happened to an account's billing, append-only (migration 0016): each change of its
    subscription (`kind` ``subscribed``, ``plan_changed``, ``downgrade_scheduled``,
    ``cancel_scheduled``, ``resumed``, ``renewed``, ``trial_ended``, ``canceled``,
    ``recovered``, ``payment_failed``) with the plan and status after it and whether that plan is
    `paid`, and each charge (``charge_succeeded``, ``charge_failed``) with its `invoice_id`. `sequence` orders
    an account's entries. The administrators' summary (churn, failed payments) reads it."""

    __tablename__ = "billing_history"
    __table_args__ = (
        Index("ix_billing_history_owner_sequence", "owner_id", "sequence"),
        Index("ix_billing_history_kind_occurred", "kind", "occurred_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    sequence: Mapped[int] = mapped_column(BigInteger)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    kind: Mapped[str] = mapped_column(String(30))
    plan_code: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(20))
    paid: Mapped[bool] = mapped_column(Boolean)
    invoice_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
