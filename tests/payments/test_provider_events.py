"""Inbound provider events (services/provider_events.py, `POST /api/v1/billing/webhooks/{provider}`):
signatures checked on the raw bytes before anything is parsed (forged, stale, tampered: 400 and
nothing stored), each event id applied once (redeliveries, and two deliveries at once with real
threads), the dispatch to billing's invoices (tested against a stub of `services.invoices`:
billing-core writes the real one in parallel), and the fake provider's events reaching the same
processing through the job queue."""

from __future__ import annotations

import json
import sys
import threading
import time
import types
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from persistence.billing.models import ProviderEvent
from persistence.jobs.models import Job
from services.clock import FrozenClock
from services.errors import InvalidInput
from services.provider_events import (
    FAKE_EVENT_KIND,
    InvalidSignature,
    ProviderEventConfig,
    apply_event,
    receive_event,
)
from services.stripe_signatures import sign
from tests.helpers import run_job

SECRETS = ("whsec_test_new", "whsec_test_old")
CONFIG = ProviderEventConfig(secrets={"stripe": SECRETS, "fake": ("whsec_fake_test",)})
WEBHOOK = "/api/v1/billing/webhooks/stripe"
INVALID_SIGNATURE = "/problems/invalid-signature"


class StubInvoices:
    """Stands in for billing-core's `services.invoices`: records the calls and answers
    `changes` (True: the transition applied; False: stale)."""

    def __init__(self, changes: bool = True, delay: float = 0.0) -> None:
        self.changes = changes
        self.delay = delay
        self.calls: list[tuple[str, dict]] = []
        self.lock = threading.Lock()

    def module(self) -> types.ModuleType:
        module = types.ModuleType("services.invoices")
        module.mark_invoice_paid = lambda uow, **kwargs: self._call("paid", kwargs)  # type: ignore[attr-defined]
        module.record_payment_failure = lambda uow, **kwargs: self._call("failed", kwargs)  # type: ignore[attr-defined]
        return module

    def _call(self, name: str, arguments: dict) -> bool:
        time.sleep(self.delay)
        with self.lock:
            self.calls.append((name, {key: value for key, value in arguments.items() if key != "clock"}))
        return self.changes


@pytest.fixture
def invoices(monkeypatch) -> StubInvoices:
    stub = StubInvoices()
    monkeypatch.setitem(sys.modules, "services.invoices", stub.module())
    return stub


@pytest.fixture
def webhook_secrets(app, monkeypatch) -> None:
    """The session app accepts SECRETS for stripe (as STRIPE_WEBHOOK_SECRET=new,old would)."""
    monkeypatch.setattr(app.app.extensions["charter"], "provider_events", CONFIG)


def event(
    type_: str = "payment_intent.succeeded", *, invoice_id: uuid.UUID | None = None, code: str | None = None
) -> dict:
    intent = {
        "id": "pi_" + uuid.uuid4().hex[:24],
        "object": "payment_intent",
        "amount": 2900,
        "currency": "usd",
        "status": "succeeded",
        "metadata": {"invoice_id": str(invoice_id or uuid.uuid4())},
        "last_payment_error": {"code": code, "message": "Your card was declined."} if code else None,
    }
    return {
        "id": "evt_" + uuid.uuid4().hex[:24],
        "object": "event",
        "type": type_,
        "created": int(time.time()),
        "data": {"object": intent},
    }


def signed(body: dict | bytes, *, secret: str = SECRETS[0], at: int | None = None) -> tuple[bytes, str]:
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    return payload, sign(payload, secrets=[secret], timestamp=at if at is not None else int(time.time()))


def stored_events(new_uow, event_id: str | None = None) -> int:
    with new_uow() as uow:
        statement = select(func.count()).select_from(ProviderEvent)
        if event_id is not None:
            statement = statement.where(ProviderEvent.event_id == event_id)
        return int(uow.session.scalar(statement) or 0)


def post(client, payload: bytes, header: str | None, provider: str = "stripe"):
    headers = {"Content-Type": "application/json; charset=utf-8"}  # as Stripe sends it
    if header is not None:
        headers["Stripe-Signature"] = header
    return client.post(f"/api/v1/billing/webhooks/{provider}", content=payload, headers=headers)


# --- the endpoint -------------------------------------------------------------------------------


def test_a_signed_event_is_applied_once_and_a_redelivery_changes_nothing(client, new_uow, invoices, webhook_secrets):
    invoice_id = uuid.uuid4()
    body = event(invoice_id=invoice_id)
    payload, header = signed(body)
    first = post(client, payload, header)
    assert first.status_code == 200, first.text
    assert first.json() == {
        "id": body["id"],
        "type": "payment_intent.succeeded",
        "duplicate": False,
        "outcome": "applied",
    }
    payment_id = body["data"]["object"]["id"]
    assert invoices.calls == [("paid", {"invoice_id": invoice_id, "payment_id": payment_id})]

    again = post(client, *signed(body, secret=SECRETS[1]))  # redelivered, signed with the other secret
    assert again.status_code == 200
    assert again.json() == {
        "id": body["id"],
        "type": "payment_intent.succeeded",
        "duplicate": True,
        "outcome": "applied",
    }
    assert len(invoices.calls) == 1
    with new_uow() as uow:
        stored = uow.provider_events.get(provider="stripe", event_id=body["id"])
        assert stored is not None and stored.outcome == "applied" and stored.processed_at is not None
        assert stored.object_id == payment_id and stored.type == "payment_intent.succeeded"


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda payload, header: (payload, None), id="no-signature"),
        pytest.param(lambda payload, header: (payload, "t=1,v1=abc"), id="malformed"),
        pytest.param(lambda payload, header: signed(payload, secret="whsec_attacker"), id="forged"),
        pytest.param(lambda payload, header: signed(payload, at=int(time.time()) - 301), id="stale"),
        pytest.param(lambda payload, header: (payload.replace(b"2900", b"9999"), header), id="tampered"),
        pytest.param(lambda payload, header: (b"\xff\xfe not json", header), id="not-utf8"),
    ],
)
def test_bad_signatures_are_400_and_nothing_is_stored(client, new_uow, invoices, webhook_secrets, forge):
    body = event()
    payload, header = forge(*signed(body))
    answer = post(client, payload, header)
    assert answer.status_code == 400, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert answer.json()["type"] in (INVALID_SIGNATURE, "/problems/validation-error")
    if header is not None:
        assert answer.json()["type"] == INVALID_SIGNATURE
    assert stored_events(new_uow, body["id"]) == 0
    assert invoices.calls == []


def test_a_provider_without_secrets_refuses_every_delivery(client, new_uow, app, monkeypatch, invoices):
    monkeypatch.setattr(app.app.extensions["charter"], "provider_events", ProviderEventConfig(secrets={"fake": ("x",)}))
    body = event()
    answer = post(client, *signed(body))
    assert answer.status_code == 400 and answer.json()["type"] == INVALID_SIGNATURE
    assert stored_events(new_uow, body["id"]) == 0


def test_a_genuine_signature_over_something_that_is_no_event_is_400(client, new_uow, webhook_secrets, invoices):
    for payload in (b"[1, 2]", b"not json", json.dumps({"id": "evt_x", "type": "x"}).encode()):
        answer = post(client, *signed(payload))
        assert answer.status_code == 400 and answer.json()["type"] == "/problems/validation-error", answer.text
    assert stored_events(new_uow, "evt_x") == 0


def test_unknown_event_types_are_stored_and_acknowledged(client, new_uow, webhook_secrets, invoices):
    body = event("customer.updated")
    answer = post(client, *signed(body))
    assert answer.status_code == 200
    assert answer.json()["outcome"] == "ignored" and answer.json()["duplicate"] is False
    assert stored_events(new_uow, body["id"]) == 1 and invoices.calls == []


# --- the service: dispatch, order, concurrency ------------------------------------------------


def test_the_dispatch_applies_successes_and_failures_and_reports_stale_ones(new_uow, clock, invoices):
    invoice_id = uuid.uuid4()
    with new_uow() as uow:
        succeeded = event(invoice_id=invoice_id)["data"]["object"]
        failed = event("payment_intent.payment_failed", invoice_id=invoice_id, code="card_declined")["data"]["object"]
        assert apply_event(uow=uow, clock=clock, event_type="payment_intent.succeeded", payment=succeeded) == "applied"
        assert (
            apply_event(uow=uow, clock=clock, event_type="payment_intent.payment_failed", payment=failed) == "applied"
        )
        invoices.changes = False  # the invoice's state has moved past the event: out of order
        assert apply_event(uow=uow, clock=clock, event_type="payment_intent.payment_failed", payment=failed) == "stale"
        assert apply_event(uow=uow, clock=clock, event_type="charge.refunded", payment=succeeded) == "ignored"
        no_invoice = {**succeeded, "metadata": {}}  # found by payment id (billing-core's by_payment), else ignored
        assert apply_event(uow=uow, clock=clock, event_type="payment_intent.succeeded", payment=no_invoice) == "ignored"
    assert invoices.calls[0] == ("paid", {"invoice_id": invoice_id, "payment_id": succeeded["id"]})
    assert invoices.calls[1] == (
        "failed",
        {
            "invoice_id": invoice_id,
            "payment_id": failed["id"],
            "failure_code": "card_declined",
            "failure_message": "Your card was declined.",
        },
    )
    assert len(invoices.calls) == 3


def test_two_deliveries_of_one_event_at_once_apply_it_once(new_uow, monkeypatch):
    stub = StubInvoices(delay=0.3)  # the first is still applying it when the second arrives
    monkeypatch.setitem(sys.modules, "services.invoices", stub.module())
    body = event()
    payload, header = signed(body)
    barrier = threading.Barrier(2)
    results: list = []
    errors: list[BaseException] = []

    def deliver() -> None:
        try:
            barrier.wait(timeout=10)
            with new_uow() as uow:
                received = receive_event(
                    uow=uow, clock=clock, config=CONFIG, provider="stripe", payload=payload, signature_header=header
                )
            results.append(received)
        except BaseException as error:
            errors.append(error)

    clock = FrozenClock(datetime.fromtimestamp(body["created"], UTC))
    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert sorted(received.duplicate for received in results) == [False, True]
    assert len(stub.calls) == 1
    assert stored_events(new_uow, body["id"]) == 1


def test_the_service_refuses_before_parsing(new_uow, clock, invoices):
    with new_uow() as uow, pytest.raises(InvalidSignature):
        receive_event(uow=uow, clock=clock, config=CONFIG, provider="stripe", payload=b"{", signature_header=None)
    payload, header = signed(b"{", at=int(clock.now().timestamp()))
    with new_uow() as uow, pytest.raises(InvalidInput):
        receive_event(uow=uow, clock=clock, config=CONFIG, provider="stripe", payload=payload, signature_header=header)


# --- the fake provider's events, through the job queue -----------------------------------------


def test_the_fake_providers_events_reach_the_processing_through_the_job_queue(app, new_uow, owner, invoices):
    context = app.app.extensions["charter"]
    provider = context.payment_provider
    customer = provider.create_customer(owner_id=owner.id, email=owner.email)
    card = provider.attach_payment_method(customer_id=customer, token="tok_visa")
    invoice_id = uuid.uuid4()
    outcome = provider.charge(
        customer_id=customer,
        provider_payment_method_id=card.provider_payment_method_id,
        amount=2900,
        currency="USD",
        idempotency_key=f"test-{uuid.uuid4()}",
        description="Pro",
        metadata={"invoice_id": str(invoice_id)},
    )
    assert provider._emit.drain(timeout=10)  # the relay queued the event's job
    emitted = provider.events[-1]
    with new_uow() as uow:
        jobs = [job for job in uow.session.scalars(select(Job).where(Job.kind == FAKE_EVENT_KIND))]
        (job,) = [job for job in jobs if job.payload["event"]["id"] == emitted["id"]]
    report = run_job(app, str(job.id))
    assert str(report.outcome) == "succeeded", report.error
    assert invoices.calls == [("paid", {"invoice_id": invoice_id, "payment_id": outcome.payment_id})]
    with new_uow() as uow:
        stored = uow.provider_events.get(provider="fake", event_id=emitted["id"])
        assert stored is not None and stored.outcome == "applied"
    again = run_job(app, str(job.id))  # a job already done is not run again; a redelivery would be a duplicate
    assert len(invoices.calls) == 1, again


def test_the_fake_providers_endpoint_takes_deliveries_signed_with_its_secret(app, client, invoices):
    secret = app.app.extensions["charter"].provider_events.secrets["fake"][0]
    body = event("payment_intent.payment_failed", code="card_declined")
    accepted = post(client, *signed(body, secret=secret), provider="fake")
    assert accepted.status_code == 200 and accepted.json()["outcome"] == "applied", accepted.text
    refused = post(client, *signed(event(), secret=SECRETS[0]), provider="fake")  # stripe's secret is not the fake's
    assert refused.status_code == 400 and refused.json()["type"] == INVALID_SIGNATURE
