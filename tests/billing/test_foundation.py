"""The billing foundation (issue 17): billing periods counted from an anchor, the free
subscription every account starts on, the catalogue migration 0015 ships, and the fake
payment provider's test tokens."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from adapters.payments_fake import FakePaymentProvider
from persistence.billing.models import Subscription
from services.billing_periods import period_containing, period_start
from services.payments import PaymentMethodRejected
from services.subscriptions import FREE_PLAN, current_plan, current_subscription


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_monthly_periods_from_a_month_end_anchor_clamp_to_month_ends_without_drifting():
    anchor = at("2027-01-31T10:00:00")
    assert [period_start(anchor, "month", n) for n in range(4)] == [
        anchor,
        at("2027-02-28T10:00:00"),
        at("2027-03-31T10:00:00"),
        at("2027-04-30T10:00:00"),
    ]


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        ("2027-01-31T10:00:00", ("2027-01-31T10:00:00", "2027-02-28T10:00:00")),
        ("2027-02-28T09:59:59", ("2027-01-31T10:00:00", "2027-02-28T10:00:00")),
        ("2027-02-28T10:00:00", ("2027-02-28T10:00:00", "2027-03-31T10:00:00")),
        ("2028-03-15T00:00:00", ("2028-02-29T10:00:00", "2028-03-31T10:00:00")),
        ("2026-12-01T00:00:00", ("2027-01-31T10:00:00", "2027-02-28T10:00:00")),
    ],
)
def test_the_period_containing_a_moment_is_half_open(moment, expected):
    assert period_containing(at("2027-01-31T10:00:00"), "month", at(moment)) == (at(expected[0]), at(expected[1]))


def test_yearly_periods():
    anchor = at("2028-02-29T00:00:00")
    assert period_containing(anchor, "year", at("2029-03-01T00:00:00")) == (
        at("2029-02-28T00:00:00"),
        at("2030-02-28T00:00:00"),
    )
    with pytest.raises(ValueError, match="interval"):
        period_start(anchor, "week", 1)


def test_the_catalogue_ships_free_pro_and_business_monthly_and_yearly(new_uow):
    with new_uow() as uow:
        plans = {plan.code: plan for plan in uow.plans.listed()}
    assert set(plans) == {"free", "pro_monthly", "pro_yearly", "business_monthly", "business_yearly"}
    assert plans["free"].price == 0 and plans["free"].quotas["chatbots"] == 2
    assert plans["pro_yearly"].quotas["messages"] == 12 * plans["pro_monthly"].quotas["messages"]
    assert all(plan.currency == "USD" and isinstance(plan.price, int) for plan in plans.values())


def test_an_account_starts_on_the_free_plan_and_concurrent_first_reads_make_one_subscription(new_uow, clock, owner):
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def first_read() -> None:
        try:
            barrier.wait(timeout=10)
            with new_uow() as uow:
                current_subscription(uow, owner_id=owner.id, clock=clock)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=first_read) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    with new_uow() as uow:
        count = uow.session.scalar(
            select(func.count()).select_from(Subscription).where(Subscription.owner_id == owner.id)
        )
        plan = current_plan(uow, owner_id=owner.id, clock=clock)
    assert count == 1
    assert plan.plan.code == FREE_PLAN and plan.subscription.status == "active"
    assert plan.period_start == clock.now() and plan.period_end.month == (clock.now().month % 12) + 1


def test_the_fake_provider_follows_its_test_tokens_and_idempotency_keys():
    provider = FakePaymentProvider()
    customer = provider.create_customer(owner_id=uuid.uuid4(), email="a@example.com")
    visa = provider.attach_payment_method(customer_id=customer, token="tok_visa")
    declined = provider.attach_payment_method(customer_id=customer, token="tok_chargeDeclined")
    assert (visa.brand, visa.last4) == ("visa", "4242")
    charge = dict(customer_id=customer, amount=2900, currency="USD", description="Pro")
    first = provider.charge(provider_payment_method_id=visa.provider_payment_method_id, idempotency_key="k1", **charge)
    again = provider.charge(provider_payment_method_id=visa.provider_payment_method_id, idempotency_key="k1", **charge)
    assert first.status == "succeeded" and again == first and len(provider.charges) == 1
    refused = provider.charge(
        provider_payment_method_id=declined.provider_payment_method_id, idempotency_key="k2", **charge
    )
    assert (refused.status, refused.failure_code) == ("declined", "card_declined")
    with pytest.raises(PaymentMethodRejected) as rejected:
        provider.attach_payment_method(customer_id=customer, token="tok_unknown")
    assert rejected.value.code == "invalid_token"
