"""The webhook operations through the ASGI app (every answer checked against the contract by
the `client` fixture): create answers the secret once, list/get/patch/delete, rotation, the
delivery log and redelivery, the SSRF refusal as a 422 problem that creates nothing, another
user's endpoint as 404, the export section, and the endpoints deleted with the account."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select

from persistence.webhooks.models import WebhookDelivery, WebhookEndpoint
from tests.helpers import create_task
from tests.webhooks.test_ssrf_guard import fake_resolver

BASE = "/api/v1/webhook-endpoints"


@pytest.fixture(autouse=True)
def no_network_names(app, monkeypatch):
    """The app's SSRF guard resolves names with the fake resolver (there is no network)."""
    monkeypatch.setattr(app.app.extensions["charter"].webhooks.guard, "resolver", fake_resolver)


def create(client, account, url="https://hooks.example.com/charter", events=("task.created",), **extra):
    response = client.post(BASE, json={"url": url, "events": list(events), **extra}, headers=account.headers)
    assert response.status_code == 201, response.text
    return response


def test_an_endpoint_is_created_with_its_secret_once_then_read_changed_and_deleted(client, account):
    response = create(client, account, events=["task.created", "task.completed"], description="CRM sync")
    created = response.json()
    assert created["secret"].startswith("whsec_")
    assert response.headers["Location"] == f"{BASE}/{created['id']}"
    assert response.headers["Cache-Control"] == "no-store"
    assert (created["events"], created["enabled"], created["description"]) == (
        ["task.completed", "task.created"],
        True,
        "CRM sync",
    )

    read = client.get(f"{BASE}/{created['id']}", headers=account.headers).json()
    assert "secret" not in read
    assert read["url"] == "https://hooks.example.com/charter"

    changed = client.patch(
        f"{BASE}/{created['id']}",
        json={"events": ["task.deleted"], "enabled": False, "description": None},
        headers=account.headers,
    )
    assert changed.status_code == 200, changed.text
    assert (changed.json()["events"], changed.json()["enabled"], changed.json()["description"]) == (
        ["task.deleted"],
        False,
        None,
    )
    assert changed.json()["disabled_reason"] == "Disabled by its owner."

    assert client.delete(f"{BASE}/{created['id']}", headers=account.headers).status_code == 204
    assert client.get(f"{BASE}/{created['id']}", headers=account.headers).status_code == 404


def test_the_list_is_paginated_newest_first(client, account):
    ids = [create(client, account).json()["id"] for _ in range(3)]
    first = client.get(BASE, params={"limit": 2}, headers=account.headers).json()
    second = client.get(BASE, params={"limit": 2, "cursor": first["next_cursor"]}, headers=account.headers).json()
    assert [item["id"] for item in first["items"] + second["items"]] == ids[::-1]
    assert second["next_cursor"] is None
    assert client.get(BASE, params={"cursor": "bm9wZQ"}, headers=account.headers).status_code == 400


@pytest.mark.parametrize(
    ("url", "rule"),
    [
        ("http://127.0.0.1:8000/hook", "loopback"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://[::ffff:127.0.0.1]/", "loopback"),
        ("http://0x7f000001/", "loopback"),
        ("https://internal.example.com/hook", "loopback"),
        ("https://nowhere.example.com/hook", "does not resolve"),
    ],
)
def test_a_url_the_ssrf_guard_refuses_is_a_422_naming_the_rule_and_creates_nothing(client, account, url, rule):
    response = client.post(BASE, json={"url": url, "events": ["task.created"]}, headers=account.headers)
    assert response.status_code == 422
    problem = response.json()
    assert problem["type"] == "/problems/unsafe-webhook-url"
    assert rule in problem["detail"]
    assert problem["errors"][0]["pointer"] == "/url"
    assert client.get(BASE, headers=account.headers).json()["items"] == []


def test_another_users_endpoint_is_404_everywhere(client, account, other_account):
    endpoint_id = create(client, account).json()["id"]
    delivery_id = uuid.uuid4()
    for method, path, body in [
        ("get", f"{BASE}/{endpoint_id}", None),
        ("patch", f"{BASE}/{endpoint_id}", {"enabled": False}),
        ("delete", f"{BASE}/{endpoint_id}", None),
        ("post", f"{BASE}/{endpoint_id}/rotate-secret", None),
        ("get", f"{BASE}/{endpoint_id}/deliveries", None),
        ("post", f"{BASE}/{endpoint_id}/deliveries/{delivery_id}/redeliver", None),
    ]:
        kwargs = {"headers": other_account.headers, **({"json": body} if body is not None else {})}
        response = client.request(method.upper(), path, **kwargs)
        assert response.status_code == 404, (method, path, response.text)
        assert response.json()["type"] == "/problems/not-found"
    assert client.get(f"{BASE}/{endpoint_id}", headers=account.headers).json()["enabled"] is True


def test_rotating_answers_a_new_secret_and_keeps_the_old_one_signing_for_a_day(client, account):
    created = create(client, account).json()
    rotated = client.post(f"{BASE}/{created['id']}/rotate-secret", headers=account.headers)
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["secret"] != created["secret"]
    assert rotated.json()["previous_secret_expires_at"] is not None
    assert rotated.headers["Cache-Control"] == "no-store"


def test_a_task_event_is_in_the_delivery_log_and_can_be_redelivered(client, account):
    endpoint_id = create(client, account, events=["task.created", "task.deleted"]).json()["id"]
    task = create_task(client, account, title="Ship the webhooks")
    assert client.delete(f"{account.tasks_path}/{task['id']}", headers=account.headers).status_code == 204

    log = client.get(f"{BASE}/{endpoint_id}/deliveries", headers=account.headers).json()
    assert [item["event_type"] for item in log["items"]] == ["task.deleted", "task.created"]
    created_event = log["items"][1]
    assert created_event["status"] == "pending" and created_event["attempts"] == 0
    assert created_event["payload"]["data"]["task"]["title"] == "Ship the webhooks"
    assert log["items"][0]["payload"]["data"] == {"task_id": task["id"]}

    again = client.post(f"{BASE}/{endpoint_id}/deliveries/{created_event['id']}/redeliver", headers=account.headers)
    assert again.status_code == 202, again.text
    job = again.json()
    assert again.headers["Location"] == f"/api/v1/jobs/{job['id']}"
    assert (job["kind"], job["status"], job["subject"]["type"]) == ("webhooks.deliver", "queued", "webhook_delivery")
    assert client.get(f"/api/v1/jobs/{job['id']}", headers=account.headers).status_code == 200
    log = client.get(f"{BASE}/{endpoint_id}/deliveries", headers=account.headers).json()
    assert len(log["items"]) == 3
    assert log["items"][0]["event_id"] == created_event["event_id"]  # the same webhook-id
    assert log["items"][0]["job_id"] == job["id"]

    client.patch(f"{BASE}/{endpoint_id}", json={"enabled": False}, headers=account.headers)
    refused = client.post(f"{BASE}/{endpoint_id}/deliveries/{created_event['id']}/redeliver", headers=account.headers)
    assert refused.status_code == 409


def test_the_export_lists_endpoints_without_secrets_and_deleting_the_account_deletes_them(client, account, database):
    created = create(client, account).json()
    create_task(client, account)
    export = client.get("/api/v1/users/me/export", headers=account.headers).json()
    assert [endpoint["id"] for endpoint in export["webhook_endpoints"]] == [created["id"]]
    assert created["secret"] not in str(export)

    response = client.request(
        "DELETE", "/api/v1/users/me", json={"password": account.password}, headers=account.headers
    )
    assert response.status_code == 204, response.text
    owner = uuid.UUID(account.id)
    endpoints = select(func.count()).select_from(WebhookEndpoint).where(WebhookEndpoint.owner_id == owner)
    deliveries = (
        select(func.count()).select_from(WebhookDelivery).where(WebhookDelivery.endpoint_id == uuid.UUID(created["id"]))
    )
    assert database.read(lambda db: (db.scalar(endpoints), db.scalar(deliveries))) == (0, 0)
