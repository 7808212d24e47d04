"""Operations of the `webhooks` tag: a user's outbound webhook endpoints and their deliveries
(issue 14). Every operation works on the caller's own endpoints: another user's is 404."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from handlers.jobs import job_representation
from handlers.responses import json_answer, no_content, timestamp
from server.integration.context import clock, job_engine, principal, unit_of_work, webhook_config
from services import webhooks

if TYPE_CHECKING:
    from persistence.webhooks.models import WebhookEndpoint


def endpoint_representation(endpoint: WebhookEndpoint) -> dict[str, Any]:
    """The `WebhookEndpoint` schema (never the secret)."""
    return {
        "id": str(endpoint.id),
        "url": endpoint.url,
        "description": endpoint.description,
        "events": list(endpoint.event_types),
        "enabled": endpoint.enabled,
        "disabled_reason": endpoint.disabled_reason,
        "failing_since": timestamp(endpoint.failing_since),
        "previous_secret_expires_at": timestamp(endpoint.previous_secret_expires_at)
        if endpoint.previous_secret_encrypted
        else None,
        "created_at": timestamp(endpoint.created_at),
        "updated_at": timestamp(endpoint.updated_at),
    }


def delivery_representation(view: webhooks.DeliveryView) -> dict[str, Any]:
    """The `WebhookDelivery` schema."""
    delivery = view.delivery
    return {
        "id": str(delivery.id),
        "endpoint_id": str(delivery.endpoint_id),
        "event_id": delivery.event_id,
        "event_type": delivery.event_type,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "last_status_code": delivery.last_status_code,
        "last_duration_ms": delivery.last_duration_ms,
        "last_error": delivery.last_error,
        "next_attempt_at": timestamp(view.next_attempt_at) if delivery.status == "pending" else None,
        "job_id": str(delivery.job_id) if delivery.job_id else None,
        "payload": delivery.payload,
        "created_at": timestamp(delivery.created_at),
        "last_attempt_at": timestamp(delivery.last_attempt_at),
        "finished_at": timestamp(delivery.finished_at),
    }


def _export_endpoints(user_id: uuid.UUID) -> list[dict[str, Any]]:
    return [
        endpoint_representation(endpoint)
        for endpoint in webhooks.exported_endpoints(uow=unit_of_work(), owner_id=user_id)
    ]


EXPORT_SECTIONS = {"webhook_endpoints": _export_endpoints}
"""The caller's webhook endpoints in their data export (`handlers.data_export`); no secrets."""


def _with_secret(created: webhooks.CreatedEndpoint) -> dict[str, Any]:
    return {**endpoint_representation(created.endpoint), "secret": created.secret}


def create_webhook_endpoint(body: dict[str, Any]) -> tuple:
    """POST /api/v1/webhook-endpoints — 201 with the endpoint and its signing secret (once)."""
    created = webhooks.create_endpoint(
        uow=unit_of_work(),
        clock=clock(),
        config=webhook_config(),
        owner_id=principal().id,
        url=body["url"],
        event_types=body["events"],
        description=body.get("description"),
    )
    return json_answer(
        _with_secret(created),
        201,
        {"Location": f"/api/v1/webhook-endpoints/{created.endpoint.id}", "Cache-Control": "no-store"},
    )


def list_webhook_endpoints(limit: int = 20, cursor: str | None = None) -> tuple:
    """GET /api/v1/webhook-endpoints — the caller's endpoints, newest first."""
    result = webhooks.list_endpoints(uow=unit_of_work(), owner_id=principal().id, limit=limit, cursor=cursor)
    return json_answer(
        {"items": [endpoint_representation(item) for item in result.items], "next_cursor": result.next_cursor}
    )


def get_webhook_endpoint(endpoint_id: str) -> tuple:
    """GET /api/v1/webhook-endpoints/{endpoint_id}."""
    endpoint = webhooks.get_endpoint(uow=unit_of_work(), owner_id=principal().id, endpoint_id=uuid.UUID(endpoint_id))
    return json_answer(endpoint_representation(endpoint))


def update_webhook_endpoint(endpoint_id: str, body: dict[str, Any]) -> tuple:
    """PATCH /api/v1/webhook-endpoints/{endpoint_id} — events, enabled, description."""
    endpoint = webhooks.update_endpoint(
        uow=unit_of_work(), clock=clock(), owner_id=principal().id, endpoint_id=uuid.UUID(endpoint_id), changes=body
    )
    return json_answer(endpoint_representation(endpoint))


def delete_webhook_endpoint(endpoint_id: str) -> tuple:
    """DELETE /api/v1/webhook-endpoints/{endpoint_id} — 204."""
    webhooks.delete_endpoint(uow=unit_of_work(), owner_id=principal().id, endpoint_id=uuid.UUID(endpoint_id))
    return no_content()


def rotate_webhook_secret(endpoint_id: str) -> tuple:
    """POST /api/v1/webhook-endpoints/{endpoint_id}/rotate-secret — the new secret, once."""
    rotated = webhooks.rotate_secret(
        uow=unit_of_work(),
        clock=clock(),
        config=webhook_config(),
        owner_id=principal().id,
        endpoint_id=uuid.UUID(endpoint_id),
    )
    return json_answer(_with_secret(rotated), 200, {"Cache-Control": "no-store"})


def list_webhook_deliveries(endpoint_id: str, limit: int = 20, cursor: str | None = None) -> tuple:
    """GET /api/v1/webhook-endpoints/{endpoint_id}/deliveries — newest first."""
    result = webhooks.list_deliveries(
        uow=unit_of_work(), owner_id=principal().id, endpoint_id=uuid.UUID(endpoint_id), limit=limit, cursor=cursor
    )
    return json_answer(
        {"items": [delivery_representation(item) for item in result.items], "next_cursor": result.next_cursor}
    )


def redeliver_webhook(endpoint_id: str, delivery_id: str) -> tuple:
    """POST …/deliveries/{delivery_id}/redeliver — 202 with the delivering job and its Location."""
    job = webhooks.redeliver(
        uow=unit_of_work(),
        clock=clock(),
        engine=job_engine(),
        owner_id=principal().id,
        endpoint_id=uuid.UUID(endpoint_id),
        delivery_id=uuid.UUID(delivery_id),
    )
    return json_answer(job_representation(job), 202, {"Location": f"/api/v1/jobs/{job.id}"})
