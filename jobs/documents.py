"""Document processing (issue 15): `documents.process`, queued by
`services.documents.upload_document` for each accepted upload (the API answered 202 with the job).

Retries (`RetryPolicy`): an unreachable clamd (`ScannerUnavailable`) or an unexpected error is
tried again after 30 seconds, doubling, up to 8 attempts (about an hour); a document that cannot
be read (`DocumentUnreadable`, a `DomainError`) fails the job at once with its problem.
"""

from __future__ import annotations

import uuid
from typing import Any

from services import documents
from services.jobs import JobKind, JobRun, RetryPolicy

PROCESS_RETRY = RetryPolicy(max_attempts=8, base_delay_seconds=30, max_delay_seconds=1800)


def process(run: JobRun) -> dict[str, Any]:
    """Scan, read and index the document named by the payload's `document_id`
    (`services.documents.process_document`, idempotent). The result: the document's status
    afterwards (null when it was deleted meanwhile), its scan verdict and counts."""
    report = documents.process_document(
        unit_of_work=run.unit_of_work,
        clock=run.clock,
        config=documents.config_of(run.engine),
        document_id=uuid.UUID(str(run.payload["document_id"])),
        progress=lambda step, what: run.checkpoint(step - 1, 3, what),
    )
    run.checkpoint(3, 3, report.status or "document deleted")
    return report.as_result()


JOB_KINDS = [JobKind(documents.PROCESS_KIND, process, PROCESS_RETRY)]
