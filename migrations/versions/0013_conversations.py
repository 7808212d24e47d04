"""Conversations (issue 16): a user's conversations with a chatbot and their messages, answers
stored with their citations, usage, provider, latency, finish reason and feedback.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from persistence.types import UTCDateTime

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "conversations",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("chatbot_id", sa.Uuid(), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("title", sa.String(200), nullable=True),
        sa.Column("message_count", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("last_message_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["chatbot_id"], ["chatbots.id"], ondelete="CASCADE", name="fk_conversations_chatbot_id_chatbots"
        ),
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"], ondelete="CASCADE", name="fk_conversations_owner_id_users"),
        sa.PrimaryKeyConstraint("id", name="pk_conversations"),
    )
    op.create_index("ix_conversations_chatbot_created", "conversations", ["chatbot_id", "created_at", "id"])
    op.create_index("ix_conversations_owner_created", "conversations", ["owner_id", "created_at", "id"])
    op.create_table(
        "conversation_messages",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("conversation_id", sa.Uuid(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(10), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("reply_to", sa.Uuid(), nullable=True),
        sa.Column("citations", sa.JSON(), nullable=False),
        sa.Column("usage", sa.JSON(), nullable=True),
        sa.Column("provider", sa.String(40), nullable=True),
        sa.Column("latency_ms", sa.Integer(), nullable=True),
        sa.Column("finish_reason", sa.String(20), nullable=True),
        sa.Column("fallback", sa.Boolean(), nullable=False),
        sa.Column("feedback_rating", sa.String(4), nullable=True),
        sa.Column("feedback_comment", sa.String(1000), nullable=True),
        sa.Column("feedback_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            ondelete="CASCADE",
            name="fk_conversation_messages_conversation_id_conversations",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_conversation_messages"),
        sa.UniqueConstraint("conversation_id", "position", name="uq_conversation_messages_conversation_id"),
        sa.CheckConstraint("role IN ('user', 'assistant')", name="ck_conversation_messages_role_allowed"),
        sa.CheckConstraint(
            "feedback_rating IS NULL OR feedback_rating IN ('up', 'down')",
            name="ck_conversation_messages_feedback_rating_allowed",
        ),
    )


def downgrade() -> None:
    op.drop_table("conversation_messages")
    op.drop_table("conversations")
