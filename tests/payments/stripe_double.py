"""A local double of the few Stripe API endpoints `adapters.payments_stripe` calls, served on
127.0.0.1 only (nothing leaves the machine): Stripe-shaped JSON answers, form-encoded requests
as the `stripe` package sends them, and every request recorded (method, path, headers, form).

Behaviour by test token / payment method (as Stripe's test cards behave):

* ``tok_visa`` -> a card PaymentMethod ``pm_visa_…`` whose charges succeed;
* ``tok_chargeDeclined`` -> ``pm_declined_…``: attaches, charges answer 402 ``card_declined``;
* ``tok_threeDSecureRequired`` -> ``pm_3ds_…``: charges answer 402 ``authentication_required``;
* ``tok_cardDeclinedOnAttach`` -> the attach answers 402 ``card_declined``;
* any other token -> 400 ``resource_missing`` (``No such token``).

`fail_next` makes the next requests answer a 500 (or hang past the client's timeout with
`delay_seconds`), to exercise retries, timeouts and the breaker. Charges are idempotent by
``Idempotency-Key`` as Stripe's: the same key answers the first intent again."""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    form: dict[str, list[str]]


@dataclass
class StripeDouble:
    """The double's state, shared with its request handler."""

    requests: list[Recorded] = field(default_factory=list)
    fail_next: int = 0
    """How many of the next requests fail (500, or a hang of `delay_seconds` when it is set)."""
    delay_seconds: float = 0.0
    intents: dict[str, dict[str, Any]] = field(default_factory=dict)
    """idempotency key -> the answer (status, body) given for it."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handler(self) -> type[BaseHTTPRequestHandler]:
        double = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = parse_qs(self.rfile.read(length).decode(), keep_blank_values=True)
                headers = {name.lower(): value for name, value in self.headers.items()}
                with double.lock:
                    double.requests.append(Recorded("POST", self.path, headers, form))
                    failing = double.fail_next > 0
                    if failing:
                        double.fail_next -= 1
                if failing:
                    if double.delay_seconds:
                        time.sleep(double.delay_seconds)
                        return self._answer(200, {})
                    return self._answer(500, {"error": {"type": "api_error", "message": "Something went wrong."}})
                status, body = double.route(self.path, form, headers)
                self._answer(status, body)

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.send_header("Request-Id", "req_" + uuid.uuid4().hex[:14])
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        return Handler

    def route(self, path: str, form: dict[str, list[str]], headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        one = {name: values[0] for name, values in form.items()}
        if path == "/v1/customers":
            return 200, {"id": "cus_" + uuid.uuid4().hex[:14], "object": "customer", "email": one.get("email")}
        if path == "/v1/payment_methods":
            token = one.get("card[token]", "")
            kinds = {
                "tok_visa": "visa",
                "tok_chargeDeclined": "declined",
                "tok_threeDSecureRequired": "3ds",
                "tok_cardDeclinedOnAttach": "attachdeclined",
            }
            if token not in kinds:
                return 400, _error("invalid_request_error", "resource_missing", f"No such token: '{token}'")
            return 200, _payment_method(f"pm_{kinds[token]}_{uuid.uuid4().hex[:10]}", customer=None)
        if path.startswith("/v1/payment_methods/") and path.endswith("/attach"):
            method_id = path.split("/")[3]
            if method_id.startswith("pm_attachdeclined_"):
                return 402, _error("card_error", "card_declined", "Your card was declined.")
            return 200, _payment_method(method_id, customer=one.get("customer"))
        if path.startswith("/v1/payment_methods/") and path.endswith("/detach"):
            return 200, _payment_method(path.split("/")[3], customer=None)
        if path == "/v1/payment_intents":
            key = headers.get("idempotency-key", "")
            with self.lock:
                if key in self.intents:
                    status, body = self.intents[key]["answer"]
                    return status, body
            answer = self._charge(one)
            with self.lock:
                self.intents[key] = {"answer": answer}
            return answer
        return 404, _error("invalid_request_error", "resource_missing", "Unrecognized request URL.")

    def _charge(self, one: dict[str, str]) -> tuple[int, dict[str, Any]]:
        method = one.get("payment_method", "")
        intent = {
            "id": "pi_" + uuid.uuid4().hex[:24],
            "object": "payment_intent",
            "amount": int(one.get("amount", "0")),
            "currency": one.get("currency"),
            "customer": one.get("customer"),
            "payment_method": method,
            "metadata": {k[len("metadata[") : -1]: v for k, v in one.items() if k.startswith("metadata[")},
            "status": "succeeded",
            "last_payment_error": None,
        }
        if method.startswith("pm_declined_"):
            intent["status"] = "requires_payment_method"
            return 402, _error("card_error", "card_declined", "Your card was declined.", payment_intent=intent)
        if method.startswith("pm_3ds_"):
            intent["status"] = "requires_payment_method"
            return 402, _error(
                "card_error", "authentication_required", "Your card requires authentication.", payment_intent=intent
            )
        return 200, intent

    def of_path(self, path: str) -> list[Recorded]:
        with self.lock:
            return [request for request in self.requests if request.path == path]


def _error(kind: str, code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"type": kind, "code": code, "message": message, **extra}}


def _payment_method(method_id: str, *, customer: str | None) -> dict[str, Any]:
    last4 = {"visa": "4242", "declined": "0002", "3ds": "3184"}.get(method_id.split("_")[1], "0341")
    return {
        "id": method_id,
        "object": "payment_method",
        "type": "card",
        "customer": customer,
        "card": {"brand": "visa", "last4": last4, "exp_month": 12, "exp_year": 2034},
    }
