"""The `stripe` provider (adapters/payments_stripe.py) against a local double of Stripe's API on
127.0.0.1 (tests/payments/stripe_double.py): customers, cards from tokens, off-session charges
(succeeded, declined, requires_action), the idempotency key sent, timeouts and 5xx retried with
the same key, and the circuit breaker."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest

from adapters.payments_stripe import StripePaymentProvider
from services.payments import PaymentMethodRejected, PaymentProviderUnavailable
from tests.helpers import serving_on_loopback
from tests.payments.stripe_double import StripeDouble


@pytest.fixture
def double() -> Iterator[tuple[StripeDouble, str]]:
    state = StripeDouble()
    with serving_on_loopback(state.handler()) as port:
        yield state, f"http://127.0.0.1:{port}"


def provider(base: str, **options: float) -> StripePaymentProvider:
    settings = {
        "api_key": "sk_test_double",
        "api_base": base,
        "connect_timeout_seconds": 2.0,
        "timeout_seconds": 2.0,
        "retry_attempts": 3,
        "retry_wait_seconds": 0.01,
        "retry_max_wait_seconds": 0.02,
        "breaker_failures": 5,
        "breaker_reset_seconds": 30.0,
        **options,
    }
    return StripePaymentProvider(**settings)  # type: ignore[arg-type]


def test_a_customer_and_a_card_from_a_token(double):
    state, base = double
    stripe = provider(base)
    owner = uuid.uuid4()
    customer = stripe.create_customer(owner_id=owner, email="payer@example.com")
    card = stripe.attach_payment_method(customer_id=customer, token="tok_visa")
    assert customer.startswith("cus_")
    assert (card.brand, card.last4, card.exp_month, card.exp_year) == ("visa", "4242", 12, 2034)
    assert card.provider_payment_method_id.startswith("pm_visa_")
    (made,) = state.of_path("/v1/customers")
    assert made.form["email"] == ["payer@example.com"] and made.form["metadata[owner_id]"] == [str(owner)]
    assert made.headers["idempotency-key"] == f"charter-customer-{owner}"
    assert made.headers["authorization"] == "Bearer sk_test_double"
    (attach,) = state.of_path(f"/v1/payment_methods/{card.provider_payment_method_id}/attach")
    assert attach.form["customer"] == [customer]
    (created,) = state.of_path("/v1/payment_methods")
    assert created.form["type"] == ["card"] and created.form["card[token]"] == ["tok_visa"]


def test_refused_tokens_and_cards(double):
    _state, base = double
    stripe = provider(base)
    with pytest.raises(PaymentMethodRejected) as unknown:
        stripe.attach_payment_method(customer_id="cus_x", token="tok_nonsense")
    assert unknown.value.code == "invalid_token"
    with pytest.raises(PaymentMethodRejected) as declined:
        stripe.attach_payment_method(customer_id="cus_x", token="tok_cardDeclinedOnAttach")
    assert declined.value.code == "card_declined"
    assert stripe.breaker_state == "closed"  # Stripe answered: refusals are no failures


def test_charges_succeed_decline_or_need_the_cardholder_and_send_the_idempotency_key(double):
    state, base = double
    stripe = provider(base)
    visa = stripe.attach_payment_method(customer_id="cus_x", token="tok_visa").provider_payment_method_id
    declined = stripe.attach_payment_method(customer_id="cus_x", token="tok_chargeDeclined").provider_payment_method_id
    three_ds = stripe.attach_payment_method(
        customer_id="cus_x", token="tok_threeDSecureRequired"
    ).provider_payment_method_id
    common = {"customer_id": "cus_x", "amount": 2900, "currency": "USD", "description": "Pro, December"}

    paid = stripe.charge(
        provider_payment_method_id=visa, idempotency_key="inv-1-attempt-1", metadata={"invoice_id": "i1"}, **common
    )
    assert paid.status == "succeeded" and paid.payment_id and paid.payment_id.startswith("pi_")
    refused = stripe.charge(provider_payment_method_id=declined, idempotency_key="inv-2-attempt-1", **common)
    assert (refused.status, refused.failure_code) == ("declined", "card_declined")
    assert refused.payment_id and refused.payment_id.startswith("pi_")  # the intent Stripe made is named
    action = stripe.charge(provider_payment_method_id=three_ds, idempotency_key="inv-3-attempt-1", **common)
    assert (action.status, action.failure_code) == ("requires_action", "authentication_required")

    first, second, third = state.of_path("/v1/payment_intents")
    assert first.headers["idempotency-key"] == "inv-1-attempt-1"
    assert first.form["amount"] == ["2900"] and first.form["currency"] == ["usd"]
    assert first.form["confirm"] == ["true"] and first.form["off_session"] == ["true"]
    assert first.form["metadata[invoice_id]"] == ["i1"] and first.form["payment_method"] == [visa]
    assert [second.headers["idempotency-key"], third.headers["idempotency-key"]] == [
        "inv-2-attempt-1",
        "inv-3-attempt-1",
    ]

    again = stripe.charge(provider_payment_method_id=visa, idempotency_key="inv-1-attempt-1", **common)
    assert again == paid  # Stripe answers the first intent for the same key


def test_a_5xx_is_retried_with_the_same_idempotency_key(double):
    state, base = double
    stripe = provider(base)
    visa = stripe.attach_payment_method(customer_id="cus_x", token="tok_visa").provider_payment_method_id
    state.fail_next = 2
    outcome = stripe.charge(
        customer_id="cus_x",
        provider_payment_method_id=visa,
        amount=500,
        currency="usd",
        idempotency_key="retry-me",
        description="d",
    )
    assert outcome.status == "succeeded"
    attempts = state.of_path("/v1/payment_intents")
    assert len(attempts) == 3 and {a.headers["idempotency-key"] for a in attempts} == {"retry-me"}


def test_a_timeout_is_unavailable_and_the_breaker_opens(double):
    state, base = double
    stripe = provider(base, timeout_seconds=0.3, retry_attempts=1, breaker_failures=2)
    state.fail_next, state.delay_seconds = 2, 1.0
    for _ in range(2):
        with pytest.raises(PaymentProviderUnavailable):
            stripe.create_customer(owner_id=uuid.uuid4(), email="a@example.com")
    assert stripe.breaker_state == "open"
    sent = len(state.requests)
    started = time.monotonic()
    with pytest.raises(PaymentProviderUnavailable, match="circuit breaker"):
        stripe.charge(
            customer_id="cus_x",
            provider_payment_method_id="pm_visa_x",
            amount=100,
            currency="usd",
            idempotency_key="k",
            description="d",
        )
    assert len(state.requests) == sent  # failed fast: Stripe was not contacted
    assert time.monotonic() - started < 0.3


def test_detaching_an_unknown_card_is_not_an_error(double):
    state, base = double
    stripe = provider(base)
    stripe.detach_payment_method(provider_payment_method_id="pm_visa_gone")
    assert [r.path for r in state.requests] == ["/v1/payment_methods/pm_visa_gone/detach"]
