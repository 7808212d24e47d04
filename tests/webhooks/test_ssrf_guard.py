"""The SSRF guard (adapters/address_guard.py): every spelling of a loopback, private, link-local,
multicast, reserved or unspecified address is refused, by name or by number, IPv4 and IPv6
(IPv4-mapped included); the sender re-checks at connection time (DNS rebinding), follows no
redirect, and lets tests reach 127.0.0.1 only when allowed. Names are resolved by a fake
resolver (there is no network), except `localhost`, which the system resolves from /etc/hosts."""

from __future__ import annotations

import pytest

from adapters.address_guard import AddressGuard, system_resolver
from adapters.webhook_http import HttpxSender
from tests.webhooks.receiver import receiving

NAMES = {
    "hooks.example.com": ["93.184.215.14"],
    "v6.example.com": ["2606:4700:4700::1111"],
    "internal.example.com": ["127.0.0.1"],
    "mixed.example.com": ["93.184.215.14", "10.1.2.3"],
    "metadata.example.com": ["169.254.169.254"],
}


def fake_resolver(host: str, port: int) -> list[str]:
    if host not in NAMES:
        raise OSError(f"unknown host {host}")
    return NAMES[host]


@pytest.fixture
def guard() -> AddressGuard:
    return AddressGuard(resolver=fake_resolver)


@pytest.mark.parametrize(
    ("url", "rule"),
    [
        ("http://127.0.0.2/", "loopback"),
        ("http://[::1]/", "loopback"),
        ("http://0x7f000001/", "loopback"),
        ("http://2130706433/", "loopback"),
        ("http://0177.0.0.1/", "loopback"),
        ("http://127.1/", "loopback"),
        ("http://10.0.0.1/", "private"),
        ("http://192.168.1.10:8080/hook", "private"),
        ("http://172.16.0.1/", "private"),
        ("http://[fc00::1]/", "private"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://[fe80::1]/", "link-local"),
        ("http://[::ffff:127.0.0.1]/", "loopback"),
        ("http://[::ffff:10.0.0.1]/", "private"),
        ("http://[::ffff:169.254.169.254]/", "link-local"),
        ("http://0.0.0.0/", "unspecified"),
        ("http://[::]/", "unspecified"),
        ("http://224.0.0.1/", "multicast"),
        ("http://[ff02::1]/", "multicast"),
        ("http://240.0.0.1/", "reserved"),
        ("http://100.64.0.1/", "not globally routable"),
        ("https://internal.example.com/hook", "loopback"),
        ("https://metadata.example.com/", "link-local"),
        ("https://mixed.example.com/", "private"),  # one bad address is enough
        ("https://nowhere.example.com/", "does not resolve"),
        ("ftp://hooks.example.com/", "only http and https"),
        ("file:///etc/passwd", "only http and https"),
        ("http:///no-host", "no host"),
    ],
)
def test_refused_urls_name_the_rule(guard, url, rule):
    reason = guard.check(url)
    assert reason is not None and rule in reason, reason


def test_localhost_is_refused_through_the_system_resolver():
    assert "loopback" in AddressGuard(resolver=system_resolver).check("http://localhost:8000/hook")


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/charter",
        "http://93.184.215.14:8080/x",
        "https://v6.example.com/",
        "http://[2606:4700::1111]/",
    ],
)
def test_public_addresses_pass(guard, url):
    assert guard.check(url) is None


def test_allow_private_lets_tests_reach_loopback():
    assert AddressGuard(allow_private=True, resolver=fake_resolver).check("http://127.0.0.1:9/hook") is None


def test_the_sender_refuses_loopback_without_connecting():
    with receiving(200) as receiver:
        result = HttpxSender(AddressGuard()).send(receiver.url, headers={}, body=b"{}")
    assert result.status_code is None and "loopback" in result.error
    assert receiver.received == []


def test_the_sender_checks_again_when_it_connects_so_a_rebinding_name_is_refused():
    with receiving(200) as receiver:
        answers = iter([["93.184.215.14"], ["127.0.0.1"]])  # public when checked, loopback a moment later
        guard = AddressGuard(resolver=lambda host, port: next(answers))
        result = HttpxSender(guard, timeout_seconds=2).send(
            f"http://rebind.example.com:{receiver.port}/hook", headers={}, body=b"{}"
        )
    assert result.status_code is None and "loopback" in result.error
    assert receiver.received == []


def test_the_sender_follows_no_redirect_and_reads_a_capped_answer():
    with receiving(302, location="http://127.0.0.1:1/elsewhere", body=b"x" * 200_000) as receiver:
        sender = HttpxSender(AddressGuard(allow_private=True), timeout_seconds=5, max_response_bytes=1024)
        result = sender.send(receiver.url, headers={"content-type": "application/json"}, body=b'{"a":1}')
    assert (result.status_code, result.error) == (302, None)
    assert [request.path for request in receiver.received] == ["/hook"]
    assert receiver.received[0].body == b'{"a":1}'


def test_a_receiver_that_does_not_answer_is_an_outcome_not_an_exception():
    sender = HttpxSender(AddressGuard(allow_private=True), timeout_seconds=2)
    result = sender.send("http://127.0.0.1:1/hook", headers={}, body=b"{}")  # nothing listens on port 1
    assert result.status_code is None and "ConnectError" in result.error


def test_a_refusal_of_a_very_long_host_stays_short(guard):
    reason = guard.check("http://" + "0" * 2000 + "/")
    assert reason is not None and len(reason) < 200
