"""Stripe's webhook signature scheme (services/stripe_signatures.py) and the fake provider's
events: signed exactly as Stripe signs, so the `stripe` package's own
`stripe.Webhook.construct_event` accepts them, unmodified."""

from __future__ import annotations

import json
import time
import uuid

import pytest
import stripe

from adapters.payments_fake import FakePaymentProvider
from services.clock import FrozenClock
from services.provider_events import ProviderEventConfig, signed_fake_delivery
from services.stripe_signatures import SignatureInvalid, sign, signature, verify
from tests.helpers import T0

SECRET = "whsec_test_current"
OLD_SECRET = "whsec_test_previous"
BODY = b'{"id":"evt_1","object":"event","type":"payment_intent.succeeded","created":1,"data":{"object":{}}}'
NOW = 1_800_000_000


def test_a_valid_signature_is_accepted():
    header = sign(BODY, secrets=[SECRET], timestamp=NOW)
    assert header == f"t={NOW},v1={signature(BODY, secret=SECRET, timestamp=NOW)}"
    assert verify(BODY, header, secrets=[SECRET], now=NOW) == NOW


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "garbage",
        f"t={NOW}",  # no v1
        f"v1={signature(BODY, secret=SECRET, timestamp=NOW)}",  # no t
        f"t={NOW},t={NOW},v1={signature(BODY, secret=SECRET, timestamp=NOW)}",  # two t
        f"t=abc,v1={signature(BODY, secret=SECRET, timestamp=NOW)}",
        f"t={NOW},v1={'0' * 64}",  # forged
        f"t={NOW},v1={signature(BODY, secret='whsec_someone_else', timestamp=NOW)}",  # another secret
        f"t={NOW},v0={signature(BODY, secret=SECRET, timestamp=NOW)}",  # only the test-mode scheme
        f"t={NOW},v1=é",  # not ASCII
        "t=1," + "v1=a," * 2000,  # too long
    ],
)
def test_missing_malformed_or_forged_signatures_are_refused(header):
    with pytest.raises(SignatureInvalid):
        verify(BODY, header, secrets=[SECRET], now=NOW)


def test_a_stale_or_future_signature_is_refused_beyond_300_seconds():
    for signed_at, accepted in [(NOW - 300, True), (NOW - 301, False), (NOW + 300, True), (NOW + 301, False)]:
        header = sign(BODY, secrets=[SECRET], timestamp=signed_at)
        if accepted:
            verify(BODY, header, secrets=[SECRET], now=NOW)
        else:
            with pytest.raises(SignatureInvalid, match="tolerance"):
                verify(BODY, header, secrets=[SECRET], now=NOW)


def test_a_body_changed_after_signing_is_refused():
    header = sign(BODY, secrets=[SECRET], timestamp=NOW)
    for tampered in (BODY.replace(b"succeeded", b"payment_failed"), BODY + b" ", BODY[:-1]):
        with pytest.raises(SignatureInvalid, match="no signature matches"):
            verify(tampered, header, secrets=[SECRET], now=NOW)


def test_several_v1_while_stripe_rolls_its_secret():
    """Stripe sends one v1 per active secret while it rolls one: either matching is enough."""
    header = sign(BODY, secrets=[OLD_SECRET, SECRET], timestamp=NOW)
    assert header.count("v1=") == 2
    assert verify(BODY, header, secrets=[SECRET], now=NOW) == NOW
    assert verify(BODY, header, secrets=[OLD_SECRET], now=NOW) == NOW
    forged_first = f"t={NOW},v1={'f' * 64},v1={signature(BODY, secret=SECRET, timestamp=NOW)}"
    assert verify(BODY, forged_first, secrets=[SECRET], now=NOW) == NOW


def test_several_of_our_secrets_while_we_rotate_ours():
    """STRIPE_WEBHOOK_SECRET=new,old: deliveries signed with either are accepted, others not."""
    ours = ["whsec_new", "whsec_old"]
    for secret in ours:
        verify(BODY, sign(BODY, secrets=[secret], timestamp=NOW), secrets=ours, now=NOW)
    with pytest.raises(SignatureInvalid):
        verify(BODY, sign(BODY, secrets=["whsec_retired"], timestamp=NOW), secrets=ours, now=NOW)
    with pytest.raises(SignatureInvalid, match="no webhook secret"):
        verify(BODY, sign(BODY, secrets=["whsec_new"], timestamp=NOW), secrets=[], now=NOW)


def test_stripe_itself_accepts_our_signatures():
    header = sign(BODY, secrets=[SECRET], timestamp=int(time.time()))
    event = stripe.Webhook.construct_event(BODY.decode(), header, SECRET)
    assert event.id == "evt_1"


def test_the_fake_providers_events_are_stripe_events_signed_as_stripe_signs():
    emitted: list[dict] = []
    fake = FakePaymentProvider(emit=emitted.append)
    customer = fake.create_customer(owner_id=uuid.uuid4(), email="a@example.com")
    visa = fake.attach_payment_method(customer_id=customer, token="tok_visa").provider_payment_method_id
    declined = fake.attach_payment_method(customer_id=customer, token="tok_chargeDeclined").provider_payment_method_id
    common = {"customer_id": customer, "amount": 2900, "currency": "USD", "description": "Pro"}
    paid = fake.charge(provider_payment_method_id=visa, idempotency_key="k1", metadata={"invoice_id": "inv"}, **common)
    fake.charge(provider_payment_method_id=visa, idempotency_key="k1", **common)  # a replay emits nothing
    failed = fake.charge(provider_payment_method_id=declined, idempotency_key="k2", **common)
    assert [event["type"] for event in emitted] == ["payment_intent.succeeded", "payment_intent.payment_failed"]
    assert emitted == fake.events

    # Signed now (real time: construct_event checks the timestamp against the wall clock).
    config = ProviderEventConfig(secrets={"fake": (SECRET, OLD_SECRET)})
    clock = FrozenClock(T0.fromtimestamp(int(time.time()), T0.tzinfo))
    for event, outcome in zip(emitted, (paid, failed), strict=True):
        payload, header = signed_fake_delivery(config=config, clock=clock, event=event)
        verified = stripe.Webhook.construct_event(payload.decode(), header, SECRET)
        assert verified.id.startswith("evt_") and verified.object == "event"
        intent = verified.data.object
        assert intent.object == "payment_intent" and intent.id == outcome.payment_id
        assert intent.amount == 2900 and intent.currency == "usd" and intent.customer == customer
        assert json.loads(payload) == event
    assert emitted[0]["data"]["object"]["metadata"] == {"invoice_id": "inv"}
    assert emitted[1]["data"]["object"]["last_payment_error"]["code"] == "card_declined"
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(payload.decode(), header, OLD_SECRET)  # signed with the first secret only
