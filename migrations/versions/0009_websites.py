"""Website sources of chatbots (issue 15, "Website sources: a crawler that behaves"): the
websites a chatbot crawls and the pages each crawl recorded.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from persistence.types import UTCDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "websites",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("chatbot_id", sa.Uuid(), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("start_url", sa.String(2048), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("crawl_number", sa.Integer(), nullable=False),
        sa.Column("pages_found", sa.Integer(), nullable=False),
        sa.Column("pages_indexed", sa.Integer(), nullable=False),
        sa.Column("pages_failed", sa.Integer(), nullable=False),
        sa.Column("pages_skipped", sa.Integer(), nullable=False),
        sa.Column("robots_blocked", sa.JSON(), nullable=False),
        sa.Column("stopped", sa.String(20), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("job_id", sa.Uuid(), nullable=True),
        sa.Column("started_at", UTCDateTime(), nullable=True),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["chatbot_id"], ["chatbots.id"], ondelete="CASCADE", name="fk_websites_chatbot_id_chatbots"
        ),
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"], ondelete="CASCADE", name="fk_websites_owner_id_users"),
        sa.PrimaryKeyConstraint("id", name="pk_websites"),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'completed', 'failed', 'cancelled')", name="ck_websites_status_allowed"
        ),
    )
    op.create_index("ix_websites_chatbot_created", "websites", ["chatbot_id", "created_at", "id"])
    op.create_table(
        "web_pages",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("website_id", sa.Uuid(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("crawl_number", sa.Integer(), nullable=False),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("url_key", sa.String(2048), nullable=False),
        sa.Column("title", sa.String(500), nullable=True),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("skip_reason", sa.String(20), nullable=True),
        sa.Column("detail", sa.String(500), nullable=True),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("depth", sa.Integer(), nullable=False),
        sa.Column("words", sa.Integer(), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=True),
        sa.Column("etag", sa.String(500), nullable=True),
        sa.Column("last_modified", sa.String(100), nullable=True),
        sa.Column("links", sa.JSON(), nullable=False),
        sa.Column("fetched_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["website_id"], ["websites.id"], ondelete="CASCADE", name="fk_web_pages_website_id_websites"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_web_pages"),
        sa.UniqueConstraint("website_id", "url_key", name="uq_web_pages_website_url_key"),
        sa.UniqueConstraint("website_id", "position", name="uq_web_pages_website_position"),
        sa.CheckConstraint("status IN ('indexed', 'skipped', 'failed')", name="ck_web_pages_status_allowed"),
    )


def downgrade() -> None:
    op.drop_table("web_pages")
    op.drop_table("websites")
