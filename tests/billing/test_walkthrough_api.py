"""A frozen clock walking an account through periods over HTTP (issue 17): a trial, its end
charged by the `billing.cycle` job, an upgrade at the middle of the period (proration as
services/proration.py computes it, charged at once), a downgrade at the period's end, and the
invoices as the API lists them.

The app's clock moves forward by weeks; access tokens are still issued at the system's time (PyJWT
checks `iat` and `exp` against it), and the session is refreshed after each move (it lives 30 days
from its last refresh, by the app's clock). The exact-cent worked examples are in
test_proration.py and test_subscriptions.py."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from fractions import Fraction

from services import jobs as job_services
from services.clock import FrozenClock
from tests.billing.conftest import attach_card
from tests.helpers import bearer, instant, register_and_login, run_job


def run_cycle_job(app, new_uow) -> dict:
    context = app.app.extensions["charter"]
    with new_uow() as uow:
        job = job_services.enqueue(
            uow=uow, clock=context.clock, engine=context.jobs, kind="billing.cycle", owner_id=None
        )
    report = run_job(app, str(job.id))
    assert str(report.outcome) == "succeeded", report
    return report


def test_trial_renewal_upgrade_and_downgrade_through_periods(client, app, new_uow, monkeypatch):
    state = app.app.extensions["charter"]
    tokens = state.auth.tokens
    issue = tokens.issue
    monkeypatch.setattr(tokens, "issue", lambda **claims: issue(**{**claims, "now": datetime.now(UTC)}))
    original = state.clock
    clock = state.clock = FrozenClock(datetime.now(UTC).replace(microsecond=0))
    try:
        walk(client, app, new_uow, clock)
    finally:
        state.clock = original


def walk(client, app, new_uow, clock) -> None:
    provider = app.app.extensions["charter"].payment_provider
    account = register_and_login(client)
    tokens = {"refresh": account.refresh_token, "access": account.access_token}

    def headers() -> dict[str, str]:
        return bearer(tokens["access"])

    def move_to(at: datetime) -> None:  # forward, then refresh: the session lives 30 days from its last use
        clock.at = at
        answer = client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh"]})
        assert answer.status_code == 200, answer.text
        tokens["refresh"], tokens["access"] = answer.json()["refresh_token"], answer.json()["access_token"]

    trial = client.post("/api/v1/billing/subscription", json={"plan_code": "pro_monthly"}, headers=headers())
    assert trial.status_code == 200, trial.text
    trial_end = instant(trial.json()["subscription"]["trial_end"])
    assert trial.json()["subscription"]["status"] == "trialing"
    attach_card(new_uow, provider, uuid.UUID(account.id), clock)

    move_to(trial_end)  # the trial's end: the job charges the first period
    run_cycle_job(app, new_uow)
    read = client.get("/api/v1/billing/subscription", headers=headers())
    assert read.status_code == 200, read.text
    sub = read.json()
    start, end = instant(sub["current_period_start"]), instant(sub["current_period_end"])
    assert (sub["status"], start) == ("active", trial_end)

    middle = start + (end - start) / 2
    move_to(middle)
    upgraded = client.post("/api/v1/billing/subscription", json={"plan_code": "business_monthly"}, headers=headers())
    assert upgraded.status_code == 200, upgraded.text
    invoice = upgraded.json()["invoice"]
    unused = Fraction(int((end - middle).total_seconds()), int((end - start).total_seconds()))
    credit, net = round(2900 * unused), round(7000 * unused)
    assert [(line["kind"], line["amount"]) for line in invoice["lines"]] == [
        ("proration_credit", -credit),
        ("proration_charge", net + credit),
    ]
    assert (invoice["total"], invoice["amount_paid"], invoice["status"]) == (net, net, "paid")

    downgraded = client.post("/api/v1/billing/subscription", json={"plan_code": "pro_monthly"}, headers=headers())
    assert downgraded.json()["subscription"]["pending_plan_code"] == "pro_monthly"
    assert "invoice" not in downgraded.json()
    move_to(end)
    run_cycle_job(app, new_uow)
    run_cycle_job(app, new_uow)  # a rerun invoices nothing more

    sub = client.get("/api/v1/billing/subscription", headers=headers()).json()
    assert (sub["plan_code"], sub["pending_plan_code"], instant(sub["current_period_start"])) == (
        "pro_monthly",
        None,
        end,
    )
    invoices = client.get("/api/v1/billing/invoices", headers=headers()).json()["items"]
    assert [(item["billing_reason"], item["total"], item["status"]) for item in invoices] == [
        ("subscription_cycle", 2900, "paid"),
        ("subscription_update", net, "paid"),
        ("subscription_cycle", 2900, "paid"),
    ]
    assert [item["number"][-4:] for item in invoices] == ["0003", "0002", "0001"]
