"""The administrators' billing summary (issue 17): MRR rounded once per currency, churn and failed
payments from the billing history (measured as the change a test's own account makes, since the
session database is shared)."""

from __future__ import annotations

from datetime import timedelta

from services import billing_reports, subscriptions
from services.audit import RequestMeta
from tests.billing.conftest import attach_card


def test_mrr_sums_yearly_twelfths_exactly_and_rounds_once():
    rows = [(99_000, "year", "USD", 1), (29_000, "year", "USD", 1), (100, "year", "EUR", 1), (2_900, "month", "USD", 2)]
    # 99000/12 = 8250, 29000/12 = 2416.67, 2 * 2900 = 5800: 16466.67 -> 16467; 100/12 = 8.33 -> 8
    assert billing_reports.monthly_recurring_revenue(rows) == {"EUR": 8, "USD": 16467}
    assert billing_reports.monthly_recurring_revenue([(1, "year", "USD", 6)]) == {"USD": 0}  # 0.5 -> 0 (even)
    assert billing_reports.monthly_recurring_revenue([(1, "year", "USD", 18)]) == {"USD": 2}  # 1.5 -> 2 (even)


def test_cancellations_and_failed_payments_are_counted_in_their_period(new_uow, config, provider, april, owner):
    since, until = april.now(), april.now() + timedelta(days=40)
    with new_uow() as uow:
        before = billing_reports.summary(uow=uow, since=since, until=until)
        before_later = billing_reports.summary(uow=uow, since=since + timedelta(days=1), until=until)
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
    with new_uow() as uow:
        subscriptions.cancel(
            uow=uow, config=config, clock=april, owner_id=owner.id, at_period_end=False, meta=RequestMeta()
        )
    with new_uow() as uow:
        after = billing_reports.summary(uow=uow, since=since, until=until)
        paying_later = billing_reports.summary(uow=uow, since=since + timedelta(days=1), until=until)
    assert after.cancellations - before.cancellations == 1
    assert after.failed_payments - before.failed_payments == 1
    assert paying_later.paying_at_start - before_later.paying_at_start == 1  # paying on April 2
