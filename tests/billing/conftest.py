"""Fixtures of the billing tests: the fake provider, a billing configuration without a trial
(tests that want one make their own), and a helper that attaches a card to an account as part C's
endpoint will (the provider's customer on the subscription, the first card the default)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from adapters.payments_fake import FakePaymentProvider
from persistence.billing.models import Invoice, PaymentMethod
from persistence.unit_of_work import UnitOfWork
from services.billing_state import BillingConfig
from services.clock import Clock, FrozenClock
from services.subscriptions import current_subscription


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.fixture
def provider() -> FakePaymentProvider:
    return FakePaymentProvider()


@pytest.fixture
def config(provider) -> BillingConfig:
    return BillingConfig(provider=provider, trial_days=0, retry_days=(1, 3, 5))


@pytest.fixture
def april() -> FrozenClock:
    """A clock at 2027-04-01 00:00 UTC: a monthly period from then has 30 days."""
    return FrozenClock(at("2027-04-01T00:00:00"))


def attach_card(
    new_uow: Callable[[], UnitOfWork],
    provider: FakePaymentProvider,
    owner_id: uuid.UUID,
    clock: Clock,
    token: str = "tok_visa",  # noqa: S107 - a fake provider test token
) -> str:
    """Attach a test card as the account's default payment method; its provider id."""
    with new_uow() as uow:
        subscription = current_subscription(uow, owner_id=owner_id, clock=clock, lock=True)
        customer = subscription.provider_customer_id or provider.create_customer(
            owner_id=owner_id, email="x@example.com"
        )
        card = provider.attach_payment_method(customer_id=customer, token=token)
        subscription.provider = provider.name
        subscription.provider_customer_id = customer
        uow.payment_methods.add(
            PaymentMethod(
                id=uuid.uuid4(),
                owner_id=owner_id,
                provider=provider.name,
                provider_payment_method_id=card.provider_payment_method_id,
                brand=card.brand,
                last4=card.last4,
                exp_month=card.exp_month,
                exp_year=card.exp_year,
                is_default=True,
                created_at=clock.now(),
                detached_at=None,
            )
        )
    return card.provider_payment_method_id


def invoices_of(new_uow: Callable[[], UnitOfWork], owner_id: uuid.UUID) -> list[tuple[Invoice, list]]:
    """The account's invoices, oldest first, each with its lines."""
    with new_uow() as uow:
        return [(invoice, uow.invoices.lines(invoice.id)) for invoice in uow.invoices.all_of_owner(owner_id)]


@pytest.fixture
def app_clock(app):
    """Freeze the session app's clock (the one its requests and jobs read) at an instant, moved
    with `.advance(...)`; the system clock is put back after the test."""
    state = app.app.extensions["charter"]
    original = state.clock
    frozen = FrozenClock(at("2027-04-01T00:00:00"))
    state.clock = frozen
    yield frozen
    state.clock = original


def forget_catalogue(app) -> None:
    """Drop the session app's cached plan catalogue (after a test changed plans in the database)."""
    from services import caching
    from services.plans import CATALOGUE_KEY, PLANS_CACHE

    cache = caching.cache_of(app.app.extensions["charter"].jobs)
    if cache is not None:
        cache.delete(PLANS_CACHE, CATALOGUE_KEY)


@pytest.fixture
def retire_plans(app, new_uow):
    """Codes of plans a test added, made inactive afterwards (the catalogue tests list the plans),
    and the cached catalogue forgotten (the change is made in the database, not through the API)."""
    codes: list[str] = []
    yield codes
    with new_uow() as uow:
        for code in codes:
            plan = uow.plans.get(code)
            if plan is not None:
                plan.active = False
    forget_catalogue(app)
