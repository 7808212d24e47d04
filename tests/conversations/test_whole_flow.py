"""Issue 16's proof end to end, on SQLite and PostgreSQL (the `served` fixture: uvicorn on
127.0.0.1): a website the test serves on loopback is crawled by the real crawl job and a
Markdown document is uploaded and processed by the real documents job — no passage is indexed
by hand — and the chatbot then answers from both, with citations naming the crawled page's URL
and the document, in every way a client may ask: the JSON answer, the streamed answer
(httpx-sse), the OpenAI-compatible endpoint through the unmodified `openai` package and an API
key, and a visitor of the public chatbot (with a visitor token, no account)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from typing import Any

import httpx_sse
import openai
import pytest

from server.worker import make_crawler_config
from services import jobs as job_services
from services.clock import FakeCrawlClock
from services.conversations import markers
from tests.helpers import register_and_login, run_job
from tests.websites.conftest import crawler_settings
from tests.websites.site import changing_site

REFUNDS = "Refunds reach your card within fourteen days of the parcel arriving back at the warehouse."
PALLETS = "Pallets ship by freight forwarder and arrive within nine working days across the continent."
SITE = {
    "/": ("Help centre", "The help centre answers questions about orders and returns.", ["/returns"]),
    "/returns": ("Returns", f"Returns are free for thirty days. {REFUNDS}", ["/"]),
}
MANUAL = f"# Freight manual\n\n## Pallets\n\n{PALLETS} Each pallet carries a tracking label.\n".encode()


@dataclasses.dataclass(frozen=True)
class Chatbot:
    """An active chatbot whose knowledge is a crawled site and an uploaded document."""

    id: str
    headers: dict[str, str]
    site_url: str
    document_id: str
    public_id: str


def _run(served: Any, job_id: str) -> None:
    """Run a queued job now, as a worker does, with the served app's engine."""
    report = run_job(served.app, job_id, "whole-flow")
    assert report.outcome == job_services.Outcome.SUCCEEDED, report


@pytest.fixture
def chatbot(served: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Chatbot]:
    crawler = make_crawler_config(crawler_settings(served.state.settings))
    crawler.crawl_clock = FakeCrawlClock()
    monkeypatch.setitem(served.state.jobs.context, "crawler", crawler)
    with served.client() as http, changing_site(SITE) as site:
        account = register_and_login(http)
        made = http.post("/api/v1/chatbots", json={"name": "Shop"}, headers=account.headers)
        assert made.status_code == 201, made.text
        chatbot_id = made.json()["id"]
        base = f"/api/v1/chatbots/{chatbot_id}"
        website = http.post(f"{base}/websites", json={"start_url": site.url + "/"}, headers=account.headers)
        assert website.status_code == 202, website.text
        _run(served, website.json()["job"]["id"])
        document = http.post(
            f"{base}/documents",
            files={"file": ("freight.md", MANUAL, "text/markdown")},
            data={"title": "Freight manual"},
            headers=account.headers,
        )
        assert document.status_code == 202, document.text
        _run(served, document.json()["job"]["id"])
        knowledge = http.get(base, headers=account.headers).json()["knowledge"]
        assert (knowledge["status"], knowledge["pages"], knowledge["documents"]) == ("ready", 2, 1), knowledge
        active = http.patch(base, json={"status": "active", "visibility": "public"}, headers=account.headers)
        assert active.status_code == 200, active.text
        yield Chatbot(
            chatbot_id, account.headers, site.url, document.json()["document"]["id"], active.json()["public_id"]
        )


def _cited(content: str, citations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The citations the answer's ``[n]`` markers name (each must exist)."""
    by_number = {citation["number"]: citation for citation in citations}
    cited = markers(content)
    assert cited and set(cited) <= set(by_number), (content, citations)
    return [by_number[number] for number in cited]


def _assert_refunds_answer(content: str, citations: list[dict[str, Any]], chatbot: Chatbot) -> None:
    """The answer says what the crawled page says and cites that page by its URL."""
    assert "fourteen days" in content, content
    sources = [citation["source"] for citation in _cited(content, citations)]
    assert any(source["url"] == chatbot.site_url + "/returns" and source["title"] == "Returns" for source in sources)
    assert all(source["type"] in ("web_page", "document") for source in sources)


def test_a_crawled_page_and_an_uploaded_document_answer_as_json_and_as_a_stream(served, chatbot) -> None:
    with served.client() as http:
        started = http.post(f"/api/v1/chatbots/{chatbot.id}/conversations", json={}, headers=chatbot.headers)
        assert started.status_code == 201, started.text
        path = f"/api/v1/conversations/{started.json()['id']}/messages"

        answer = http.post(path, json={"content": "How long do refunds take?"}, headers=chatbot.headers)
        assert answer.status_code == 201, answer.text
        _assert_refunds_answer(answer.json()["content"], answer.json()["citations"], chatbot)

        events: dict[str, Any] = {}
        deltas = []
        with httpx_sse.connect_sse(
            http,
            "POST",
            path,
            json={"content": "How do pallets ship?"},
            headers={**chatbot.headers, "Accept": "text/event-stream"},
        ) as source:
            for event in source.iter_sse():
                if event.event == "delta":
                    deltas.append(json.loads(event.data)["text"])
                else:
                    events[event.event] = json.loads(event.data)
        end = events["message_end"]
        assert "".join(deltas) == end["content"]
        assert "nine working days" in end["content"], end
        document_sources = [citation["source"] for citation in _cited(end["content"], end["citations"])]
        assert {"type": "document", "id": chatbot.document_id} in [
            {"type": source["type"], "id": source["id"]} for source in document_sources
        ]
        assert any(source["heading"] == "Pallets" for source in document_sources), document_sources

        history = http.get(path, headers=chatbot.headers).json()["items"]
    assert [message["role"] for message in history] == ["user", "assistant", "user", "assistant"]
    assert history[3]["citations"] == end["citations"]  # the stored message keeps its citations


def test_the_openai_package_gets_the_cited_answer_with_an_api_key(served, chatbot) -> None:
    with served.client() as http:
        made = http.post("/api/v1/api-keys", json={"name": "SDK", "scopes": ["chat"]}, headers=chatbot.headers)
        assert made.status_code == 201, made.text
    base_url = f"{served.url}/api/v1/chatbots/{chatbot.id}"
    with openai.OpenAI(base_url=base_url, api_key=made.json()["key"], max_retries=0, timeout=30) as client:
        completion = client.chat.completions.create(
            model="shop", messages=[{"role": "user", "content": "How long do refunds take?"}]
        )
        streamed = client.chat.completions.create(
            model="shop", messages=[{"role": "user", "content": "How long do refunds take?"}], stream=True
        )
        chunks = list(streamed)
    content = completion.choices[0].message.content or ""
    _assert_refunds_answer(content, (completion.model_extra or {})["citations"], chatbot)
    streamed_content = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert streamed_content == content
    last_citations = [chunk.model_extra["citations"] for chunk in chunks if (chunk.model_extra or {}).get("citations")]
    assert last_citations and last_citations[-1] == completion.model_extra["citations"]


def test_a_visitor_of_the_public_chatbot_gets_the_cited_answer_without_an_account_as_json_and_as_a_stream(
    served, chatbot
) -> None:
    with served.client() as visitor:
        started = visitor.post(f"/api/v1/public/chatbots/{chatbot.public_id}/conversations", json={})
        assert started.status_code == 201, started.text
        path = f"/api/v1/public/conversations/{started.json()['id']}/messages"
        token = {"Authorization": f"Bearer {started.json()['visitor_token']}"}
        answer = visitor.post(path, json={"content": "How long do refunds take?"}, headers=token)
        assert answer.status_code == 201, answer.text
        _assert_refunds_answer(answer.json()["content"], answer.json()["citations"], chatbot)
        names, end = [], {}
        with httpx_sse.connect_sse(
            visitor,
            "POST",
            path,
            json={"content": "How long do refunds take?"},
            headers={**token, "Accept": "text/event-stream"},
        ) as source:
            for event in source.iter_sse():
                names.append(event.event)
                end = json.loads(event.data) if event.event == "message_end" else end
        elsewhere = visitor.get(f"/api/v1/chatbots/{chatbot.id}", headers=token)
    assert names[:2] == ["message_start", "citations"] and names[-1] == "message_end", names
    assert set(names[2:-1]) == {"delta"}, names
    _assert_refunds_answer(end["content"], end["citations"], chatbot)
    assert elsewhere.status_code == 401, elsewhere.text  # the visitor token opens its conversation only


def test_no_answer_is_given_to_whoever_may_not_ask(served, chatbot) -> None:
    with served.client() as http:
        other = register_and_login(http)
        refused = http.post(f"/api/v1/chatbots/{chatbot.id}/conversations", json={}, headers=other.headers)
        made = http.post("/api/v1/api-keys", json={"name": "tasks", "scopes": ["tasks:read"]}, headers=chatbot.headers)
        keyed = http.post(
            f"/api/v1/chatbots/{chatbot.id}/chat/completions",
            json={"messages": [{"role": "user", "content": "How long do refunds take?"}]},
            headers={"Authorization": f"Bearer {made.json()['key']}"},
        )
    assert refused.status_code == 404, refused.text
    assert keyed.status_code == 403, keyed.text
