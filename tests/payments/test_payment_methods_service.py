"""Payment methods in the service (services/payment_methods.py), with real threads: two first
attaches of one account at once make one provider customer and exactly one default."""

from __future__ import annotations

import threading
import time
import uuid

from adapters.payments_fake import FakePaymentProvider
from services import payment_methods
from services.audit import RequestMeta


class CountingProvider(FakePaymentProvider):
    """The fake, counting the customers it makes (each a new id, as Stripe's are), slowly."""

    def __init__(self) -> None:
        super().__init__()
        self.customers: list[str] = []
        self.count_lock = threading.Lock()

    def create_customer(self, *, owner_id: uuid.UUID, email: str) -> str:
        time.sleep(0.2)  # both requests are in flight while the first makes the customer
        customer = "cus_" + uuid.uuid4().hex[:14]
        with self.count_lock:
            self.customers.append(customer)
        return customer


def test_two_first_attaches_at_once_make_one_customer_and_one_default(new_uow, clock, owner):
    provider = CountingProvider()
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def attach(token: str) -> None:
        try:
            barrier.wait(timeout=10)
            with new_uow() as uow:
                payment_methods.attach(
                    uow=uow, clock=clock, provider=provider, owner=owner, token=token, meta=RequestMeta()
                )
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=attach, args=(token,)) for token in ("tok_visa", "tok_mastercard")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert len(provider.customers) == 1
    with new_uow() as uow:
        methods = uow.payment_methods.all_of(owner.id)
        subscription = uow.subscriptions.of_owner(owner.id)
    assert len(methods) == 2 and [m.is_default for m in methods].count(True) == 1
    assert subscription is not None and subscription.provider_customer_id == provider.customers[0]
