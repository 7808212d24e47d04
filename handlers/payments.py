"""Operations of the `payments` tag (issue 17): the caller's payment methods, and the inbound
webhooks of the payment providers.

The webhook operation reads the body as raw bytes: its contract body is marked ``x-raw-body``,
which the request validator honours by passing the bytes through unparsed and unvalidated
(`server.integration.validation`), and this handler takes no `body` argument, so connexion never
parses it either. The signature over those bytes is checked first (`services.provider_events`)."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from handlers.responses import json_answer, no_content, timestamp
from server.integration.context import (
    clock,
    header,
    payment_provider,
    principal,
    provider_event_config,
    raw_body,
    request_meta,
    unit_of_work,
)
from server.integration.idempotency import idempotent
from services import payment_methods, provider_events

if TYPE_CHECKING:
    from persistence.billing.models import PaymentMethod


def payment_method_representation(method: PaymentMethod) -> dict[str, Any]:
    """The `PaymentMethod` schema."""
    return {
        "id": str(method.id),
        "brand": method.brand,
        "last4": method.last4,
        "exp_month": method.exp_month,
        "exp_year": method.exp_year,
        "is_default": method.is_default,
        "created_at": timestamp(method.created_at),
    }


def _export_methods(user_id: uuid.UUID) -> list[dict[str, Any]]:
    return [
        {**payment_method_representation(method), "detached_at": timestamp(method.detached_at)}
        for method in payment_methods.exported_methods(uow=unit_of_work(), owner_id=user_id)
    ]


EXPORT_SECTIONS = {"payment_methods": _export_methods}
"""The caller's payment methods, detached ones included, in their data export."""


@idempotent
def attach_payment_method(body: dict[str, Any]) -> tuple:
    """POST /api/v1/billing/payment-methods — 201 with the method."""
    method = payment_methods.attach(
        uow=unit_of_work(),
        clock=clock(),
        provider=payment_provider(),
        owner=principal(),
        token=body["token"],
        meta=request_meta(),
    )
    return json_answer(
        payment_method_representation(method), 201, {"Location": f"/api/v1/billing/payment-methods/{method.id}"}
    )


def list_payment_methods(limit: int = 20, cursor: str | None = None) -> tuple:
    """GET /api/v1/billing/payment-methods — the caller's attached methods, newest first."""
    result = payment_methods.list_methods(uow=unit_of_work(), owner_id=principal().id, limit=limit, cursor=cursor)
    return json_answer(
        {"items": [payment_method_representation(method) for method in result.items], "next_cursor": result.next_cursor}
    )


def make_default_payment_method(payment_method_id: str) -> tuple:
    """POST /api/v1/billing/payment-methods/{payment_method_id}/default — 200 with the method."""
    method = payment_methods.make_default(
        uow=unit_of_work(),
        clock=clock(),
        owner=principal(),
        method_id=uuid.UUID(payment_method_id),
        meta=request_meta(),
    )
    return json_answer(payment_method_representation(method))


def delete_payment_method(payment_method_id: str) -> tuple:
    """DELETE /api/v1/billing/payment-methods/{payment_method_id} — 204."""
    payment_methods.remove(
        uow=unit_of_work(),
        clock=clock(),
        provider=payment_provider(),
        owner=principal(),
        method_id=uuid.UUID(payment_method_id),
        meta=request_meta(),
    )
    return no_content()


def receive_provider_webhook(provider: str) -> tuple:
    """POST /api/v1/billing/webhooks/{provider} — 200 once the event is stored (or was before)."""
    received = provider_events.receive_event(
        uow=unit_of_work(),
        clock=clock(),
        config=provider_event_config(),
        provider=provider,
        payload=raw_body(),
        signature_header=header("Stripe-Signature"),
    )
    return json_answer(
        {
            "id": received.event_id,
            "type": received.type,
            "duplicate": received.duplicate,
            "outcome": received.outcome,
        }
    )
