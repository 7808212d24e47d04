"""Reads and writes of `webhook_endpoints` and `webhook_deliveries`; every read of an owner's
rows takes the owner."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session

from persistence.database import for_update
from persistence.jobs.models import Job
from persistence.webhooks.models import WebhookDelivery, WebhookEndpoint


class WebhookRepository:
    """Webhook endpoints and deliveries within the caller's unit of work."""

    def __init__(self, db: Session) -> None:
        self.db = db

    def add_endpoint(self, endpoint: WebhookEndpoint) -> None:
        """Stage a new endpoint and write it now."""
        self.db.add(endpoint)
        self.db.flush()

    def endpoint(self, *, owner_id: uuid.UUID, endpoint_id: uuid.UUID, lock: bool = False) -> WebhookEndpoint | None:
        """The owner's endpoint (read locked until the unit of work ends with `lock`), or None."""
        statement = select(WebhookEndpoint).where(
            WebhookEndpoint.id == endpoint_id, WebhookEndpoint.owner_id == owner_id
        )
        if lock:
            statement = for_update(self.db, statement)
        return self.db.scalars(statement.execution_options(populate_existing=True)).one_or_none()

    def endpoint_by_id(self, endpoint_id: uuid.UUID, *, lock: bool = False) -> WebhookEndpoint | None:
        """Any owner's endpoint, for the delivery job (which knows its owner from the job)."""
        statement = select(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id)
        if lock:
            statement = for_update(self.db, statement)
        return self.db.scalars(statement.execution_options(populate_existing=True)).one_or_none()

    def endpoints_page(
        self, *, owner_id: uuid.UUID, limit: int, before: tuple[datetime, uuid.UUID] | None = None
    ) -> list[WebhookEndpoint]:
        """Up to `limit` of the owner's endpoints, newest first, after the position `before`."""
        statement = select(WebhookEndpoint).where(WebhookEndpoint.owner_id == owner_id)
        if before is not None:
            statement = statement.where(tuple_(WebhookEndpoint.created_at, WebhookEndpoint.id) < tuple_(*before))
        order = (WebhookEndpoint.created_at.desc(), WebhookEndpoint.id.desc())
        return list(self.db.scalars(statement.order_by(*order).limit(limit)))

    def all_endpoints(self, owner_id: uuid.UUID) -> list[WebhookEndpoint]:
        """Every endpoint of the owner, oldest first (the data export; the fan-out filters them)."""
        statement = select(WebhookEndpoint).where(WebhookEndpoint.owner_id == owner_id)
        return list(self.db.scalars(statement.order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)))

    def enabled_endpoints(self, owner_id: uuid.UUID) -> list[WebhookEndpoint]:
        """The owner's enabled endpoints (the fan-out of every event: on the hot path of writes,
        so one indexed query, `ix_webhook_endpoints_owner_created`)."""
        statement = select(WebhookEndpoint).where(WebhookEndpoint.owner_id == owner_id, WebhookEndpoint.enabled)
        return list(self.db.scalars(statement))

    def count_endpoints(self, owner_id: uuid.UUID) -> int:
        """How many endpoints the owner has."""
        return len(list(self.db.scalars(select(WebhookEndpoint.id).where(WebhookEndpoint.owner_id == owner_id))))

    def every_endpoint(self, *, after: uuid.UUID | None, limit: int) -> list[WebhookEndpoint]:
        """Up to `limit` endpoints of every owner in id order after `after` (key rotation)."""
        statement = select(WebhookEndpoint)
        if after is not None:
            statement = statement.where(WebhookEndpoint.id > after)
        return list(self.db.scalars(statement.order_by(WebhookEndpoint.id).limit(limit)))

    def delete_endpoint(self, endpoint: WebhookEndpoint) -> None:
        """Delete the endpoint and its deliveries."""
        for delivery in self.db.scalars(select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint.id)):
            self.db.delete(delivery)
        self.db.delete(endpoint)
        self.db.flush()

    def add_delivery(self, delivery: WebhookDelivery) -> None:
        """Stage a new delivery and write it now."""
        self.db.add(delivery)
        self.db.flush()

    def delivery(self, delivery_id: uuid.UUID, *, lock: bool = False) -> WebhookDelivery | None:
        """The delivery (read locked with `lock`), or None."""
        statement = select(WebhookDelivery).where(WebhookDelivery.id == delivery_id)
        if lock:
            statement = for_update(self.db, statement)
        return self.db.scalars(statement.execution_options(populate_existing=True)).one_or_none()

    def deliveries_page(
        self, *, endpoint_id: uuid.UUID, limit: int, before: tuple[datetime, uuid.UUID] | None = None
    ) -> list[tuple[WebhookDelivery, datetime | None]]:
        """Up to `limit` deliveries of the endpoint, newest first, each with the next attempt's
        time of its job when that job is queued (None otherwise)."""
        statement = (
            select(WebhookDelivery, Job.next_attempt_at, Job.status)
            .outerjoin(Job, Job.id == WebhookDelivery.job_id)
            .where(WebhookDelivery.endpoint_id == endpoint_id)
        )
        if before is not None:
            statement = statement.where(tuple_(WebhookDelivery.created_at, WebhookDelivery.id) < tuple_(*before))
        order = (WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc())
        rows = self.db.execute(statement.order_by(*order).limit(limit)).all()
        return [(delivery, next_at if status == "queued" else None) for delivery, next_at, status in rows]
