"""Reminders, recurring tasks and notifications (issue 14, slice 2).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from persistence.types import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("recurrence", sa.String(500), nullable=True))
    op.create_table(
        "reminders",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("task_id", sa.Uuid(), nullable=False),
        sa.Column("remind_at", UTCDateTime(), nullable=False),
        sa.Column("minutes_before_due", sa.Integer(), nullable=True),
        sa.Column("channels", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("fired_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"], ondelete="CASCADE", name="fk_reminders_owner_id_users"),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.id"], ondelete="CASCADE", name="fk_reminders_task_id_tasks"),
        sa.PrimaryKeyConstraint("id", name="pk_reminders"),
        sa.CheckConstraint("status IN ('pending', 'fired', 'skipped')", name="ck_reminders_status_allowed"),
    )
    op.create_index("ix_reminders_task_created", "reminders", ["task_id", "created_at", "id"])
    op.create_index("ix_reminders_status_remind_at", "reminders", ["status", "remind_at"])
    op.create_index("ix_reminders_owner", "reminders", ["owner_id"])
    op.create_table(
        "notifications",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("type", sa.String(40), nullable=False),
        sa.Column("title", sa.String(300), nullable=False),
        sa.Column("body", sa.Text(), nullable=True),
        sa.Column("task_id", sa.Uuid(), nullable=True),
        sa.Column("reminder_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("read_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"], ondelete="CASCADE", name="fk_notifications_owner_id_users"),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.id"], ondelete="SET NULL", name="fk_notifications_task_id_tasks"),
        sa.ForeignKeyConstraint(
            ["reminder_id"], ["reminders.id"], ondelete="SET NULL", name="fk_notifications_reminder_id_reminders"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_notifications"),
    )
    op.create_index("ix_notifications_owner_created", "notifications", ["owner_id", "created_at", "id"])
    op.create_index("ix_notifications_owner_unread", "notifications", ["owner_id", "read_at", "created_at", "id"])


def downgrade() -> None:
    op.drop_table("notifications")
    op.drop_table("reminders")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("recurrence")
