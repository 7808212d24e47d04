"""Public chatbots (issue 16): each chatbot gets an unguessable `public_id` (what visitors'
paths name instead of its id), and a conversation can be a visitor's: `visitor` marks it,
`visitor_token_hash` (SHA-256 of the visitor token, unique) and `visitor_expires_at` let the
visitor's token reach it and nothing else.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02
"""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from alembic import context, op

from persistence.types import UTCDateTime

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


OFFLINE_FILL = {
    "postgresql": "UPDATE chatbots SET public_id = 'pcb_' || "
    "substr(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 1, 22)",
    "sqlite": "UPDATE chatbots SET public_id = 'pcb_' || substr(lower(hex(randomblob(16))), 1, 22)",
}
"""Existing chatbots' public ids in offline SQL (``alembic upgrade --sql``), by dialect."""


def upgrade() -> None:
    with op.batch_alter_table("chatbots") as batch:
        batch.add_column(sa.Column("public_id", sa.String(40), nullable=True))
    if context.is_offline_mode():  # rendered SQL: the database draws them (22 hex digits)
        op.execute(OFFLINE_FILL[op.get_context().dialect.name])
    else:
        chatbots = sa.table("chatbots", sa.column("id", sa.Uuid()), sa.column("public_id", sa.String(40)))
        connection = op.get_bind()
        for (chatbot_id,) in connection.execute(sa.select(chatbots.c.id)).all():
            connection.execute(
                chatbots.update()
                .where(chatbots.c.id == chatbot_id)
                .values(public_id="pcb_" + secrets.token_urlsafe(16))  # as persistence.chatbots.models.new_public_id
            )
    with op.batch_alter_table("chatbots") as batch:
        batch.alter_column("public_id", existing_type=sa.String(40), nullable=False)
        batch.create_unique_constraint("uq_chatbots_public_id", ["public_id"])
    with op.batch_alter_table("conversations") as batch:
        batch.add_column(sa.Column("visitor", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("visitor_token_hash", sa.String(64), nullable=True))
        batch.add_column(sa.Column("visitor_expires_at", UTCDateTime(), nullable=True))
        batch.create_unique_constraint("uq_conversations_visitor_token_hash", ["visitor_token_hash"])


def downgrade() -> None:
    with op.batch_alter_table("conversations") as batch:
        batch.drop_constraint("uq_conversations_visitor_token_hash", type_="unique")
        batch.drop_column("visitor_expires_at")
        batch.drop_column("visitor_token_hash")
        batch.drop_column("visitor")
    with op.batch_alter_table("chatbots") as batch:
        batch.drop_constraint("uq_chatbots_public_id", type_="unique")
        batch.drop_column("public_id")
