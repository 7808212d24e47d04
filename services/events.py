"""Domain events (issue 14): what happened to a user's data, recorded in the unit of work that
made it happen and published when that work commits, in its transaction (a transactional outbox:
the deliveries an event causes are committed with the change, or not at all; an event of work
that was rolled back is never published). Today the only subscriber is outbound webhooks
(`services.webhooks.fan_out`, wired by `server/`).

Event types and their `data` are the contract's `WebhookEvent` components (README, Webhooks).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from persistence.tasks.models import Task
from persistence.unit_of_work import UnitOfWork
from services.clock import Clock


class EventType(StrEnum):
    """The event types a webhook endpoint can subscribe to; the contract lists the same values."""

    TASK_CREATED = "task.created"
    TASK_COMPLETED = "task.completed"
    TASK_DELETED = "task.deleted"
    JOB_SUCCEEDED = "job.succeeded"
    JOB_FAILED = "job.failed"
    REMINDER_FIRED = "reminder.fired"
    USAGE_THRESHOLD_REACHED = "usage.threshold_reached"
    SUBSCRIPTION_UPDATED = "subscription.updated"
    INVOICE_PAID = "invoice.paid"
    INVOICE_PAYMENT_FAILED = "invoice.payment_failed"


@dataclass(frozen=True)
class Event:
    """Something that happened to `owner_id`'s data.

    Attributes:
        id: unique; the webhook's `webhook-id` and the payload's `id` (``evt_`` + 32 hex digits).
        type: an `EventType` value.
        occurred_at: when (aware, UTC).
        data: the event's `data` object (JSON), as the contract describes it per type.
    """

    id: str
    type: str
    owner_id: uuid.UUID
    occurred_at: datetime
    data: dict[str, Any]

    def payload(self) -> dict[str, Any]:
        """The body delivered to webhooks: ``{type, id, created_at, data}`` (API_STYLE, Webhooks)."""
        return {
            "type": self.type,
            "id": self.id,
            "created_at": self.occurred_at.isoformat().replace("+00:00", "Z"),
            "data": self.data,
        }


def timestamp(instant: datetime | None) -> str | None:
    """An instant as events write it (RFC 3339, UTC, ``Z``), or None."""
    return instant.isoformat().replace("+00:00", "Z") if instant is not None else None


def task_data(task: Task) -> dict[str, Any]:
    """The contract's `TaskEventData`: the task as an event shows it."""
    return {
        "id": str(task.id),
        "title": task.title,
        "priority": task.priority,
        "completed": task.completed,
        "due_at": timestamp(task.due_at),
        "tags": list(task.tags),
        "version": task.version,
    }


def emit(uow: UnitOfWork, *, clock: Clock, owner_id: uuid.UUID, type: EventType, data: dict[str, Any]) -> Event:
    """Record an event of `owner_id` in `uow`; it is published when `uow` commits, in its
    transaction (never if the work is rolled back). Returns the event."""
    event = Event(id=f"evt_{uuid.uuid4().hex}", type=str(type), owner_id=owner_id, occurred_at=clock.now(), data=data)
    uow.record_event(event)
    return event
