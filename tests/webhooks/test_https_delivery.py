"""Deliveries to an `https` receiver on 127.0.0.1 (a test CA from trustme): the sender speaks TLS
through the SSRF-guarded transport, verifies the receiver's certificate against the trusted
roots and the URL's host name, and the body arrives signed as Standard Webhooks says."""

from __future__ import annotations

import ssl
from datetime import UTC, datetime

import pytest
import trustme
from standardwebhooks.webhooks import Webhook

from adapters.address_guard import AddressGuard
from adapters.webhook_http import HttpxSender
from services.webhooks import signature_headers
from tests.webhooks.receiver import receiving

SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # base64 of 24 bytes


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(context)
    return context


def signed(body: bytes) -> dict[str, str]:
    return signature_headers(
        event_id="evt_" + "0" * 32, timestamp=datetime.now(UTC), body=body, secrets_in_use=[SECRET]
    )


def test_a_delivery_to_an_https_receiver_is_verified_and_arrives_signed(ca, server_context):
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    sender = HttpxSender(AddressGuard(allow_private=True), timeout_seconds=5, ssl_context=client_context)
    body = b'{"type":"task.created"}'
    try:
        with receiving(204, tls=server_context) as receiver:
            assert receiver.url.startswith("https://localhost:")
            result = sender.send(receiver.url, headers=signed(body), body=body)
    finally:
        sender.close()

    assert (result.status_code, result.error) == (204, None)
    [received] = receiver.received
    assert received.body == body
    Webhook(SECRET).verify(received.body, received.headers)  # raises if the signature is wrong


def test_a_receiver_whose_certificate_is_not_trusted_gets_nothing(server_context):
    sender = HttpxSender(AddressGuard(allow_private=True), timeout_seconds=5)  # certifi's roots only
    body = b"{}"
    try:
        with receiving(200, tls=server_context) as receiver:
            result = sender.send(receiver.url, headers=signed(body), body=body)
    finally:
        sender.close()

    assert result.status_code is None
    assert "CERTIFICATE_VERIFY_FAILED" in (result.error or "")
    assert receiver.received == []


def test_a_certificate_for_another_name_is_refused(ca):
    wrong_name = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("receiver.example").configure_cert(wrong_name)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    sender = HttpxSender(AddressGuard(allow_private=True), timeout_seconds=5, ssl_context=client_context)
    try:
        with receiving(200, tls=wrong_name) as receiver:
            result = sender.send(receiver.url, headers=signed(b"{}"), body=b"{}")
    finally:
        sender.close()

    assert result.status_code is None
    assert "CERTIFICATE_VERIFY_FAILED" in (result.error or "")
    assert receiver.received == []
