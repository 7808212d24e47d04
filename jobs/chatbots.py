"""Chatbot deletion (issue 15): `chatbots.delete`, queued by `services.chatbots.delete_chatbot`
when a chatbot's deletion is asked for (the API answered 202 with the job)."""

from __future__ import annotations

import uuid
from typing import Any

from services import chatbots, documents
from services.jobs import JobKind, JobRun, RetryPolicy


def delete(run: JobRun) -> dict[str, Any]:
    """Remove the chatbot named by the payload's `chatbot_id` and everything it holds: its
    documents (rows, then their stored files once no other document names them), its index and
    its row. Idempotent: a second run finds nothing left and says so (`deleted: false`)."""
    chatbot_id = uuid.UUID(str(run.payload["chatbot_id"]))
    with run.unit_of_work() as uow:
        keys = documents.purge_chatbot_documents(uow=uow, chatbot_id=chatbot_id)
        deleted = chatbots.purge_chatbot(uow=uow, chatbot_id=chatbot_id)
    if keys:  # after the commit: a file still named by another document is kept
        documents.release_files(unit_of_work=run.unit_of_work, store=documents.config_of(run.engine).store, keys=keys)
    run.checkpoint(1, 1, "deleted")
    return {"chatbot_id": str(run.payload["chatbot_id"]), "deleted": deleted}


JOB_KINDS = [
    JobKind(chatbots.DELETE_KIND, delete, RetryPolicy(max_attempts=5, base_delay_seconds=30, max_delay_seconds=900))
]
