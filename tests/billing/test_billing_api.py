"""Billing through HTTP (issue 17), every answer checked against the contract by the `client`
fixture: the public plan list, administrators adding plans, the subscription with its ETag, a
trial, cancel and resume, a paid subscription with its invoice and an escaped receipt, a paid
plan without a card, idempotent subscribing, the summary and the export."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from services.clock import SystemClock
from tests.billing.conftest import attach_card
from tests.helpers import assert_problem

QUOTAS = {"chatbots": 3, "messages": 300, "crawled_pages": 300, "documents": 30, "storage_bytes": 1000, "api_keys": 3}


@pytest.fixture
def app_provider(app):
    return app.app.extensions["charter"].payment_provider


def subscribe(client, account, plan_code, **headers):
    return client.post(
        "/api/v1/billing/subscription", json={"plan_code": plan_code}, headers={**account.headers, **headers}
    )


def add_plan(client, admin, **fields):
    body = {
        "code": f"t_{uuid.uuid4().hex[:12]}",
        "name": "Team",
        "interval": "month",
        "price": 4900,
        "currency": "USD",
        "tier": 1,
        "quotas": QUOTAS,
        **fields,
    }
    return client.post("/api/v1/plans", json=body, headers=admin.headers)


def test_the_plans_are_public_with_every_meters_quota(client):
    response = client.get("/api/v1/plans")
    assert response.status_code == 200
    plans = {plan["code"]: plan for plan in response.json()["items"]}
    assert {"free", "pro_monthly", "pro_yearly", "business_monthly", "business_yearly"} <= set(plans)
    assert plans["pro_monthly"]["price"] == 2900 and plans["pro_monthly"]["currency"] == "USD"
    assert set(plans["free"]["quotas"]) == set(QUOTAS)


def test_administrators_add_plans_validated(client, admin, account, retire_plans):
    created = add_plan(client, admin)
    assert created.status_code == 201, created.text
    code = created.json()["code"]
    retire_plans.append(code)
    assert code in {plan["code"] for plan in client.get("/api/v1/plans").json()["items"]}
    assert_problem(add_plan(client, admin, code=code), 409)
    assert_problem(add_plan(client, admin, currency="usd"), 400, "/problems/validation-error")
    assert_problem(add_plan(client, admin, price=-1), 400)
    assert_problem(add_plan(client, admin, interval="week"), 400)
    assert_problem(add_plan(client, admin, quotas={**QUOTAS, "minutes": 3}), 400)
    assert_problem(add_plan(client, admin, code="Bad Code"), 400)
    assert_problem(add_plan(client, account), 403, "/problems/forbidden")


def test_every_account_starts_free_with_an_etag(client, account):
    response = client.get("/api/v1/billing/subscription", headers=account.headers)
    assert response.status_code == 200
    body = response.json()
    assert (body["plan_code"], body["status"], body["cancel_at_period_end"]) == ("free", "active", False)
    assert response.headers["etag"] == f'"{body["version"]}"'
    again = client.get(
        "/api/v1/billing/subscription", headers={**account.headers, "If-None-Match": response.headers["etag"]}
    )
    assert again.status_code == 304


def test_trial_then_cancel_resume_and_cancel_now(client, account):
    trial = subscribe(client, account, "pro_monthly")
    assert trial.status_code == 200, trial.text
    body = trial.json()
    assert "invoice" not in body and body["subscription"]["status"] == "trialing"
    assert body["subscription"]["trial_end"] == body["subscription"]["current_period_end"]

    canceled = client.post("/api/v1/billing/subscription/cancel", json={}, headers=account.headers)
    assert canceled.status_code == 200 and canceled.json()["cancel_at_period_end"] is True
    resumed = client.post("/api/v1/billing/subscription/resume", headers=account.headers)
    assert resumed.status_code == 200 and resumed.json()["cancel_at_period_end"] is False
    assert_problem(client.post("/api/v1/billing/subscription/resume", headers=account.headers), 409)

    now = client.post("/api/v1/billing/subscription/cancel", json={"at_period_end": False}, headers=account.headers)
    assert now.status_code == 200 and now.json()["plan_code"] == "free"
    assert_problem(client.post("/api/v1/billing/subscription/cancel", headers=account.headers), 409)
    # the trial was used: a paid plan now needs a card
    problem = assert_problem(subscribe(client, account, "pro_monthly"), 402, "/problems/payment-method-required")
    assert "payment method" in problem["detail"]
    assert client.get("/api/v1/billing/subscription", headers=account.headers).json()["plan_code"] == "free"


def test_a_paid_subscription_its_invoice_and_an_escaped_receipt(
    client, admin, account, other_account, new_uow, app_provider, retire_plans
):
    plan = add_plan(client, admin, name="<script>alert(1)</script> & Co").json()
    retire_plans.append(plan["code"])
    subscribe(client, account, "pro_monthly")  # uses the trial
    client.post("/api/v1/billing/subscription/cancel", json={"at_period_end": False}, headers=account.headers)
    owner_id = uuid.UUID(account.id)
    attach_card(new_uow, app_provider, owner_id, SystemClock())

    response = subscribe(client, account, plan["code"], **{"Idempotency-Key": "sub-1"})
    assert response.status_code == 200, response.text
    body = response.json()
    invoice = body["invoice"]
    assert body["subscription"]["plan_code"] == plan["code"] and body["subscription"]["status"] == "active"
    assert (invoice["status"], invoice["total"], invoice["amount_paid"], invoice["amount_due"]) == (
        "paid",
        4900,
        4900,
        0,
    )
    assert invoice["billing_reason"] == "subscription_create" and invoice["lines"][0]["kind"] == "subscription"
    replay = subscribe(client, account, plan["code"], **{"Idempotency-Key": "sub-1"})
    assert replay.headers.get("idempotent-replayed") == "true" and replay.json() == body

    listed = client.get("/api/v1/billing/invoices", headers=account.headers)
    assert [item["id"] for item in listed.json()["items"]] == [invoice["id"]]
    read = client.get(f"/api/v1/billing/invoices/{invoice['id']}", headers=account.headers)
    assert read.status_code == 200 and read.json() == invoice
    assert_problem(client.get(f"/api/v1/billing/invoices/{invoice['id']}", headers=other_account.headers), 404)

    receipt = client.get(f"/api/v1/billing/invoices/{invoice['id']}/receipt", headers=account.headers)
    assert receipt.status_code == 200 and receipt.headers["content-type"].startswith("text/html")
    assert "<script>alert(1)</script>" not in receipt.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; Co" in receipt.text and "49.00" in receipt.text

    export = client.get("/api/v1/users/me/export", headers=account.headers).json()
    assert export["subscription"][0]["plan_code"] == plan["code"]
    assert [item["id"] for item in export["invoices"]] == [invoice["id"]]


def test_an_unknown_plan_is_a_validation_problem(client, account):
    assert_problem(subscribe(client, account, "platinum"), 400, "/problems/validation-error")


def test_the_summary_is_for_administrators(client, admin, account):
    now = datetime.now(UTC)
    params = {"since": (now - timedelta(days=30)).isoformat(), "until": (now + timedelta(days=1)).isoformat()}
    response = client.get("/api/v1/admin/billing/summary", params=params, headers=admin.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert {item["plan_code"] for item in body["active_subscriptions"]} >= {"free"} or body[
        "active_subscriptions"
    ] == []
    assert body["churn_rate"] >= 0
    assert client.get("/api/v1/admin/billing/summary", headers=admin.headers).status_code == 200
    backwards = {"since": params["until"], "until": params["since"]}
    assert_problem(client.get("/api/v1/admin/billing/summary", params=backwards, headers=admin.headers), 400)
    assert_problem(client.get("/api/v1/admin/billing/summary", headers=account.headers), 403)


def test_dunning_notifications_and_events_are_listed_and_exported_per_the_contract(
    client, account, owner, new_uow, provider, april
):
    from services import subscriptions
    from services.audit import RequestMeta
    from services.billing_state import BillingConfig

    config = BillingConfig(provider=provider, trial_days=0, retry_days=(1,))
    card = attach_card(new_uow, provider, owner.id, april)
    with new_uow() as uow:
        subscriptions.change_plan(
            uow=uow, config=config, clock=april, owner_id=owner.id, plan_code="pro_monthly", meta=RequestMeta()
        )
    provider.cards[card] = "declined"
    april.advance(days=30)
    with new_uow() as uow:
        subscriptions.roll_subscription(uow=uow, config=config, clock=april, owner_id=owner.id)
    april.advance(days=1)
    from services.billing_cycle import run_cycle

    run_cycle(unit_of_work=new_uow, config=config, clock=april)  # the last retry fails: back to free

    listed = client.get("/api/v1/users/me/notifications", headers=account.headers)
    assert listed.status_code == 200, listed.text
    assert {item["type"] for item in listed.json()["items"]} == {
        "billing_payment_failed",
        "billing_subscription_canceled",
    }
    export = client.get("/api/v1/users/me/export", headers=account.headers)
    assert export.status_code == 200, export.text
    statuses = [item["status"] for item in export.json()["invoices"]]
    assert statuses == ["paid", "uncollectible"]
    assert export.json()["subscription"][0]["plan_code"] == "free"
    audit = client.get("/api/v1/users/me/audit-events", headers=account.headers)
    assert audit.status_code == 200, audit.text
