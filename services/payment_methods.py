"""Payment methods (issue 17, "Invoices and payments"): the cards an account pays with, attached
through the payment provider from a client-side token (never a card number here).

Rules and where they come from:

* **The provider's customer is made on the first attach** and stored on the account's
  subscription (`provider`, `provider_customer_id`), which is locked for the change
  (`current_subscription(lock=True)`), so concurrent first attaches make one customer. A
  customer of another provider (PAYMENT_PROVIDER changed) is replaced by one of the current
  provider's.
* **The first method attached becomes the default** (the one billing charges,
  `uow.payment_methods.default_of`); another is made default with `make_default`
  (``POST …/payment-methods/{id}/default``), which leaves exactly one default.
* **Removing**: the card is detached at the provider first (nothing changes here if the provider
  does not answer: 503), then marked detached (kept for the owner's data export, never listed
  again). If it was the default, the newest remaining method becomes the default (Stripe's
  customers keep a default source the same way). The **last** method cannot be removed while the
  account is on a paid plan that renews (status ``trialing``, ``active`` or ``past_due`` and not
  cancelled at the period's end): 409 `/problems/last-payment-method` — the renewal would
  fail and send the account into dunning. Cancel (or move to the free plan) first.
* **The provider's refusals** keep Stripe's meanings: a card error (declined, expired, wrong
  CVC: Stripe's 402 ``card_error``) is 402 `/problems/payment-method-declined` naming the code;
  an unknown or used token (Stripe's 400 ``invalid_request_error``) is 422
  `/problems/invalid-payment-token`; a provider that does not answer is 503
  `/problems/payment-provider-unavailable` (nothing stored).
* **At most `MAX_PAYMENT_METHODS` attached** per account (409 `/problems/payment-method-limit-reached`).
* **Audit** (brief 004, "every billing change"): ``payment_method_attached``,
  ``payment_method_detached``, ``payment_method_default_changed`` with the method's id, brand and
  last four digits.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from persistence.accounts.models import User
from persistence.billing.models import PaymentMethod
from persistence.unit_of_work import UnitOfWork
from services import audit
from services.audit import EventType, RequestMeta
from services.clock import Clock
from services.cursors import decode_cursor, page
from services.errors import Conflict, DomainError, NotFound, ProblemType
from services.payments import PaymentMethodRejected, PaymentProvider, PaymentProviderUnavailable
from services.subscriptions import current_subscription

MAX_PAYMENT_METHODS = 10
"""Attached payment methods per account, at most."""
RENEWING_STATUSES = frozenset({"trialing", "active", "past_due"})
"""Subscription statuses that will be charged again."""
INVALID_TOKEN_CODES = frozenset({"invalid_token", "token_already_used", "resource_missing", "invalid_request"})
"""Refusal codes that mean the token, not the card, is at fault (422, not 402)."""


class PaymentMethodDeclined(DomainError):
    """The provider refused the card (Stripe's ``card_error``); `code` is its reason."""

    problem = ProblemType("/problems/payment-method-declined", "Payment method declined", 402)

    def __init__(self, detail: str, *, code: str) -> None:
        super().__init__(detail)
        self.code = code


class InvalidPaymentToken(DomainError):
    """The token is unknown to the provider, used already, or not a card token."""

    problem = ProblemType("/problems/invalid-payment-token", "Invalid payment token", 422)


class PaymentProviderDown(DomainError):
    """The payment provider did not answer (timeout, 5xx, its circuit breaker open): nothing changed."""

    problem = ProblemType("/problems/payment-provider-unavailable", "Payment provider unavailable", 503)


class PaymentMethodLimitReached(Conflict):
    """The account already has `MAX_PAYMENT_METHODS` attached methods."""

    problem = ProblemType("/problems/payment-method-limit-reached", "Payment method limit reached", 409)


class LastPaymentMethod(Conflict):
    """The last payment method of an account whose paid subscription renews cannot be removed."""

    problem = ProblemType("/problems/last-payment-method", "Last payment method", 409)


@dataclass(frozen=True)
class MethodPage:
    """One page of payment methods and the next page's cursor (None on the last)."""

    items: list[PaymentMethod]
    next_cursor: str | None


def _details(method: PaymentMethod) -> dict[str, object]:
    return {"payment_method_id": str(method.id), "brand": method.brand, "last4": method.last4}


def attach(
    *,
    uow: UnitOfWork,
    clock: Clock,
    provider: PaymentProvider,
    owner: User,
    token: str,
    meta: RequestMeta,
) -> PaymentMethod:
    """Attach the card `token` stands for to the owner's provider customer (made now if they have
    none) and store it; the first becomes the default. Records ``payment_method_attached``.

    Args:
        token: the provider's client-side token (``tok_…``; the fake's test tokens are in
            `adapters.payments_fake.TEST_CARDS`).

    Raises:
        PaymentMethodLimitReached: `MAX_PAYMENT_METHODS` already attached (409).
        PaymentMethodDeclined: the provider declined the card (402).
        InvalidPaymentToken: the provider does not know the token (422).
        PaymentProviderDown: the provider did not answer (503); nothing stored.
    """
    subscription = current_subscription(uow, owner_id=owner.id, clock=clock, lock=True)
    if uow.payment_methods.count_attached(owner.id) >= MAX_PAYMENT_METHODS:
        raise PaymentMethodLimitReached(
            f"You have {MAX_PAYMENT_METHODS} payment methods, the most allowed; remove one first."
        )
    now = clock.now()
    try:
        customer_id = subscription.provider_customer_id if subscription.provider == provider.name else None
        if customer_id is None:
            customer_id = provider.create_customer(owner_id=owner.id, email=owner.email)
            subscription.provider = provider.name
            subscription.provider_customer_id = customer_id
            subscription.updated_at = now
        card = provider.attach_payment_method(customer_id=customer_id, token=token)
    except PaymentProviderUnavailable:
        raise PaymentProviderDown("The payment provider did not answer; nothing was changed. Retry later.") from None
    except PaymentMethodRejected as refusal:
        if refusal.code in INVALID_TOKEN_CODES:
            raise InvalidPaymentToken(f"The payment provider does not accept this token ({refusal.code}).") from None
        raise PaymentMethodDeclined(
            f"The payment provider declined the card ({refusal.code}): {refusal.message}", code=refusal.code
        ) from None
    first = uow.payment_methods.default_of(owner.id) is None
    method = PaymentMethod(
        id=uuid.uuid4(),
        owner_id=owner.id,
        provider=provider.name,
        provider_payment_method_id=card.provider_payment_method_id,
        brand=card.brand[:20],
        last4=card.last4[-4:],
        exp_month=card.exp_month,
        exp_year=card.exp_year,
        is_default=first,
        created_at=now,
        detached_at=None,
    )
    uow.payment_methods.add(method)
    audit.record(
        uow,
        EventType.PAYMENT_METHOD_ATTACHED,
        meta=meta,
        now=now,
        actor_id=owner.id,
        subject_id=owner.id,
        details={**_details(method), "is_default": first},
    )
    return method


def list_methods(*, uow: UnitOfWork, owner_id: uuid.UUID, limit: int, cursor: str | None = None) -> MethodPage:
    """The owner's attached payment methods, newest first, `limit` per page after `cursor`.

    Raises:
        InvalidInput: a cursor this list did not make (400).
    """
    rows = uow.payment_methods.page(
        owner_id=owner_id, limit=limit + 1, before=decode_cursor(cursor) if cursor else None
    )
    items, next_cursor = page(rows, limit, lambda method: (method.created_at, method.id))
    return MethodPage(items, next_cursor)


def _get(uow: UnitOfWork, owner_id: uuid.UUID, method_id: uuid.UUID) -> PaymentMethod:
    method = uow.payment_methods.get(owner_id=owner_id, method_id=method_id)
    if method is None:
        raise NotFound("No payment method with this id exists for you.")
    return method


def make_default(
    *, uow: UnitOfWork, clock: Clock, owner: User, method_id: uuid.UUID, meta: RequestMeta
) -> PaymentMethod:
    """Make the owner's method `method_id` the one billing charges. Records
    ``payment_method_default_changed`` unless it was the default already.

    Raises:
        NotFound: no such attached method of the owner (404).
    """
    current_subscription(uow, owner_id=owner.id, clock=clock, lock=True)  # one change of the account at a time
    method = _get(uow, owner.id, method_id)
    if not method.is_default:
        uow.payment_methods.make_default(owner_id=owner.id, method_id=method.id)
        audit.record(
            uow,
            EventType.PAYMENT_METHOD_DEFAULT_CHANGED,
            meta=meta,
            now=clock.now(),
            actor_id=owner.id,
            subject_id=owner.id,
            details=_details(method),
        )
    return method


def remove(
    *,
    uow: UnitOfWork,
    clock: Clock,
    provider: PaymentProvider,
    owner: User,
    method_id: uuid.UUID,
    meta: RequestMeta,
) -> None:
    """Detach the owner's method at the provider and mark it detached; a default's place goes
    to the newest remaining method. Records ``payment_method_detached``.

    Raises:
        NotFound: no such attached method of the owner (404).
        LastPaymentMethod: it is the last one and a paid subscription renews (409).
        PaymentProviderDown: the provider did not answer (503); nothing changed.
    """
    subscription = current_subscription(uow, owner_id=owner.id, clock=clock, lock=True)
    method = _get(uow, owner.id, method_id)
    successor = uow.payment_methods.newest_attached(owner.id, excluding=method.id)
    plan = uow.plans.get(subscription.plan_code)
    renews = (
        plan is not None
        and plan.price > 0
        and subscription.status in RENEWING_STATUSES
        and not subscription.cancel_at_period_end
    )
    if successor is None and renews:
        raise LastPaymentMethod(
            "This is your only payment method and your paid plan renews: add another one first, "
            "or cancel the subscription."
        )
    if method.provider == provider.name:  # a card of a former provider is only forgotten here
        try:
            provider.detach_payment_method(provider_payment_method_id=method.provider_payment_method_id)
        except PaymentProviderUnavailable:
            raise PaymentProviderDown(
                "The payment provider did not answer; nothing was changed. Retry later."
            ) from None
    was_default = method.is_default
    now = clock.now()
    uow.payment_methods.detach(method, now=now)
    if was_default and successor is not None:
        uow.payment_methods.make_default(owner_id=owner.id, method_id=successor.id)
    details = {**_details(method), "new_default_id": str(successor.id) if was_default and successor else None}
    audit.record(
        uow,
        EventType.PAYMENT_METHOD_DETACHED,
        meta=meta,
        now=now,
        actor_id=owner.id,
        subject_id=owner.id,
        details=details,
    )


def exported_methods(*, uow: UnitOfWork, owner_id: uuid.UUID) -> list[PaymentMethod]:
    """Every payment method of the owner, detached ones included, oldest first: their export's section."""
    return uow.payment_methods.all_of(owner_id)
