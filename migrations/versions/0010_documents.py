"""Documents (issue 15): files uploaded to a chatbot, their scan verdict and processing state.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from persistence.types import UTCDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "documents",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("chatbot_id", sa.Uuid(), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("media_type", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("text_encoding", sa.String(40), nullable=True),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("scan_verdict", sa.String(12), nullable=True),
        sa.Column("scan_engine", sa.String(40), nullable=True),
        sa.Column("scan_signature", sa.String(200), nullable=True),
        sa.Column("scan_detail", sa.String(500), nullable=True),
        sa.Column("pages", sa.Integer(), nullable=True),
        sa.Column("words", sa.Integer(), nullable=True),
        sa.Column("passages", sa.Integer(), nullable=True),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("job_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["chatbot_id"], ["chatbots.id"], ondelete="CASCADE", name="fk_documents_chatbot_id_chatbots"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_documents"),
        sa.CheckConstraint(
            "status IN ('pending', 'scanning', 'extracting', 'ready', 'quarantined', 'failed')",
            name="ck_documents_status_allowed",
        ),
        sa.CheckConstraint(
            "scan_verdict IS NULL OR scan_verdict IN ('clean', 'infected', 'unscannable')",
            name="ck_documents_scan_verdict_allowed",
        ),
    )
    op.create_index("ix_documents_chatbot_created", "documents", ["chatbot_id", "created_at", "id"])
    op.create_index("ix_documents_sha256", "documents", ["sha256"])
    op.create_index("ix_documents_owner", "documents", ["owner_id"])


def downgrade() -> None:
    op.drop_table("documents")
