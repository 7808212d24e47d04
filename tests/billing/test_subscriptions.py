"""Subscriptions through the services with a frozen clock walking through periods (issue 17):
subscribe, upgrade mid-period (proration exact to the cent), downgrade and cancel at the period's
end, resume, monthly -> yearly, the period roll (idempotent), dunning to recovery and to
cancellation, the trial, the provider-event entry points, and concurrent changes serialised."""

from __future__ import annotations

import threading
import uuid

import pytest
from sqlalchemy import select

from persistence.audit.models import AuditEvent
from persistence.notifications.models import Notification
from persistence.unit_of_work import UnitOfWork
from services import invoices as invoice_services
from services import subscriptions
from services.audit import RequestMeta
from services.billing_cycle import run_cycle
from services.billing_state import BillingConfig, PaymentDeclined, PaymentMethodRequired, SubscriptionPastDue
from services.clock import FrozenClock
from services.errors import Conflict, InvalidInput
from tests.billing.conftest import at, attach_card, invoices_of

META = RequestMeta()


def change(new_uow, config, clock, owner_id, plan_code):
    with new_uow() as uow:
        return subscriptions.change_plan(
            uow=uow, config=config, clock=clock, owner_id=owner_id, plan_code=plan_code, meta=META
        )


def roll(new_uow, config, clock, owner_id):
    with new_uow() as uow:
        return subscriptions.roll_subscription(uow=uow, config=config, clock=clock, owner_id=owner_id)


def subscription_of(new_uow, clock, owner_id):
    with new_uow() as uow:
        return subscriptions.current_subscription(uow, owner_id=owner_id, clock=clock)


def amounts(lines):
    return [(line.kind, line.amount) for line in lines]


def test_a_paid_plan_without_a_payment_method_is_refused_and_nothing_changes(new_uow, config, april, owner):
    with pytest.raises(PaymentMethodRequired):
        change(new_uow, config, april, owner.id, "pro_monthly")
    assert subscription_of(new_uow, april, owner.id).plan_code == "free"
    assert invoices_of(new_uow, owner.id) == []


def test_an_unknown_plan_is_refused(new_uow, config, april, owner):
    with pytest.raises(InvalidInput):
        change(new_uow, config, april, owner.id, "platinum")


def test_subscribe_then_upgrade_at_half_of_a_30_day_period(new_uow, config, provider, april, owner):
    attach_card(new_uow, provider, owner.id, april)
    created = change(new_uow, config, april, owner.id, "pro_monthly")
    assert created.invoice is not None and created.invoice.status == "paid" and created.invoice.total == 2900
    sub = subscription_of(new_uow, april, owner.id)
    assert (sub.plan_code, sub.status) == ("pro_monthly", "active")
    assert (sub.current_period_start, sub.current_period_end) == (at("2027-04-01T00:00:00"), at("2027-05-01T00:00:00"))

    april.advance(days=15)
    upgraded = change(new_uow, config, april, owner.id, "business_monthly")

    invoice = upgraded.invoice
    assert invoice is not None and invoice.billing_reason == "subscription_update"
    (_, _), (stored, lines) = invoices_of(new_uow, owner.id)
    assert amounts(lines) == [("proration_credit", -1450), ("proration_charge", 4950)]
    assert (stored.subtotal, stored.total, stored.amount_paid, stored.amount_due, stored.status) == (
        3500,
        3500,
        3500,
        0,
        "paid",
    )
    assert stored.number.endswith("-0002") and stored.period_end == at("2027-05-01T00:00:00")
    assert [amount for amount, _currency, _outcome in provider.charges.values()] == [2900, 3500]
    sub = subscription_of(new_uow, april, owner.id)
    assert sub.plan_code == "business_monthly" and sub.current_period_end == at("2027-05-01T00:00:00")


def test_an_upgrade_on_a_third_of_a_31_day_month_is_exact_to_the_cent(new_uow, config, provider, owner):
    clock = FrozenClock(at("2027-01-01T00:00:00"))
    attach_card(new_uow, provider, owner.id, clock)
    change(new_uow, config, clock, owner.id, "pro_monthly")
    clock.advance(seconds=31 * 86400 // 3)
    invoice = change(new_uow, config, clock, owner.id, "business_monthly").invoice
    lines = invoices_of(new_uow, owner.id)[-1][1]
    assert amounts(lines) == [("proration_credit", -1933), ("proration_charge", 6600)]
    assert invoice is not None and invoice.total == 4667


def test_a_declined_upgrade_changes_no_plan_and_a_later_try_is_charged_anew(new_uow, config, provider, april, owner):
    card = attach_card(new_uow, provider, owner.id, april)
    change(new_uow, config, april, owner.id, "pro_monthly")
    provider.cards[card] = "declined"
    april.advance(days=3)
    with pytest.raises(PaymentDeclined):
        change(new_uow, config, april, owner.id, "business_monthly")
    assert subscription_of(new_uow, april, owner.id).plan_code == "pro_monthly"
    assert [
        (i.status, i.last_payment_error[:13] if i.last_payment_error else None)
        for i, _ in invoices_of(new_uow, owner.id)
    ] == [
        ("paid", None),
        ("void", "card_declined"),
    ]
    # the card works again: the next try is a new invoice under a new key, charged
    provider.cards[card] = "succeeded"
    april.advance(minutes=1)
    result = change(new_uow, config, april, owner.id, "business_monthly")
    assert result.invoice is not None and result.invoice.status == "paid" and result.invoice.number.endswith("-0003")
    assert subscription_of(new_uow, april, owner.id).plan_code == "business_monthly"


def test_downgrade_waits_for_the_period_end_and_the_roll_invoices_the_new_plan(new_uow, config, provider, april, owner):
    attach_card(new_uow, provider, owner.id, april)
    change(new_uow, config, april, owner.id, "business_monthly")
    april.advance(days=10)
    result = change(new_uow, config, april, owner.id, "pro_monthly")
    assert result.invoice is None
    sub = subscription_of(new_uow, april, owner.id)
    assert (sub.plan_code, sub.pending_plan_code) == ("business_monthly", "pro_monthly")
    assert roll(new_uow, config, april, owner.id) == 0  # the period has not ended

    april.advance(days=20)  # 2027-05-01: the period's end
    assert roll(new_uow, config, april, owner.id) == 1
    assert roll(new_uow, config, april, owner.id) == 0  # a rerun invoices nothing

    sub = subscription_of(new_uow, april, owner.id)
    assert (sub.plan_code, sub.pending_plan_code, sub.status) == ("pro_monthly", None, "active")
    assert (sub.current_period_start, sub.current_period_end) == (at("2027-05-01T00:00:00"), at("2027-06-01T00:00:00"))
    invoice, lines = invoices_of(new_uow, owner.id)[-1]
    assert (invoice.billing_reason, invoice.total, invoice.status) == ("subscription_cycle", 2900, "paid")
    assert (lines[0].period_start, lines[0].period_end) == (at("2027-05-01T00:00:00"), at("2027-06-01T00:00:00"))


def test_cancel_at_period_end_resume_then_cancel_for_good(new_uow, config, provider, april, owner):
    attach_card(new_uow, provider, owner.id, april)
    change(new_uow, config, april, owner.id, "pro_monthly")
    with new_uow() as uow:
        sub = subscriptions.cancel(
            uow=uow, config=config, clock=april, owner_id=owner.id, at_period_end=True, meta=META
        )
        assert sub.cancel_at_period_end
    with new_uow() as uow:
        assert not subscriptions.resume(
            uow=uow, config=config, clock=april, owner_id=owner.id, meta=META
        ).cancel_at_period_end
    with new_uow() as uow, pytest.raises(Conflict):
        subscriptions.resume(uow=uow, config=config, clock=april, owner_id=owner.id, meta=META)
    with new_uow() as uow:
        subscriptions.cancel(uow=uow, config=config, clock=april, owner_id=owner.id, at_period_end=True, meta=META)
    april.advance(days=30)
    roll(new_uow, config, april, owner.id)
    sub = subscription_of(new_uow, april, owner.id)
    assert (sub.plan_code, sub.status, sub.canceled_at) == ("free", "active", at("2027-05-01T00:00:00"))
    assert len(invoices_of(new_uow, owner.id)) == 1  # nothing invoiced for the canceled period
    with new_uow() as uow, pytest.raises(Conflict):
        subscriptions.cancel(uow=uow, config=config, clock=april, owner_id=owner.id, at_period_end=True, meta=META)


def test_monthly_to_yearly_starts_a_new_cycle_now_with_a_credit(new_uow, config, provider, owner):
    clock = FrozenClock(at("2027-01-01T00:00:00"))
    attach_card(new_uow, provider, owner.id, clock)
    change(new_uow, config, clock, owner.id, "pro_monthly")
    clock.advance(days=21)  # 10 of 31 days left
    invoice = change(new_uow, config, clock, owner.id, "pro_yearly").invoice
    lines = invoices_of(new_uow, owner.id)[-1][1]
    assert amounts(lines) == [("proration_credit", -935), ("subscription", 29000)]
    assert invoice is not None and invoice.total == 28065
    sub = subscription_of(new_uow, clock, owner.id)
    assert (sub.billing_cycle_anchor, sub.current_period_end) == (at("2027-01-22T00:00:00"), at("2028-01-22T00:00:00"))

    # yearly -> monthly waits for the year's end, with no refund, and anchors there
    assert change(new_uow, config, clock, owner.id, "pro_monthly").invoice is None
    clock.advance(days=365)
    roll(new_uow, config, clock, owner.id)
    sub = subscription_of(new_uow, clock, owner.id)
    assert (sub.plan_code, sub.billing_cycle_anchor, sub.current_period_end) == (
        "pro_monthly",
        at("2028-01-22T00:00:00"),
        at("2028-02-22T00:00:00"),
    )


def test_dunning_retries_then_recovers(new_uow, config, provider, april, owner):
    card = attach_card(new_uow, provider, owner.id, april)
    change(new_uow, config, april, owner.id, "pro_monthly")
    provider.cards[card] = "declined"
    april.advance(days=30)
    roll(new_uow, config, april, owner.id)
    sub = subscription_of(new_uow, april, owner.id)
    invoice, _ = invoices_of(new_uow, owner.id)[-1]
    assert (sub.status, sub.dunning_attempts) == ("past_due", 1)
    assert invoice.status == "open" and invoice.next_payment_attempt_at == at("2027-05-02T00:00:00")
    with pytest.raises(SubscriptionPastDue):
        change(new_uow, config, april, owner.id, "business_monthly")

    provider.cards[card] = "succeeded"
    april.advance(days=1)
    with new_uow() as uow:
        assert invoice_services.retry_due_invoice(uow=uow, config=config, clock=april, invoice_id=invoice.id) == "paid"
    sub = subscription_of(new_uow, april, owner.id)
    invoice, _ = invoices_of(new_uow, owner.id)[-1]
    assert (sub.status, sub.dunning_attempts, invoice.status, invoice.attempt_count) == ("active", 0, "paid", 2)
    with new_uow() as uow:
        types = [n.type for n in uow.session.scalars(select(Notification).where(Notification.owner_id == owner.id))]
    assert "billing_payment_failed" in types and "billing_payment_recovered" in types


def test_dunning_ends_in_cancellation_after_the_last_retry(new_uow, provider, april, owner):
    config = BillingConfig(provider=provider, trial_days=0, retry_days=(1, 3, 5))
    card = attach_card(new_uow, provider, owner.id, april)
    change(new_uow, config, april, owner.id, "pro_monthly")
    provider.cards[card] = "declined"
    april.advance(days=30)  # 2027-05-01
    roll(new_uow, config, april, owner.id)
    invoice_id = invoices_of(new_uow, owner.id)[-1][0].id
    for day, expected_next in ((1, "2027-05-04"), (3, "2027-05-06")):
        april.at = at("2027-05-01T00:00:00").replace(day=1 + day)
        with new_uow() as uow:
            assert (
                invoice_services.retry_due_invoice(uow=uow, config=config, clock=april, invoice_id=invoice_id)
                == "failed"
            )
        invoice = invoices_of(new_uow, owner.id)[-1][0]
        assert invoice.next_payment_attempt_at == at(f"{expected_next}T00:00:00")
        assert subscription_of(new_uow, april, owner.id).status == "past_due"
    april.at = at("2027-05-06T00:00:00")
    with new_uow() as uow:
        assert (
            invoice_services.retry_due_invoice(uow=uow, config=config, clock=april, invoice_id=invoice_id) == "failed"
        )
    invoice = invoices_of(new_uow, owner.id)[-1][0]
    sub = subscription_of(new_uow, april, owner.id)
    assert (invoice.status, invoice.attempt_count, invoice.next_payment_attempt_at) == ("uncollectible", 4, None)
    assert (sub.plan_code, sub.status, sub.canceled_at) == ("free", "active", april.now())
    with new_uow() as uow:
        types = [n.type for n in uow.session.scalars(select(Notification).where(Notification.owner_id == owner.id))]
        audited = [e.type for e in uow.session.scalars(select(AuditEvent).where(AuditEvent.subject_id == owner.id))]
    assert "billing_subscription_canceled" in types
    assert audited.count("invoice_payment_failed") == 4 and "subscription_updated" in audited
    # nothing more is tried
    april.advance(days=30)
    with new_uow() as uow:
        assert invoice_services.retry_due_invoice(uow=uow, config=config, clock=april, invoice_id=invoice_id) is None


def test_the_trial_on_the_first_paid_plan_then_the_first_invoice_at_its_end(new_uow, provider, april, owner):
    config = BillingConfig(provider=provider, trial_days=14)
    result = change(new_uow, config, april, owner.id, "pro_monthly")  # no card needed for a trial
    sub = result.subscription
    assert result.invoice is None
    assert (sub.status, sub.trial_end, sub.current_period_end) == (
        "trialing",
        at("2027-04-15T00:00:00"),
        at("2027-04-15T00:00:00"),
    )
    attach_card(new_uow, provider, owner.id, april)
    april.advance(days=14)
    assert roll(new_uow, config, april, owner.id) == 1
    sub = subscription_of(new_uow, april, owner.id)
    invoice, _lines = invoices_of(new_uow, owner.id)[-1]
    assert (sub.status, sub.billing_cycle_anchor, sub.current_period_end) == (
        "active",
        at("2027-04-15T00:00:00"),
        at("2027-05-15T00:00:00"),
    )
    assert (invoice.status, invoice.total, invoice.billing_reason) == ("paid", 2900, "subscription_cycle")

    # cancel now; the next paid plan gets no second trial
    with new_uow() as uow:
        subscriptions.cancel(uow=uow, config=config, clock=april, owner_id=owner.id, at_period_end=False, meta=META)
    again = change(new_uow, config, april, owner.id, "pro_monthly")
    assert again.subscription.status == "active" and again.invoice is not None


def test_a_trial_without_a_card_goes_past_due_at_its_end(new_uow, provider, april, owner):
    config = BillingConfig(provider=provider, trial_days=14)
    change(new_uow, config, april, owner.id, "business_monthly")
    april.advance(days=14)
    roll(new_uow, config, april, owner.id)
    sub = subscription_of(new_uow, april, owner.id)
    invoice = invoices_of(new_uow, owner.id)[-1][0]
    assert sub.status == "past_due" and invoice.last_payment_error.startswith("payment_method_missing")


def test_provider_events_mark_paid_and_failure_idempotently_and_out_of_order(new_uow, config, provider, april, owner):
    card = attach_card(new_uow, provider, owner.id, april)
    change(new_uow, config, april, owner.id, "pro_monthly")
    provider.cards[card] = "declined"
    april.advance(days=30)
    roll(new_uow, config, april, owner.id)
    invoice = invoices_of(new_uow, owner.id)[-1][0]
    with new_uow() as uow:  # the same failure again: already recorded
        assert not invoice_services.record_payment_failure(
            uow,
            invoice_id=invoice.id,
            payment_id=invoice.provider_payment_id,
            failure_code="card_declined",
            failure_message="declined",
            clock=april,
        )
    with new_uow() as uow:
        assert invoice_services.mark_invoice_paid(uow, invoice_id=invoice.id, payment_id="pi_late", clock=april)
    with new_uow() as uow:
        assert not invoice_services.mark_invoice_paid(uow, invoice_id=invoice.id, payment_id="pi_late", clock=april)
        assert uow.invoices.by_payment("pi_late").id == invoice.id
    with new_uow() as uow:  # a failure arriving after the success changes nothing
        assert not invoice_services.record_payment_failure(
            uow, invoice_id=invoice.id, payment_id="pi_other", failure_code="x", failure_message="y", clock=april
        )
    assert subscription_of(new_uow, april, owner.id).status == "active"
    with new_uow() as uow:
        assert not invoice_services.mark_invoice_paid(uow, invoice_id=uuid.uuid4(), payment_id="pi", clock=april)


def test_the_cycle_job_rolls_due_subscriptions_once(new_uow, config, provider, owner):
    clock = FrozenClock(at("2027-03-01T00:00:00"))
    attach_card(new_uow, provider, owner.id, clock)
    change(new_uow, config, clock, owner.id, "pro_monthly")
    clock.advance(days=31)
    first = run_cycle(unit_of_work=new_uow, config=config, clock=clock)
    second = run_cycle(unit_of_work=new_uow, config=config, clock=clock)
    assert first.rolled >= 1
    cycle = [invoice for invoice, _ in invoices_of(new_uow, owner.id) if invoice.billing_reason == "subscription_cycle"]
    assert len(cycle) == 1 and cycle[0].status == "paid"
    assert subscription_of(new_uow, clock, owner.id).current_period_end == at("2027-05-01T00:00:00")
    assert str(owner.id) not in first.errors + second.errors


def test_concurrent_upgrades_of_one_account_serialise_and_charge_once(new_uow, config, provider, april, owner):
    attach_card(new_uow, provider, owner.id, april)
    change(new_uow, config, april, owner.id, "pro_monthly")
    april.advance(days=15)
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def upgrade() -> None:
        try:
            barrier.wait(timeout=10)
            change(new_uow, config, april, owner.id, "business_monthly")
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=upgrade) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    updates = [i for i, _ in invoices_of(new_uow, owner.id) if i.billing_reason == "subscription_update"]
    assert len(updates) == 1 and updates[0].total == 3500
    assert len(provider.charges) == 2
    assert subscription_of(new_uow, april, owner.id).plan_code == "business_monthly"


def test_changes_and_payments_publish_their_webhook_events(app, new_uow, config, provider, april, owner):
    published: list = []
    factory = app.app.extensions["charter"].session_factory

    def recording_uow():
        return UnitOfWork(factory, publish=lambda _uow, events: published.extend(events))

    card = attach_card(new_uow, provider, owner.id, april)
    change(recording_uow, config, april, owner.id, "pro_monthly")
    assert [event.type for event in published] == ["subscription.updated", "invoice.paid"]
    assert published[1].data["invoice"]["total"] == 2900
    provider.cards[card] = "declined"
    april.advance(days=30)
    published.clear()
    roll(recording_uow, config, april, owner.id)
    types = [event.type for event in published]
    assert types == ["subscription.updated", "invoice.payment_failed", "subscription.updated"]
    assert (
        published[-1].data["reason"] == "payment_failed" and published[-1].data["subscription"]["status"] == "past_due"
    )
    # every payload is a WebhookEvent of the contract (its oneOf: exactly one variant matches)
    from connexion.json_schema import resolve_refs
    from openapi_schema_validator import OAS30Validator

    from server.contract import bundle

    validator = OAS30Validator(resolve_refs(bundle())["components"]["schemas"]["WebhookEvent"])
    for event in published:
        assert list(validator.iter_errors(event.payload())) == [], event.type


def test_the_billing_cycle_job_kind_runs_through_the_job_engine(app, new_uow, provider, owner):
    from services import jobs as job_services
    from tests.helpers import run_job

    engine = app.app.extensions["charter"].jobs
    assert "billing.cycle" in engine.kinds
    with new_uow() as uow:
        job = job_services.enqueue(
            uow=uow, clock=app.app.extensions["charter"].clock, engine=engine, kind="billing.cycle", owner_id=None
        )
    report = run_job(app, str(job.id))
    assert str(report.outcome) == "succeeded", report


def test_a_provider_that_does_not_answer_changes_nothing_and_a_renewal_waits_an_hour(
    new_uow, config, provider, april, owner
):
    from services.billing_state import PaymentProviderDown
    from services.payments import PaymentProviderUnavailable

    attach_card(new_uow, provider, owner.id, april)
    change(new_uow, config, april, owner.id, "pro_monthly")
    real_charge = provider.charge

    def down(**_arguments):
        raise PaymentProviderUnavailable("no answer")

    provider.charge = down  # type: ignore[method-assign]
    april.advance(days=5)
    with pytest.raises(PaymentProviderDown):
        change(new_uow, config, april, owner.id, "business_monthly")
    assert subscription_of(new_uow, april, owner.id).plan_code == "pro_monthly"
    assert len(invoices_of(new_uow, owner.id)) == 1

    april.at = at("2027-05-01T00:00:00")
    roll(new_uow, config, april, owner.id)
    invoice = invoices_of(new_uow, owner.id)[-1][0]
    sub = subscription_of(new_uow, april, owner.id)
    assert (invoice.status, invoice.attempt_count, invoice.next_payment_attempt_at) == (
        "open",
        0,
        at("2027-05-01T01:00:00"),
    )
    assert sub.status == "active"  # not a failed payment: nothing was tried
    provider.charge = real_charge  # type: ignore[method-assign]
    april.advance(hours=1)
    with new_uow() as uow:
        assert invoice_services.retry_due_invoice(uow=uow, config=config, clock=april, invoice_id=invoice.id) == "paid"
