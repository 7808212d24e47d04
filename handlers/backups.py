"""Operations of the `backups` tag: the backup archives, listed for administrators (issue 18)."""

from __future__ import annotations

from typing import Any

from handlers.responses import json_answer, timestamp
from server.integration.context import state
from services import backups


def _backup(summary: backups.BackupSummary) -> dict[str, Any]:
    return {
        "name": summary.name,
        "size_bytes": summary.size_bytes,
        "created_at": timestamp(summary.created_at),
        "valid": summary.valid,
        "problem": summary.problem[:1000] if summary.problem else None,
        "database_kind": summary.database_kind,
        "schema_revision": summary.schema_revision,
        "table_rows_total": summary.table_rows_total,
        "document_files": summary.document_files,
    }


def list_backups(limit: int = 20, cursor: str | None = None) -> tuple:
    """GET /api/v1/admin/backups — administrators; the archives in BACKUP_DIR, newest first."""
    result = backups.list_backups(directory=state().settings.backup_directory, limit=limit, cursor=cursor)
    return json_answer({"items": [_backup(item) for item in result.items], "next_cursor": result.next_cursor})
