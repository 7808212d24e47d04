"""End to end with billing-core's invoices (branch billing-core, merged by the lead): a signed
`payment_intent.succeeded` marks an open invoice paid; a `payment_intent.payment_failed` that
arrives after it (out of order) is stale and changes nothing; a redelivery is a duplicate.

SKIPPED until `services.invoices` has `mark_invoice_paid` and `record_payment_failure` (written in
parallel on billing-core); the dispatch itself is tested against a stub in test_provider_events.py."""

from __future__ import annotations

import importlib.util
import json
import time
import uuid
from datetime import timedelta

import pytest

from persistence.billing.models import Invoice
from services.stripe_signatures import sign


def _billing_core_merged() -> bool:
    if importlib.util.find_spec("services.invoices") is None:
        return False
    module = importlib.import_module("services.invoices")
    return hasattr(module, "mark_invoice_paid") and hasattr(module, "record_payment_failure")


pytestmark = pytest.mark.skipif(
    not _billing_core_merged(),
    reason="needs billing-core's services.invoices (mark_invoice_paid, record_payment_failure)",
)

SECRET = "whsec_end_to_end"


@pytest.fixture
def stripe_secret(app, monkeypatch) -> None:
    from services.provider_events import ProviderEventConfig

    monkeypatch.setattr(
        app.app.extensions["charter"], "provider_events", ProviderEventConfig(secrets={"stripe": (SECRET,)})
    )


def open_invoice(new_uow, owner, clock) -> uuid.UUID:
    now = clock.now()
    invoice = Invoice(
        id=uuid.uuid4(),
        owner_id=owner.id,
        subscription_id=None,
        number=f"TEST-{uuid.uuid4().hex[:10]}",
        status="open",
        billing_reason="subscription_cycle",
        currency="USD",
        subtotal=2900,
        total=2900,
        amount_due=2900,
        amount_paid=0,
        period_start=now,
        period_end=now + timedelta(days=30),
        created_at=now,
        finalized_at=now,
        attempt_count=1,
    )
    with new_uow() as uow:
        uow.invoices.add(invoice, [])
    return invoice.id


def deliver(client, type_: str, invoice_id: uuid.UUID, payment_id: str, code: str | None = None):
    body = {
        "id": "evt_" + uuid.uuid4().hex[:24],
        "object": "event",
        "type": type_,
        "created": int(time.time()),
        "data": {
            "object": {
                "id": payment_id,
                "object": "payment_intent",
                "metadata": {"invoice_id": str(invoice_id)},
                "last_payment_error": {"code": code, "message": "Declined."} if code else None,
            }
        },
    }
    payload = json.dumps(body).encode()
    header = sign(payload, secrets=[SECRET], timestamp=int(time.time()))
    headers = {"Content-Type": "application/json", "Stripe-Signature": header}
    return client.post("/api/v1/billing/webhooks/stripe", content=payload, headers=headers), payload, headers


def test_success_then_a_late_failure_then_a_redelivery(client, new_uow, owner, clock, stripe_secret):
    invoice_id = open_invoice(new_uow, owner, clock)
    paid, payload, headers = deliver(client, "payment_intent.succeeded", invoice_id, "pi_e2e_1")
    assert paid.status_code == 200 and paid.json()["outcome"] == "applied", paid.text
    late, _, _ = deliver(client, "payment_intent.payment_failed", invoice_id, "pi_e2e_0", code="card_declined")
    assert late.status_code == 200 and late.json()["outcome"] == "stale", late.text
    again = client.post("/api/v1/billing/webhooks/stripe", content=payload, headers=headers)
    assert again.json()["duplicate"] is True
    with new_uow() as uow:
        invoice = uow.invoices.get(owner_id=owner.id, invoice_id=invoice_id)
        assert invoice is not None and invoice.status == "paid" and invoice.provider_payment_id == "pi_e2e_1"
