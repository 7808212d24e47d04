"""Quotas through the ASGI app (every answer checked against the contract by the `client`
fixture): `GET /api/v1/billing/usage`, and each metered operation answering 402
`/problems/quota-exceeded` with `meter`, `limit`, `used` and `reset_at` and doing nothing —
chatbots, messages (owners, visitors of a public chatbot, the chat completions, JSON and
streamed), documents and stored bytes, API keys, crawls (refused at the start; stopped with a
recorded reason when a running crawl reaches the quota) — and the `usage` export section."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select

from persistence.chatbots.models import Chatbot
from persistence.conversations.models import Message
from persistence.documents.models import Document
from services import jobs as job_services
from services.subscriptions import current_plan
from tests.crawling.website import serving
from tests.helpers import assert_problem
from tests.usage.conftest import use

USAGE = "/api/v1/billing/usage"
CHATBOTS = "/api/v1/chatbots"
QUOTA = "/problems/quota-exceeded"
MIB = 1024 * 1024


def quota_problem(response, meter: str, limit: int, used: int, resets: bool) -> dict:
    problem = assert_problem(response, 402, QUOTA)
    assert (problem["meter"], problem["limit"], problem["used"]) == (meter, limit, used)
    assert "reset_at" in problem and (problem["reset_at"] is not None) == resets
    return problem


def meters(client, account) -> dict[str, dict]:
    response = client.get(USAGE, headers=account.headers)
    assert response.status_code == 200, response.text
    return {item["meter"]: item for item in response.json()["meters"]}


def active_chatbot(client, account, **settings) -> dict:
    created = client.post(CHATBOTS, json={"name": "Shop", **settings}, headers=account.headers)
    assert created.status_code == 201, created.text
    changed = client.patch(f"{CHATBOTS}/{created.json()['id']}", json={"status": "active"}, headers=account.headers)
    assert changed.status_code == 200, changed.text
    return changed.json()


def count(database, model, **where) -> int:
    conditions = [getattr(model, name) == value for name, value in where.items()]
    return database.read(lambda db: db.scalar(select(func.count()).select_from(model).where(*conditions)))


def test_a_new_account_is_on_the_free_plan_with_every_meter(client, account, new_uow, clock):
    body = client.get(USAGE, headers=account.headers).json()
    assert body["plan_code"] == "free" and body["period_start"] < body["period_end"]
    found = {item["meter"]: item for item in body["meters"]}
    assert {name: (item["used"], item["limit"], item["remaining"]) for name, item in found.items()} == {
        "api_keys": (0, 2, 2),
        "chatbots": (0, 2, 2),
        "messages": (0, 100, 100),
        "documents": (0, 10, 10),
        "storage_bytes": (0, 50 * MIB, 50 * MIB),
        "crawled_pages": (0, 100, 100),
    }
    assert {name for name, item in found.items() if item["reset_at"] is None} == {
        "api_keys",
        "chatbots",
        "documents",
        "storage_bytes",
    }
    assert found["messages"]["reset_at"] == found["crawled_pages"]["reset_at"] == body["period_end"]
    assert (found["storage_bytes"]["unit"], found["messages"]["periodic"]) == ("bytes", True)
    assert client.get(USAGE).status_code == 401
    assert_problem(client.get(USAGE, params={"meter": "messages"}, headers=account.headers), 400)
    key = client.post("/api/v1/api-keys", json={"name": "script", "scopes": ["chat"]}, headers=account.headers)
    by_key = client.get(USAGE, headers={"Authorization": f"Bearer {key.json()['key']}"})
    assert_problem(by_key, 403, "/problems/insufficient-scope")  # usage is account data: access tokens only


def test_the_third_chatbot_is_402_creates_nothing_and_a_deletion_frees_a_place(client, account, database):
    first = client.post(CHATBOTS, json={"name": "One"}, headers=account.headers).json()
    client.post(CHATBOTS, json={"name": "Two"}, headers=account.headers)
    refused = client.post(CHATBOTS, json={"name": "Three"}, headers=account.headers)
    problem = quota_problem(refused, "chatbots", 2, 2, resets=False)
    assert "Free" in problem["detail"]
    assert count(database, Chatbot, owner_id=uuid.UUID(account.id)) == 2
    assert meters(client, account)["chatbots"]["remaining"] == 0

    deleted = client.delete(f"{CHATBOTS}/{first['id']}", headers=account.headers)
    assert deleted.status_code == 202, deleted.text
    assert meters(client, account)["chatbots"]["used"] == 1
    assert client.post(CHATBOTS, json={"name": "Three"}, headers=account.headers).status_code == 201


def test_messages_over_quota_are_402_before_any_answer_json_streamed_and_stateless(client, account, database):
    chatbot = active_chatbot(client, account)
    conversation = client.post(f"{CHATBOTS}/{chatbot['id']}/conversations", json={}, headers=account.headers).json()
    path = f"/api/v1/conversations/{conversation['id']}/messages"
    assert client.post(path, json={"content": "Hello?"}, headers=account.headers).status_code == 201
    use(client.client.app, account.id, "messages", 99)

    refused = client.post(path, json={"content": "One more?"}, headers=account.headers)
    quota_problem(refused, "messages", 100, 100, resets=True)
    streamed = client.post(
        path, json={"content": "One more?"}, headers={**account.headers, "Accept": "text/event-stream"}
    )
    assert streamed.headers["content-type"].startswith("application/problem+json")  # before the stream starts
    quota_problem(streamed, "messages", 100, 100, resets=True)
    completion = client.post(
        f"{CHATBOTS}/{chatbot['id']}/chat/completions",
        json={"messages": [{"role": "user", "content": "One more?"}]},
        headers=account.headers,
    )
    quota_problem(completion, "messages", 100, 100, resets=True)
    assert count(database, Message, conversation_id=uuid.UUID(conversation["id"])) == 2  # the first question and answer


def test_the_chat_completions_count_against_the_chatbots_owner(client, account):
    chatbot = active_chatbot(client, account)
    answered = client.post(
        f"{CHATBOTS}/{chatbot['id']}/chat/completions",
        json={"messages": [{"role": "user", "content": "Hello?"}]},
        headers=account.headers,
    )
    assert answered.status_code == 200, answered.text
    assert meters(client, account)["messages"]["used"] == 1


def test_a_visitors_message_counts_against_the_owner_and_is_402_over_it(client, account, database):
    chatbot = active_chatbot(client, account, visibility="public")
    started = client.post(f"/api/v1/public/chatbots/{chatbot['public_id']}/conversations")
    assert started.status_code == 201, started.text
    visitor = {"Authorization": f"Bearer {started.json()['visitor_token']}"}
    path = f"/api/v1/public/conversations/{started.json()['id']}/messages"
    assert client.post(path, json={"content": "Hello?"}, headers=visitor).status_code == 201
    assert meters(client, account)["messages"]["used"] == 1
    use(client.client.app, account.id, "messages", 99)
    quota_problem(client.post(path, json={"content": "Again?"}, headers=visitor), "messages", 100, 100, resets=True)


def test_uploads_over_the_documents_or_the_storage_quota_are_402_and_keep_nothing(client, account, database, app):
    chatbot = client.post(CHATBOTS, json={"name": "Docs"}, headers=account.headers).json()["id"]
    path = f"{CHATBOTS}/{chatbot}/documents"

    def upload(text: bytes):
        return client.post(path, files={"file": ("notes.txt", text, "text/plain")}, headers=account.headers)

    first = upload(b"Returns are accepted within 30 days.\n")
    assert first.status_code == 202, first.text
    size = first.json()["document"]["size_bytes"]
    assert (meters(client, account)["documents"]["used"], meters(client, account)["storage_bytes"]["used"]) == (1, size)

    use(app, account.id, "storage_bytes", 50 * MIB - size - 10)
    quota_problem(upload(b"x" * 11 + b"\n"), "storage_bytes", 50 * MIB, 50 * MIB - 10, resets=False)
    use(app, account.id, "documents", 9)
    quota_problem(upload(b"short\n"), "documents", 10, 10, resets=False)
    assert count(database, Document, chatbot_id=uuid.UUID(chatbot)) == 1

    deleted = client.delete(f"{path}/{first.json()['document']['id']}", headers=account.headers)
    assert deleted.status_code == 204, deleted.text
    after = meters(client, account)
    assert (after["documents"]["used"], after["storage_bytes"]["used"]) == (9, 50 * MIB - size - 10)


def test_the_third_api_key_is_402_and_a_revoked_one_frees_its_place(client, account):
    made = [
        client.post("/api/v1/api-keys", json={"name": f"k{n}", "scopes": ["chat"]}, headers=account.headers)
        for n in range(3)
    ]
    assert [response.status_code for response in made] == [201, 201, 402]
    quota_problem(made[2], "api_keys", 2, 2, resets=False)
    revoked = client.delete(f"/api/v1/api-keys/{made[0].json()['id']}", headers=account.headers)
    assert revoked.status_code == 204, revoked.text
    again = client.post("/api/v1/api-keys", json={"name": "k3", "scopes": ["chat"]}, headers=account.headers)
    assert again.status_code == 201, again.text


def test_a_crawl_that_reaches_the_quota_stops_saying_so_and_a_new_one_is_402(client, account, crawler, run_job, app):
    chatbot = client.post(CHATBOTS, json={"name": "Docs"}, headers=account.headers).json()["id"]
    use(app, account.id, "crawled_pages", 97)
    with serving() as site:
        added = client.post(
            f"{CHATBOTS}/{chatbot}/websites", json={"start_url": site.url + "/"}, headers=account.headers
        )
        assert added.status_code == 202, added.text
        report = run_job(added.json()["job"]["id"])
        fetched = [request.path for request in site.requests if request.path not in ("/robots.txt",)]
    assert report.outcome == job_services.Outcome.SUCCEEDED, report
    website = client.get(
        f"{CHATBOTS}/{chatbot}/websites/{added.json()['website']['id']}", headers=account.headers
    ).json()
    assert (website["status"], website["stopped"]) == ("completed", "quota")
    assert "quota of crawled pages" in website["error"]
    assert meters(client, account)["crawled_pages"]["used"] == 100
    assert len([path for path in fetched if not path.startswith("/sitemap")]) == 3

    recrawl = client.post(f"{CHATBOTS}/{chatbot}/websites/{website['id']}/recrawl", headers=account.headers)
    quota_problem(recrawl, "crawled_pages", 100, 100, resets=True)
    another = client.post(
        f"{CHATBOTS}/{chatbot}/websites", json={"start_url": "http://127.0.0.1:9/"}, headers=account.headers
    )
    quota_problem(another, "crawled_pages", 100, 100, resets=True)
    notified = client.get("/api/v1/users/me/notifications", headers=account.headers).json()["items"]
    assert [n["title"] for n in notified if n["type"] == "usage_threshold"] == [
        "You have used 100% of your crawled_pages quota",  # the crawl's third page
        "You have used 80% of your crawled_pages quota",  # the 97 recorded first
    ]


def test_the_export_holds_the_usage_counters(client, account, new_uow, clock):
    client.post(CHATBOTS, json={"name": "One"}, headers=account.headers)
    export = client.get("/api/v1/users/me/export", headers=account.headers)
    assert export.status_code == 200, export.text
    counters = {item["meter"]: item for item in export.json()["usage"]}
    assert counters["chatbots"]["used"] == 1 and counters["chatbots"]["period_start"] == "1970-01-01T00:00:00.000000Z"
    with new_uow() as uow:
        assert current_plan(uow, owner_id=uuid.UUID(account.id), clock=clock).plan.code == "free"


@pytest.mark.parametrize("plan", ["pro_monthly", "business_yearly"])
def test_a_bigger_plan_shows_its_limits(client, account, app, plan):
    from tests.helpers import on_plan

    on_plan(app, account.id, plan)
    found = meters(client, account)
    assert found["chatbots"]["limit"] == {"pro_monthly": 10, "business_yearly": 50}[plan]
    assert found["messages"]["limit"] == {"pro_monthly": 5_000, "business_yearly": 600_000}[plan]


def test_the_threshold_reaches_a_subscribed_webhook_and_the_notifications(client, account, app, monkeypatch):
    from tests.webhooks.test_ssrf_guard import fake_resolver

    monkeypatch.setattr(app.app.extensions["charter"].webhooks.guard, "resolver", fake_resolver)
    endpoint = client.post(
        "/api/v1/webhook-endpoints",
        json={"url": "https://hooks.example.com/charter", "events": ["usage.threshold_reached"]},
        headers=account.headers,
    )
    assert endpoint.status_code == 201, endpoint.text
    client.post(CHATBOTS, json={"name": "One"}, headers=account.headers)
    client.post(CHATBOTS, json={"name": "Two"}, headers=account.headers)  # 2 of 2: 100 %

    log = client.get(f"/api/v1/webhook-endpoints/{endpoint.json()['id']}/deliveries", headers=account.headers).json()
    [delivery] = log["items"]
    assert delivery["event_type"] == "usage.threshold_reached"
    assert delivery["payload"]["data"] == {
        "meter": "chatbots",
        "unit": "chatbots",
        "threshold": 100,
        "used": 2,
        "limit": 2,
        "plan_code": "free",
        "period_start": None,
        "reset_at": None,
    }
    notified = client.get("/api/v1/users/me/notifications", headers=account.headers).json()["items"]
    assert [(n["type"], n["title"]) for n in notified] == [
        ("usage_threshold", "You have used 100% of your chatbots quota")
    ]
