"""A chatbot's knowledge index (issue 15): passages and their full-text index.

PostgreSQL: a generated tsvector (English; the text weighs more than the title and heading)
with a GIN index. SQLite: an external-content FTS5 table (Porter stemming over unicode61) keyed
by the passages' integer `seq`, kept in step by triggers.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from persistence.types import UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

SQLITE_INDEX = [
    "CREATE VIRTUAL TABLE knowledge_passages_fts USING fts5("
    "text, title, heading, content='knowledge_passages', content_rowid='seq', "
    "tokenize='porter unicode61')",
    "CREATE TRIGGER knowledge_passages_fts_insert AFTER INSERT ON knowledge_passages BEGIN "
    "INSERT INTO knowledge_passages_fts(rowid, text, title, heading) "
    "VALUES (new.seq, new.text, new.title, new.heading); END",
    "CREATE TRIGGER knowledge_passages_fts_delete AFTER DELETE ON knowledge_passages BEGIN "
    "INSERT INTO knowledge_passages_fts(knowledge_passages_fts, rowid, text, title, heading) "
    "VALUES ('delete', old.seq, old.text, old.title, old.heading); END",
    "CREATE TRIGGER knowledge_passages_fts_update AFTER UPDATE ON knowledge_passages BEGIN "
    "INSERT INTO knowledge_passages_fts(knowledge_passages_fts, rowid, text, title, heading) "
    "VALUES ('delete', old.seq, old.text, old.title, old.heading); "
    "INSERT INTO knowledge_passages_fts(rowid, text, title, heading) "
    "VALUES (new.seq, new.text, new.title, new.heading); END",
]


def upgrade() -> None:
    dialect = op.get_context().dialect.name
    op.create_table(
        "knowledge_passages",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("chatbot_id", sa.Uuid(), nullable=False),
        sa.Column("source_type", sa.String(20), nullable=False),
        sa.Column("source_id", sa.Uuid(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("words", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(500), nullable=True),
        sa.Column("url", sa.String(2048), nullable=True),
        sa.Column("page", sa.Integer(), nullable=True),
        sa.Column("heading", sa.String(500), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["chatbot_id"], ["chatbots.id"], ondelete="CASCADE", name="fk_knowledge_passages_chatbot_id_chatbots"
        ),
        sa.PrimaryKeyConstraint("seq", name="pk_knowledge_passages"),
    )
    op.create_index("uq_knowledge_passages_id", "knowledge_passages", ["id"], unique=True)
    op.create_index(
        "ix_knowledge_passages_source", "knowledge_passages", ["chatbot_id", "source_type", "source_id", "position"]
    )
    if dialect == "postgresql":
        op.execute(
            "ALTER TABLE knowledge_passages ADD COLUMN search_vector tsvector GENERATED ALWAYS AS "
            "(setweight(to_tsvector('english', text), 'A') || "
            "setweight(to_tsvector('english', coalesce(title, '') || ' ' || coalesce(heading, '')), 'B')) STORED"
        )
        op.execute("CREATE INDEX ix_knowledge_passages_search ON knowledge_passages USING GIN (search_vector)")
    elif dialect == "sqlite":
        for statement in SQLITE_INDEX:
            op.execute(statement)


def downgrade() -> None:
    dialect = op.get_context().dialect.name
    if dialect == "sqlite":
        for name in ("insert", "delete", "update"):
            op.execute(f"DROP TRIGGER IF EXISTS knowledge_passages_fts_{name}")
        op.execute("DROP TABLE IF EXISTS knowledge_passages_fts")
    elif dialect == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_knowledge_passages_search")
    op.drop_index("ix_knowledge_passages_source", table_name="knowledge_passages")
    op.drop_index("uq_knowledge_passages_id", table_name="knowledge_passages")
    op.drop_table("knowledge_passages")
