"""Usage analytics (issue 18): the per-day raw tables the API processes add to (request counts,
latency histogram buckets, active users), the daily rollups the `analytics.rollup` job writes,
and an index on `jobs.finished_at` for the rollup's count of finished jobs per day.

Revision ID: 0022
Revises: 0017
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from persistence.types import UTCDateTime

revision = "0022"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "analytics_requests",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("operation_id", sa.String(100), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("errors_4xx", sa.BigInteger(), nullable=False),
        sa.Column("errors_5xx", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("day", "operation_id", name="pk_analytics_requests"),
    )
    op.create_table(
        "analytics_latency",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("operation_id", sa.String(100), nullable=False),
        sa.Column("le_us", sa.Integer(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("day", "operation_id", "le_us", name="pk_analytics_latency"),
    )
    op.create_table(
        "analytics_active_users",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.PrimaryKeyConstraint("day", "user_id", name="pk_analytics_active_users"),
    )
    op.create_table(
        "analytics_days",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("active_users", sa.Integer(), nullable=False),
        sa.Column("rolled_up_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("day", name="pk_analytics_days"),
    )
    op.create_table(
        "analytics_day_operations",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("operation_id", sa.String(100), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("errors_4xx", sa.BigInteger(), nullable=False),
        sa.Column("errors_5xx", sa.BigInteger(), nullable=False),
        sa.Column("p95_us", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("day", "operation_id", name="pk_analytics_day_operations"),
    )
    op.create_table(
        "analytics_day_jobs",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("kind", sa.String(100), nullable=False),
        sa.Column("outcome", sa.String(12), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("day", "kind", "outcome", name="pk_analytics_day_jobs"),
    )
    op.create_index("ix_jobs_finished_at", "jobs", ["finished_at"])


def downgrade() -> None:
    op.drop_index("ix_jobs_finished_at", table_name="jobs")
    for table in (
        "analytics_day_jobs",
        "analytics_day_operations",
        "analytics_days",
        "analytics_active_users",
        "analytics_latency",
        "analytics_requests",
    ):
        op.drop_table(table)
