"""Caching (issue 18): `chatbots.knowledge_version` counts the changes of a chatbot's knowledge
(a source's passages indexed again or removed), bumped in the same transaction as each change
(`persistence.knowledge.repository`), so a cached answer keyed by it never outlives the
knowledge it cites. Existing chatbots start at 0.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("chatbots") as batch:
        batch.add_column(sa.Column("knowledge_version", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("chatbots") as batch:
        batch.drop_column("knowledge_version")
