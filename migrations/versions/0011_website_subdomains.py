"""Website sources may include subdomains (issue 15: "subdomains only if asked"): every stored
website's crawl settings get `include_subdomains`, false (what crawls did before it existed).

A website's crawl settings are one JSON object (`websites.settings`, migration 0009); this fills
the new key in for the rows written before it, so every row states all its settings. One UPDATE
per dialect (it renders offline too, `alembic upgrade head --sql`); downgrade removes the key.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute(
            "UPDATE websites SET settings = (settings::jsonb || '{\"include_subdomains\": false}'::jsonb)::json "
            "WHERE settings::jsonb -> 'include_subdomains' IS NULL"
        )
    else:
        op.execute(
            "UPDATE websites SET settings = json_set(settings, '$.include_subdomains', json('false')) "
            "WHERE json_extract(settings, '$.include_subdomains') IS NULL"
        )


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute("UPDATE websites SET settings = (settings::jsonb - 'include_subdomains')::json")
    else:
        op.execute("UPDATE websites SET settings = json_remove(settings, '$.include_subdomains')")
