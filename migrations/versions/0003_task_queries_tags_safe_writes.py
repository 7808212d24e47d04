"""Task querying, tags, safe writes: sort keys, versions (ETag), tags, full-text search,
idempotency records, and the indexes the list, filter, search and stats queries use.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from persistence.types import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

NO_DUE_DATE = "9999-12-31 23:59:59.000000"
"""`due_at_key` of a task without a due date: it sorts after every real date."""


def upgrade() -> None:
    dialect = op.get_context().dialect.name
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("version", sa.Integer(), nullable=False, server_default="1"))
        batch.add_column(sa.Column("priority_rank", sa.SmallInteger(), nullable=False, server_default="1"))
        batch.add_column(sa.Column("due_at_key", UTCDateTime(), nullable=True))
    rank = "CASE priority WHEN 'low' THEN 0 WHEN 'medium' THEN 1 WHEN 'high' THEN 2 ELSE 3 END"
    far = f"'{NO_DUE_DATE}+00'" if dialect == "postgresql" else f"'{NO_DUE_DATE}'"
    op.execute(f"UPDATE tasks SET priority_rank = {rank}, due_at_key = COALESCE(due_at, {far})")
    with op.batch_alter_table("tasks") as batch:
        batch.alter_column("due_at_key", existing_type=UTCDateTime(), nullable=False)
        batch.create_check_constraint("ck_tasks_priority_rank_matches", f"priority_rank = {rank}")
    op.create_index("ix_tasks_owner_due", "tasks", ["owner_id", "due_at_key", "id"])
    op.create_index("ix_tasks_owner_priority", "tasks", ["owner_id", "priority_rank", "id"])
    op.create_index("ix_tasks_owner_updated", "tasks", ["owner_id", "updated_at", "id"])
    op.create_index("ix_tasks_owner_title", "tasks", ["owner_id", "title", "id"])
    op.create_index(
        "ix_tasks_owner_stats", "tasks", ["owner_id", "completed", "priority_rank", "due_at_key", "completed_at"]
    )

    op.create_table(
        "task_tags",
        sa.Column("task_id", sa.Uuid(), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("tag", sa.String(40), nullable=False),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.id"], ondelete="CASCADE", name="fk_task_tags_task_id_tasks"),
        sa.PrimaryKeyConstraint("task_id", "tag", name="pk_task_tags"),
    )
    op.create_index("ix_task_tags_owner_tag", "task_tags", ["owner_id", "tag", "task_id"])

    op.create_table(
        "idempotency_records",
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("response_status", sa.Integer(), nullable=True),
        sa.Column("response_headers", sa.JSON(), nullable=True),
        sa.Column("response_body", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], ondelete="CASCADE", name="fk_idempotency_records_owner_id_users"
        ),
        sa.PrimaryKeyConstraint("owner_id", "key", name="pk_idempotency_records"),
        sa.CheckConstraint("state IN ('in_progress', 'completed')", name="ck_idempotency_records_state_allowed"),
    )
    op.create_index("ix_idempotency_records_expires", "idempotency_records", ["expires_at"])

    if dialect == "postgresql":
        # Full-text search: a generated tsvector (English stemming; title words weigh more than
        # description words in the ranking) and a GIN index. SQLite, the
        # single-process default, searches without an index (see persistence/tasks.py).
        op.execute(
            "ALTER TABLE tasks ADD COLUMN search_vector tsvector GENERATED ALWAYS AS "
            "(setweight(to_tsvector('english', coalesce(title, '')), 'A') || "
            "setweight(to_tsvector('english', coalesce(description, '')), 'B')) STORED"
        )
        op.execute("CREATE INDEX ix_tasks_search ON tasks USING GIN (search_vector)")


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_tasks_search")
        op.execute("ALTER TABLE tasks DROP COLUMN IF EXISTS search_vector")
    op.drop_table("idempotency_records")
    op.drop_table("task_tags")
    for name in (
        "ix_tasks_owner_stats",
        "ix_tasks_owner_title",
        "ix_tasks_owner_updated",
        "ix_tasks_owner_priority",
        "ix_tasks_owner_due",
    ):
        op.drop_index(name, table_name="tasks")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_constraint("ck_tasks_priority_rank_matches", type_="check")
        batch.drop_column("due_at_key")
        batch.drop_column("priority_rank")
        batch.drop_column("version")
