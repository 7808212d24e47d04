"""Payment methods through the API (every answer checked against the contract by the `client`
fixture): attach with the fake provider's test tokens (the provider customer made on the first,
which becomes the default), list, choose the default, remove (the newest remaining becomes the
default; the last one is kept while a paid plan renews), the provider's refusals and outages as
problems, Idempotency-Key, audit and export."""

from __future__ import annotations

import uuid

import pytest

from services.payments import PaymentMethodRejected, PaymentProviderUnavailable
from tests.helpers import NOT_FOUND, assert_problem, bearer

METHODS = "/api/v1/billing/payment-methods"


def attach(client, account, token: str = "tok_visa", **headers: str):  # noqa: S107 - a test token
    return client.post(METHODS, json={"token": token}, headers={**bearer(account.access_token), **headers})


def listed(client, account) -> list[dict]:
    answer = client.get(METHODS, headers=bearer(account.access_token))
    assert answer.status_code == 200, answer.text
    return answer.json()["items"]


def test_attach_list_default_and_remove(client, account, new_uow):
    first = attach(client, account)
    assert first.status_code == 201, first.text
    visa = first.json()
    assert (visa["brand"], visa["last4"], visa["exp_month"], visa["exp_year"], visa["is_default"]) == (
        "visa",
        "4242",
        12,
        2034,
        True,
    )
    assert first.headers["Location"] == f"{METHODS}/{visa['id']}"
    mastercard = attach(client, account, "tok_mastercard").json()
    assert mastercard["is_default"] is False and mastercard["last4"] == "4444"
    assert [(m["id"], m["is_default"]) for m in listed(client, account)] == [
        (mastercard["id"], False),
        (visa["id"], True),
    ]
    with new_uow() as uow:
        subscription = uow.subscriptions.of_owner(uuid.UUID(account.id))
        assert subscription is not None and subscription.provider == "fake"
        assert subscription.provider_customer_id and subscription.provider_customer_id.startswith("cus_")

    chosen = client.post(f"{METHODS}/{mastercard['id']}/default", headers=bearer(account.access_token))
    assert chosen.status_code == 200 and chosen.json()["is_default"] is True
    assert [m["is_default"] for m in listed(client, account)] == [True, False]
    again = client.post(f"{METHODS}/{mastercard['id']}/default", headers=bearer(account.access_token))
    assert again.status_code == 200  # idempotent

    removed = client.delete(f"{METHODS}/{mastercard['id']}", headers=bearer(account.access_token))
    assert removed.status_code == 204
    assert [(m["id"], m["is_default"]) for m in listed(client, account)] == [(visa["id"], True)]
    assert_problem(client.delete(f"{METHODS}/{mastercard['id']}", headers=bearer(account.access_token)), 404, NOT_FOUND)
    with new_uow() as uow:
        methods = uow.payment_methods.all_of(uuid.UUID(account.id))
        default = uow.payment_methods.default_of(uuid.UUID(account.id))
    assert [m.detached_at is not None for m in methods] == [False, True] and default and str(default.id) == visa["id"]

    audit = client.get("/api/v1/users/me/audit-events", headers=bearer(account.access_token)).json()["items"]
    types = [event["type"] for event in audit]
    assert {"payment_method_attached", "payment_method_default_changed", "payment_method_detached"} <= set(types)
    assert types.count("payment_method_attached") == 2 and types.count("payment_method_default_changed") == 1

    export = client.get("/api/v1/users/me/export", headers=bearer(account.access_token))
    assert export.status_code == 200, export.text
    exported = export.json()["payment_methods"]
    assert [(m["id"], m["detached_at"] is None) for m in exported] == [(visa["id"], True), (mastercard["id"], False)]


def test_another_users_methods_are_404(client, account, other_account):
    method = attach(client, account).json()
    assert listed(client, other_account) == []
    for answer in (
        client.delete(f"{METHODS}/{method['id']}", headers=bearer(other_account.access_token)),
        client.post(f"{METHODS}/{method['id']}/default", headers=bearer(other_account.access_token)),
    ):
        assert_problem(answer, 404, NOT_FOUND)
    assert [m["id"] for m in listed(client, account)] == [method["id"]]


def test_the_last_method_stays_while_a_paid_plan_renews(client, account, new_uow):
    method = attach(client, account).json()
    with new_uow() as uow:
        subscription = uow.subscriptions.of_owner(uuid.UUID(account.id), lock=True)
        assert subscription is not None
        subscription.plan_code = "pro_monthly"
    refused = client.delete(f"{METHODS}/{method['id']}", headers=bearer(account.access_token))
    assert_problem(refused, 409, "/problems/last-payment-method")
    assert [m["id"] for m in listed(client, account)] == [method["id"]]
    second = attach(client, account, "tok_mastercard").json()
    assert client.delete(f"{METHODS}/{method['id']}", headers=bearer(account.access_token)).status_code == 204
    assert [(m["id"], m["is_default"]) for m in listed(client, account)] == [(second["id"], True)]
    with new_uow() as uow:
        subscription = uow.subscriptions.of_owner(uuid.UUID(account.id), lock=True)
        assert subscription is not None
        subscription.cancel_at_period_end = True  # cancelled: nothing renews, the last card may go
    assert client.delete(f"{METHODS}/{second['id']}", headers=bearer(account.access_token)).status_code == 204
    assert listed(client, account) == []


def test_an_unknown_token_is_422_and_nothing_is_stored(client, account):
    assert_problem(attach(client, account, "tok_unknown"), 422, "/problems/invalid-payment-token")
    assert listed(client, account) == []


class RefusingProvider:
    """A provider that refuses cards, or does not answer."""

    name = "fake"

    def __init__(self, error: Exception) -> None:
        self.error = error

    def create_customer(self, **_kwargs):
        return "cus_refusing"

    def attach_payment_method(self, **_kwargs):
        raise self.error

    def detach_payment_method(self, **_kwargs):
        raise self.error


@pytest.mark.parametrize(
    ("error", "status", "type_"),
    [
        (PaymentMethodRejected("card_declined", "Your card was declined."), 402, "/problems/payment-method-declined"),
        (PaymentMethodRejected("expired_card", "Your card has expired."), 402, "/problems/payment-method-declined"),
        (PaymentProviderUnavailable("timeout"), 503, "/problems/payment-provider-unavailable"),
    ],
)
def test_the_providers_refusals_and_outages_are_problems(client, account, app, monkeypatch, error, status, type_):
    monkeypatch.setattr(app.app.extensions["charter"], "payment_provider", RefusingProvider(error))
    problem = assert_problem(attach(client, account), status, type_)
    if status == 402:
        assert error.code in problem["detail"]
    assert listed(client, account) == []


def test_removal_is_refused_when_the_provider_does_not_answer(client, account, app, monkeypatch):
    method = attach(client, account).json()
    monkeypatch.setattr(
        app.app.extensions["charter"], "payment_provider", RefusingProvider(PaymentProviderUnavailable("down"))
    )
    refused = client.delete(f"{METHODS}/{method['id']}", headers=bearer(account.access_token))
    assert_problem(refused, 503, "/problems/payment-provider-unavailable")
    monkeypatch.undo()
    assert [m["id"] for m in listed(client, account)] == [method["id"]]


def test_an_idempotency_key_makes_a_retry_answer_the_first_method(client, account):
    key = f"attach-{uuid.uuid4()}"
    first = attach(client, account, **{"Idempotency-Key": key})
    replay = attach(client, account, **{"Idempotency-Key": key})
    assert first.status_code == replay.status_code == 201
    assert replay.json() == first.json() and replay.headers["Idempotent-Replayed"] == "true"
    assert len(listed(client, account)) == 1
    other = attach(client, account, "tok_mastercard", **{"Idempotency-Key": key})
    assert_problem(other, 422, "/problems/idempotency-key-reused")


def test_at_most_ten_methods(client, account):
    for _ in range(10):
        assert attach(client, account).status_code == 201
    assert_problem(attach(client, account), 409, "/problems/payment-method-limit-reached")
    page = client.get(METHODS, params={"limit": 4}, headers=bearer(account.access_token)).json()
    assert len(page["items"]) == 4 and page["next_cursor"]
    rest = client.get(
        METHODS, params={"limit": 100, "cursor": page["next_cursor"]}, headers=bearer(account.access_token)
    )
    assert len(rest.json()["items"]) == 6 and rest.json()["next_cursor"] is None
