"""The ``stripe`` payment provider (issue 17): Stripe's API through the `stripe` package.

What it calls (Stripe API, ``/v1``): ``POST /customers`` (a customer per account),
``POST /payment_methods`` (a card PaymentMethod from a client-side card token) and
``POST /payment_methods/{id}/attach``, ``POST /payment_methods/{id}/detach``, and
``POST /payment_intents`` with ``confirm=true`` and ``off_session=true`` (an off-session charge of
the saved card; Stripe's "Charge saved cards later").

Resilience, as `adapters.llm_chat` does it:

* **Timeouts**: `connect_timeout_seconds` and `timeout_seconds` (read) on every request
  (`stripe.RequestsClient` on a session that ignores proxy variables); the package's own network
  retries are off, so ours are the only ones.
* **Retries only where safe** (stamina: exponential backoff with jitter, at most
  `retry_attempts` attempts): on connection errors and timeouts, 429 and 5xx. Every request
  sends an ``Idempotency-Key`` (the charge's own key; keys derived from the account, the token or
  the card otherwise), so Stripe answers a repeated request with the first answer and a retry
  never charges or creates twice. Card errors, invalid requests and authentication errors are
  never retried.
* **Circuit breaker** (`adapters.resilience.Breaker`, pybreaker's state machine, per process;
  the wiring registers it as ``payment_provider``, so readiness and `/metrics` name it): a failed
  attempt of the retried kinds counts as a failure, an answer from Stripe (errors about the card
  included: Stripe is up) as a success; `breaker_failures` failures in a row open it, and for
  `breaker_reset_seconds` every call fails at once with `PaymentProviderUnavailable` without
  contacting Stripe; then one trial call.
* **Typed outcomes**: a card Stripe refuses on attach is `PaymentMethodRejected` with Stripe's
  code; a charge Stripe declines is a `ChargeOutcome` ``declined`` (``card_declined``, …); one
  that needs the cardholder (``authentication_required``, or a payment intent in status
  ``requires_action``) is ``requires_action``; anything that is not an answer about the card is
  `PaymentProviderUnavailable` (nothing is known to have been charged).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import requests
import stripe

from adapters.payment_types import CardDetails, ChargeOutcome, PaymentMethodRejected, PaymentProviderUnavailable
from adapters.resilience import Breaker, DependencyUnavailable

T = TypeVar("T")

RETRYABLE_STATUSES = frozenset({409, 429, 500, 502, 503, 504})
"""Stripe statuses worth another attempt with the same idempotency key: a concurrent request
with the key (409 ``idempotency_key_in_use`` is not retried: see `_retryable`), rate limits,
server errors."""


class StripePaymentProvider:
    """A `PaymentProvider` on Stripe's API. Thread-safe: one per process (one breaker per process).

    Args:
        api_key: the secret key (``sk_live_…``/``sk_test_…``).
        api_base: the API's root (Stripe's by default; tests point it at a local double).
        connect_timeout_seconds, timeout_seconds: to connect, and to wait for each answer.
        retry_attempts: attempts in all (1: no retry).
        retry_wait_seconds, retry_max_wait_seconds: the first and the longest backoff.
        breaker_failures, breaker_reset_seconds: failures in a row that open the breaker, and how
            long it stays open (when no `breaker` is given).
        breaker: the provider's breaker, from the registry readiness and `/metrics` read
            (`adapters.resilience.join("payment_provider", …)`: the wiring's); None: one of its own.
    """

    name = "stripe"

    def __init__(
        self,
        *,
        api_key: str,
        api_base: str | None = None,
        connect_timeout_seconds: float = 5.0,
        timeout_seconds: float = 20.0,
        retry_attempts: int = 3,
        retry_wait_seconds: float = 0.5,
        retry_max_wait_seconds: float = 5.0,
        breaker_failures: int = 5,
        breaker_reset_seconds: float = 30.0,
        breaker: Breaker | None = None,
    ) -> None:
        session = requests.Session()
        session.trust_env = False  # no proxy or netrc from the environment: api_base is what is called
        http_client = stripe.RequestsClient(timeout=(connect_timeout_seconds, timeout_seconds), session=session)
        self.client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base} if api_base else None,
            max_network_retries=0,
            http_client=http_client,
        )
        self.retry_attempts = retry_attempts
        self.retry_wait_seconds = retry_wait_seconds
        self.retry_max_wait_seconds = retry_max_wait_seconds
        self.breaker = breaker or Breaker(
            "payment_provider", failures=breaker_failures, reset_seconds=breaker_reset_seconds
        )

    @property
    def breaker_state(self) -> str:
        """``closed``, ``open`` or ``half_open``."""
        return self.breaker.state

    # -- the port ----------------------------------------------------------------------------

    def create_customer(self, *, owner_id: uuid.UUID, email: str) -> str:
        """A Stripe customer for the account (idempotency key from the account: a retried or
        repeated creation within Stripe's 24 hours answers the same customer)."""
        customer = self._call(
            lambda: self.client.v1.customers.create(
                params={"email": email, "metadata": {"owner_id": str(owner_id)}},
                options={"idempotency_key": f"charter-customer-{owner_id}"},
            )
        )
        return str(customer.id)

    def attach_payment_method(self, *, customer_id: str, token: str) -> CardDetails:
        """A card PaymentMethod made from `token`, attached to the customer.

        Raises:
            PaymentMethodRejected: Stripe refused the card (its ``card_error`` code) or the token
                (``invalid_request_error``: unknown or used; code ``invalid_token`` unless Stripe
                gave one).
            PaymentProviderUnavailable: Stripe did not answer.
        """
        try:
            method = self._call(
                lambda: self.client.v1.payment_methods.create(
                    params={"type": "card", "card": {"token": token}},
                    options={"idempotency_key": f"charter-pm-{token}"},
                )
            )
            attached = self._call(
                lambda: self.client.v1.payment_methods.attach(
                    method.id,
                    params={"customer": customer_id},
                    options={"idempotency_key": f"charter-attach-{method.id}-{customer_id}"},
                )
            )
        except stripe.CardError as error:
            raise PaymentMethodRejected(error.code or "card_declined", _message(error)) from error
        except stripe.InvalidRequestError as error:
            raise PaymentMethodRejected(_token_code(error), _message(error)) from error
        card = attached.card
        if card is None:
            raise PaymentMethodRejected("invalid_token", "The token does not stand for a card.")
        return CardDetails(
            provider_payment_method_id=str(attached.id),
            brand=str(card.brand),
            last4=str(card.last4),
            exp_month=int(card.exp_month),
            exp_year=int(card.exp_year),
        )

    def detach_payment_method(self, *, provider_payment_method_id: str) -> None:
        """Detach the card; one Stripe no longer knows or that is detached already is not an error."""
        with contextlib.suppress(stripe.InvalidRequestError):
            self._call(lambda: self.client.v1.payment_methods.detach(provider_payment_method_id))

    def charge(
        self,
        *,
        customer_id: str,
        provider_payment_method_id: str,
        amount: int,
        currency: str,
        idempotency_key: str,
        description: str,
        metadata: Mapping[str, str] | None = None,
    ) -> ChargeOutcome:
        """An off-session PaymentIntent confirmed at once (module docstring for the outcomes)."""
        params: dict[str, Any] = {
            "amount": amount,
            "currency": currency.lower(),
            "customer": customer_id,
            "payment_method": provider_payment_method_id,
            "off_session": True,
            "confirm": True,
            "description": description,
            "metadata": dict(metadata or {}),
        }
        try:
            intent = self._call(
                lambda: self.client.v1.payment_intents.create(
                    params=params,  # type: ignore[arg-type]  # a plain dict of the documented fields
                    options={"idempotency_key": idempotency_key},
                )
            )
        except stripe.CardError as error:
            payment_id = _intent_id(error)
            if error.code == "authentication_required":
                return ChargeOutcome("requires_action", payment_id, "authentication_required", _message(error))
            return ChargeOutcome("declined", payment_id, error.code or "card_declined", _message(error))
        except stripe.InvalidRequestError as error:  # e.g. a payment method Stripe no longer knows
            return ChargeOutcome("declined", _intent_id(error), error.code or "invalid_request", _message(error))
        status = str(intent.status)
        if status == "succeeded":
            return ChargeOutcome("succeeded", str(intent.id))
        if status == "requires_action":
            return ChargeOutcome(
                "requires_action", str(intent.id), "authentication_required", "The payment needs the cardholder."
            )
        error_object = getattr(intent, "last_payment_error", None)
        code = getattr(error_object, "code", None) or status
        return ChargeOutcome("declined", str(intent.id), str(code), str(getattr(error_object, "message", "") or status))

    # -- internals ---------------------------------------------------------------------------

    def _call(self, request: Callable[[], T]) -> T:
        """One logical request with the breaker and the retries (module docstring).

        Raises:
            PaymentProviderUnavailable: breaker open, retries exhausted, or an error not about
                the request (authentication, permission).
            stripe.CardError, stripe.InvalidRequestError: Stripe's answer about the request.
        """
        try:
            return self.breaker.call(
                request,
                counts=_retryable_error,
                retry_on=_retryable_error,
                attempts=self.retry_attempts,
                wait_initial=self.retry_wait_seconds,
                wait_max=self.retry_max_wait_seconds,
            )
        except DependencyUnavailable as error:
            raise PaymentProviderUnavailable("Stripe's circuit breaker is open") from error
        except (stripe.CardError, stripe.InvalidRequestError):
            self.breaker.succeeded()  # Stripe answered about the request: it is up
            raise
        except (stripe.AuthenticationError, stripe.PermissionError, stripe.IdempotencyError) as error:
            raise PaymentProviderUnavailable(f"Stripe refused the request: {type(error).__name__}") from error
        except stripe.StripeError as error:
            if _retryable(error):
                raise PaymentProviderUnavailable(f"Stripe did not answer: {error}") from error
            raise


def _retryable_error(error: Exception) -> bool:
    """Whether `error` is a Stripe failure worth another attempt (and a failure of Stripe's)."""
    return isinstance(error, stripe.StripeError) and _retryable(error)


def _retryable(error: stripe.StripeError) -> bool:
    if isinstance(error, stripe.APIConnectionError | stripe.RateLimitError):
        return True
    if isinstance(error, stripe.IdempotencyError):
        return False
    status = error.http_status
    return (status is None and isinstance(error, stripe.APIError)) or (
        status is not None and status in RETRYABLE_STATUSES
    )


def _message(error: stripe.StripeError) -> str:
    return str(error.user_message or "The payment provider refused the request.")[:500]


def _token_code(error: stripe.StripeError) -> str:
    code = error.code or ""
    return "token_already_used" if code == "token_already_used" else "invalid_token"


def _intent_id(error: stripe.StripeError) -> str | None:
    """The payment intent a refused charge made, when Stripe's error names it."""
    body = error.json_body if isinstance(error.json_body, dict) else {}
    detail = body.get("error")
    intent = detail.get("payment_intent") if isinstance(detail, dict) else None
    return str(intent["id"]) if isinstance(intent, dict) and "id" in intent else None
