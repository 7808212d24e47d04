"""Usage metering (issue 17, part B): the all-time usage counters of what already exists, so the
quotas count it from the start. `services.usage` keeps the meters that count what exists
(chatbots, documents, storage_bytes, api_keys) in one counter per account under the period start
1970-01-01T00:00:00Z; without this, an account's chatbots, documents and keys made before
metering began would be free of its quotas (and deleting them would be given back from zero).

* ``chatbots``: the account's chatbots not being deleted;
* ``documents`` and ``storage_bytes``: the documents (and their bytes) of those chatbots;
* ``api_keys``: the account's keys neither revoked nor expired.

The periodic meters (messages, crawled pages) start at zero: they count from now. No schema
change. Downgrade removes those all-time counters and their usage events (they are derived
from the data; upgrading again counts them again).

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-02
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import context, op

from persistence.types import UTCDateTime

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

ALL_TIME = datetime(1970, 1, 1, tzinfo=UTC)
"""`services.usage.ALL_TIME`: the period start of the all-time counters."""
ALL_TIME_METERS = ("chatbots", "documents", "storage_bytes", "api_keys")

OFFLINE_BACKFILL = """
INSERT INTO usage_counters (owner_id, meter, period_start, used, notified_percent, updated_at)
SELECT owner_id, 'chatbots', TIMESTAMPTZ '1970-01-01 00:00:00+00', count(*), 0, now()
FROM chatbots WHERE deleting_since IS NULL GROUP BY owner_id;
INSERT INTO usage_counters (owner_id, meter, period_start, used, notified_percent, updated_at)
SELECT d.owner_id, 'documents', TIMESTAMPTZ '1970-01-01 00:00:00+00', count(*), 0, now()
FROM documents d JOIN chatbots c ON c.id = d.chatbot_id WHERE c.deleting_since IS NULL GROUP BY d.owner_id;
INSERT INTO usage_counters (owner_id, meter, period_start, used, notified_percent, updated_at)
SELECT d.owner_id, 'storage_bytes', TIMESTAMPTZ '1970-01-01 00:00:00+00', sum(d.size_bytes), 0, now()
FROM documents d JOIN chatbots c ON c.id = d.chatbot_id WHERE c.deleting_since IS NULL GROUP BY d.owner_id;
INSERT INTO usage_counters (owner_id, meter, period_start, used, notified_percent, updated_at)
SELECT owner_id, 'api_keys', TIMESTAMPTZ '1970-01-01 00:00:00+00', count(*), 0, now()
FROM api_keys WHERE revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now()) GROUP BY owner_id
"""
"""The same backfill as SQL for a DBA (``alembic upgrade --sql``, PostgreSQL)."""

counters = sa.table(
    "usage_counters",
    sa.column("owner_id", sa.Uuid()),
    sa.column("meter", sa.String(40)),
    sa.column("period_start", UTCDateTime()),
    sa.column("used", sa.BigInteger()),
    sa.column("notified_percent", sa.Integer()),
    sa.column("updated_at", UTCDateTime()),
)
usage_events = sa.table("usage_events", sa.column("meter", sa.String(40)))
chatbots = sa.table(
    "chatbots", sa.column("id", sa.Uuid()), sa.column("owner_id", sa.Uuid()), sa.column("deleting_since", UTCDateTime())
)
documents = sa.table(
    "documents",
    sa.column("chatbot_id", sa.Uuid()),
    sa.column("owner_id", sa.Uuid()),
    sa.column("size_bytes", sa.BigInteger()),
)
api_keys = sa.table(
    "api_keys",
    sa.column("owner_id", sa.Uuid()),
    sa.column("revoked_at", UTCDateTime()),
    sa.column("expires_at", UTCDateTime()),
)


def _insert(meter: str, owner: sa.ColumnElement, used: sa.ColumnElement, source: sa.Select, now: datetime) -> sa.Insert:
    select = source.with_only_columns(
        owner,
        sa.literal(meter, sa.String(40)),
        sa.literal(ALL_TIME, UTCDateTime()),
        used,
        sa.literal(0, sa.Integer()),
        sa.literal(now, UTCDateTime()),
    ).group_by(owner)
    return counters.insert().from_select(
        ["owner_id", "meter", "period_start", "used", "notified_percent", "updated_at"], select
    )


def upgrade() -> None:
    if context.is_offline_mode():
        for statement in OFFLINE_BACKFILL.strip().split(";\n"):
            op.execute(statement)
        return
    now = datetime.now(UTC)
    live = sa.select(chatbots.c.owner_id).where(chatbots.c.deleting_since.is_(None))
    held = (
        sa.select(documents.c.owner_id)
        .select_from(documents.join(chatbots, chatbots.c.id == documents.c.chatbot_id))
        .where(chatbots.c.deleting_since.is_(None))
    )
    keys = sa.select(api_keys.c.owner_id).where(
        api_keys.c.revoked_at.is_(None),
        sa.or_(api_keys.c.expires_at.is_(None), api_keys.c.expires_at > sa.literal(now, UTCDateTime())),
    )
    bind = op.get_bind()
    bind.execute(_insert("chatbots", chatbots.c.owner_id, sa.func.count(), live, now))
    bind.execute(_insert("documents", documents.c.owner_id, sa.func.count(), held, now))
    bind.execute(_insert("storage_bytes", documents.c.owner_id, sa.func.sum(documents.c.size_bytes), held, now))
    bind.execute(_insert("api_keys", api_keys.c.owner_id, sa.func.count(), keys, now))


def downgrade() -> None:
    op.execute(counters.delete().where(counters.c.meter.in_(ALL_TIME_METERS)))
    op.execute(usage_events.delete().where(usage_events.c.meter.in_(ALL_TIME_METERS)))
