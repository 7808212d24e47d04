"""Connexion's per-operation work is done once (`server.integration.operations`; issue 13):
every operation's view is prepared at start-up, a request builds no decorator chain and
inspects no signature, and parameters still arrive converted as the contract says."""

from __future__ import annotations

import inspect

import connexion.utils
import pytest

from server.contract import HTTP_METHODS, bundle
from server.integration.operations import PreparedOperation
from tests.helpers import bearer


def test_every_operation_is_served_by_a_prepared_view(app):
    operations = {
        operation["operationId"]
        for item in bundle()["paths"].values()
        for method, operation in item.items()
        if method in HTTP_METHODS
    }
    views = app.app.view_functions
    prepared = {
        endpoint.rsplit(".", 1)[-1]
        for endpoint, view in views.items()
        if isinstance(inspect.unwrap(view, stop=lambda v: isinstance(v, PreparedOperation)), PreparedOperation)
    }
    assert operations <= prepared


@pytest.fixture
def signature_inspections(monkeypatch):
    calls = []
    original = inspect.signature

    def counting(function, *args, **kwargs):
        calls.append(getattr(function, "__name__", function))
        return original(function, *args, **kwargs)

    monkeypatch.setattr(inspect, "signature", counting)
    monkeypatch.setattr(connexion.utils.inspect, "signature", counting)
    return calls


def test_a_request_inspects_no_signature_and_still_gets_typed_parameters(client, account, signature_inspections):
    client.post(account.tasks_path, json={"title": "one"}, headers=bearer(account.access_token))
    client.post(account.tasks_path, json={"title": "two"}, headers=bearer(account.access_token))
    signature_inspections.clear()
    answer = client.get(
        account.tasks_path, params={"limit": "1", "completed": "false"}, headers=bearer(account.access_token)
    )
    assert answer.status_code == 200
    assert len(answer.json()["items"]) == 1  # `limit` arrived as the integer 1, `completed` as False
    assert answer.json()["next_cursor"]
    assert signature_inspections == []
