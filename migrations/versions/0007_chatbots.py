"""Chatbots (issue 15, first slice): a user's chatbots and their settings.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from persistence.types import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "chatbots",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("instructions", sa.Text(), nullable=False),
        sa.Column("welcome_message", sa.String(1000), nullable=True),
        sa.Column("suggested_questions", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("visibility", sa.String(10), nullable=False),
        sa.Column("allowed_origins", sa.JSON(), nullable=False),
        sa.Column("passages_per_answer", sa.Integer(), nullable=False),
        sa.Column("min_score", sa.Float(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("deleting_since", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"], ondelete="CASCADE", name="fk_chatbots_owner_id_users"),
        sa.PrimaryKeyConstraint("id", name="pk_chatbots"),
        sa.CheckConstraint("status IN ('draft', 'active', 'paused', 'archived')", name="ck_chatbots_status_allowed"),
        sa.CheckConstraint("visibility IN ('private', 'public')", name="ck_chatbots_visibility_allowed"),
        sa.CheckConstraint("passages_per_answer BETWEEN 1 AND 20", name="ck_chatbots_passages_per_answer_range"),
        sa.CheckConstraint("min_score >= 0 AND min_score <= 1", name="ck_chatbots_min_score_range"),
    )
    op.create_index("ix_chatbots_owner_created", "chatbots", ["owner_id", "created_at", "id"])
    op.create_index("ix_chatbots_created", "chatbots", ["created_at", "id"])


def downgrade() -> None:
    op.drop_table("chatbots")
