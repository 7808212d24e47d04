"""Roles and statuses, session devices, login lockout, password reset tokens, the audit log.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from persistence.types import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

APPEND_ONLY_MESSAGE = "audit_events is append-only"


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("role", sa.String(10), nullable=False, server_default="user"))
        batch.add_column(sa.Column("status", sa.String(12), nullable=False, server_default="active"))
        batch.create_check_constraint("ck_users_role_allowed", "role IN ('user', 'admin')")
        batch.create_check_constraint("ck_users_status_allowed", "status IN ('active', 'deactivated')")
    with op.batch_alter_table("auth_sessions") as batch:
        batch.add_column(sa.Column("user_agent", sa.String(500), nullable=True))
        batch.add_column(sa.Column("client_address", sa.String(64), nullable=True))

    op.create_table(
        "login_throttles",
        sa.Column("email_digest", sa.String(64), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("window_started_at", UTCDateTime(), nullable=False),
        sa.Column("locked_until", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("email_digest", name="pk_login_throttles"),
    )
    op.create_table(
        "password_reset_tokens",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("used_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], ondelete="CASCADE", name="fk_password_reset_tokens_user_id_users"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_password_reset_tokens"),
        sa.UniqueConstraint("token_hash", name="uq_password_reset_tokens_token_hash"),
    )
    op.create_index("ix_password_reset_tokens_user_id", "password_reset_tokens", ["user_id"])
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("occurred_at", UTCDateTime(), nullable=False),
        sa.Column("type", sa.String(40), nullable=False),
        sa.Column("actor_id", sa.Uuid(), nullable=True),
        sa.Column("subject_id", sa.Uuid(), nullable=True),
        sa.Column("client_address", sa.String(64), nullable=True),
        sa.Column("user_agent", sa.String(500), nullable=True),
        sa.Column("request_id", sa.String(128), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_events"),
    )
    op.create_index("ix_audit_events_occurred", "audit_events", ["occurred_at", "id"])
    op.create_index("ix_audit_events_subject_occurred", "audit_events", ["subject_id", "occurred_at", "id"])
    op.create_index("ix_audit_events_actor_occurred", "audit_events", ["actor_id", "occurred_at", "id"])
    op.create_index("ix_audit_events_type_occurred", "audit_events", ["type", "occurred_at", "id"])

    if op.get_context().dialect.name == "postgresql":
        op.execute(
            f"""
            CREATE FUNCTION audit_events_append_only() RETURNS trigger AS $$
            BEGIN
                RAISE EXCEPTION '{APPEND_ONLY_MESSAGE}';
            END;
            $$ LANGUAGE plpgsql
            """
        )
        op.execute(
            "CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events "
            "FOR EACH ROW EXECUTE FUNCTION audit_events_append_only()"
        )
    else:
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_events_no_{action.lower()} BEFORE {action} ON audit_events "
                f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY_MESSAGE}'); END"
            )


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_events_append_only ON audit_events")
        op.execute("DROP FUNCTION IF EXISTS audit_events_append_only()")
    op.drop_table("audit_events")
    op.drop_table("password_reset_tokens")
    op.drop_table("login_throttles")
    with op.batch_alter_table("auth_sessions") as batch:
        batch.drop_column("client_address")
        batch.drop_column("user_agent")
    with op.batch_alter_table("users") as batch:
        batch.drop_constraint("ck_users_status_allowed", type_="check")
        batch.drop_constraint("ck_users_role_allowed", type_="check")
        batch.drop_column("status")
        batch.drop_column("role")
