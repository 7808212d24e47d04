"""The websites operations through the ASGI app (every answer checked against the contract by
the `client` fixture), with the crawl job run as a worker runs it, against small websites the
tests serve on 127.0.0.1 (nothing else is contacted): which pages are indexed and why the
others are not, search finding a crawled page with its URL, the chatbot's knowledge summary,
pagination of the pages, recrawls that ask conditionally and keep unchanged pages, delete."""

from __future__ import annotations

from adapters.web_fetch import charter_version
from services import jobs as job_services
from tests.crawling.website import serving
from tests.helpers import NOT_FOUND, VALIDATION, assert_problem, collect_pages
from tests.websites.conftest import INFO_URL
from tests.websites.site import changing_site

CHATBOTS = "/api/v1/chatbots"
CRAWL_RUNNING = "/problems/website-crawl-running"


def new_chatbot(client, account) -> str:
    response = client.post(CHATBOTS, json={"name": "Docs assistant"}, headers=account.headers)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def websites_path(chatbot_id: str) -> str:
    return f"{CHATBOTS}/{chatbot_id}/websites"


def add_website(client, account, chatbot_id: str, start_url: str, **settings) -> dict:
    response = client.post(
        websites_path(chatbot_id), json={"start_url": start_url, **settings}, headers=account.headers
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert response.headers["Location"] == f"/api/v1/jobs/{body['job']['id']}"
    assert body["job"]["kind"] == "websites.crawl" and body["job"]["status"] == "queued"
    assert body["job"]["subject"] == {"type": "website", "id": body["website"]["id"]}
    assert body["website"]["job_id"] == body["job"]["id"]
    return body


def outcome(client, account, chatbot_id: str, website_id: str, base: str, **params) -> dict[str, tuple]:
    pages = collect_pages(
        client, f"{websites_path(chatbot_id)}/{website_id}/pages", headers=account.headers, params=params
    )
    return {page["url"].removeprefix(base): (page["status"], page["skip_reason"]) for page in pages}


def test_a_crawl_indexes_exactly_the_pages_it_should_and_says_why_not_for_the_others(client, account, crawler, run_job):
    chatbot_id = new_chatbot(client, account)
    with serving() as site:
        added = add_website(client, account, chatbot_id, site.url + "/")
        website = added["website"]
        assert (website["status"], website["max_pages"], website["max_depth"], website["use_sitemap"]) == (
            "queued",
            100,
            3,
            True,
        )
        summary = client.get(f"{CHATBOTS}/{chatbot_id}", headers=account.headers).json()["knowledge"]
        assert (summary["sources"], summary["status"]) == (1, "indexing")

        report = run_job(added["job"]["id"])
        agents = {request.headers.get("user-agent") for request in site.requests}
    assert report.outcome == job_services.Outcome.SUCCEEDED, report

    base = site.url
    path = f"{websites_path(chatbot_id)}/{website['id']}"
    got = client.get(path, headers=account.headers).json()
    assert (got["status"], got["stopped"], got["error"]) == ("completed", "done", None)
    assert (got["pages_found"], got["pages_indexed"], got["pages_skipped"], got["pages_failed"]) == (15, 6, 7, 2)
    assert got["robots_blocked"] == [base + "/private/secret"]
    assert got["started_at"] and got["finished_at"]
    assert agents == {f"CharterBot/{charter_version()} (+{INFO_URL})"}

    # every page, through the cursor (5 a page): what it became and why
    assert outcome(client, account, chatbot_id, website["id"], base, limit=5) == {
        "/": ("indexed", None),
        "/orphan": ("indexed", None),
        "/about": ("indexed", None),
        "/docs/": ("indexed", None),
        "/docs/setup": ("indexed", None),
        "/manual.pdf": ("indexed", None),
        "/private/secret": ("skipped", "robots"),
        "http://elsewhere.invalid/page": ("skipped", "other_host"),
        "/away": ("skipped", "other_host"),
        "/hidden": ("skipped", "noindex"),
        "/huge": ("skipped", "size"),
        "/print": ("skipped", "duplicate"),
        "/data.zip": ("skipped", "type"),
        "/loop-a": ("failed", None),
        "/slow": ("failed", None),
    }
    indexed = outcome(client, account, chatbot_id, website["id"], base, status="indexed")
    assert set(indexed) == {"/", "/orphan", "/about", "/docs/", "/docs/setup", "/manual.pdf"}
    pages = client.get(f"{path}/pages", params={"status": "failed"}, headers=account.headers).json()["items"]
    assert {page["url"].removeprefix(base): page["detail"] for page in pages}["/loop-a"] == "redirect loop"
    every = collect_pages(client, f"{path}/pages", headers=account.headers)
    [home] = [page for page in every if page["url"] == base + "/"]
    assert (home["title"], home["http_status"], len(home["content_hash"])) == ("Home", 200, 64)
    assert home["words"] > 10 and home["fetched_at"]

    # the index: search finds a crawled page's text with its URL; the PDF with its page
    hits = client.get(
        f"{CHATBOTS}/{chatbot_id}/search", params={"q": '"Setup is a page"'}, headers=account.headers
    ).json()
    assert [hit["source"]["url"] for hit in hits["items"]] == [base + "/docs/setup"]
    assert hits["items"][0]["source"]["type"] == "web_page" and hits["items"][0]["source"]["title"] == "Setup"
    pdf = client.get(f"{CHATBOTS}/{chatbot_id}/search", params={"q": "install widget"}, headers=account.headers)
    assert [(hit["source"]["url"], hit["source"]["page"]) for hit in pdf.json()["items"]] == [(base + "/manual.pdf", 1)]
    secret = client.get(f"{CHATBOTS}/{chatbot_id}/search", params={"q": '"Secret is a page"'}, headers=account.headers)
    assert secret.json()["items"] == []  # disallowed by robots.txt: never fetched, never indexed

    summary = client.get(f"{CHATBOTS}/{chatbot_id}", headers=account.headers).json()["knowledge"]
    assert (summary["sources"], summary["pages"], summary["status"]) == (1, 6, "ready")
    assert summary["passages"] >= 6
    listed = client.get(websites_path(chatbot_id), headers=account.headers).json()
    assert [item["id"] for item in listed["items"]] == [website["id"]] and listed["next_cursor"] is None


def test_a_recrawl_asks_conditionally_and_reindexes_only_what_changed(client, account, crawler, run_job):
    chatbot_id = new_chatbot(client, account)
    with changing_site() as site:
        added = add_website(client, account, chatbot_id, site.url + "/", use_sitemap=False)
        website_id = added["website"]["id"]
        path = f"{websites_path(chatbot_id)}/{website_id}"
        # a recrawl while the crawl is queued is refused and changes nothing
        assert_problem(client.post(f"{path}/recrawl", headers=account.headers), 409, CRAWL_RUNNING)
        assert run_job(added["job"]["id"]).outcome == job_services.Outcome.SUCCEEDED
        first = outcome(client, account, chatbot_id, website_id, site.url)
        assert first == {
            "/": ("indexed", None),
            "/a": ("indexed", None),
            "/b": ("indexed", None),
            "/c": ("indexed", None),
            "/private/notes": ("skipped", "robots"),
        }
        ids = {page["url"]: page["id"] for page in collect_pages(client, f"{path}/pages", headers=account.headers)}

        site.pages["/b"] = (
            "Bravo",
            "Bravo now writes about bison, a page changed since the first crawl of the site.",
            ["/"],
        )
        site.requests.clear()
        again = client.post(f"{path}/recrawl", headers=account.headers)
        assert again.status_code == 202, again.text
        assert again.headers["Location"] == f"/api/v1/jobs/{again.json()['job']['id']}"
        assert (again.json()["website"]["status"], again.json()["website"]["crawl_number"]) == ("queued", 2)
        assert run_job(again.json()["job"]["id"]).outcome == job_services.Outcome.SUCCEEDED
        conditional = {request.path: request.headers.get("if-none-match") for request in site.requests}

    # every page the first crawl indexed was asked for with its ETag
    assert all(conditional[page] for page in ("/", "/a", "/b", "/c")), conditional
    assert outcome(client, account, chatbot_id, website_id, site.url) == {
        "/": ("skipped", "not_modified"),
        "/a": ("skipped", "not_modified"),
        "/b": ("indexed", None),
        "/c": ("skipped", "not_modified"),
        "/private/notes": ("skipped", "robots"),
    }
    pages = collect_pages(client, f"{path}/pages", headers=account.headers)
    assert {page["url"]: page["id"] for page in pages} == ids  # the same rows, updated
    got = client.get(path, headers=account.headers).json()
    assert (got["status"], got["crawl_number"], got["pages_indexed"], got["pages_skipped"]) == ("completed", 2, 1, 4)

    def search(q: str) -> list[str]:
        answer = client.get(f"{CHATBOTS}/{chatbot_id}/search", params={"q": q}, headers=account.headers)
        return [hit["source"]["url"].removeprefix(site.url) for hit in answer.json()["items"]]

    assert search("bison") == ["/b"]
    assert search("badgers") == []  # the old text of the changed page is gone
    assert search("aardvarks") == ["/a"]  # unchanged pages keep their passages
    summary = client.get(f"{CHATBOTS}/{chatbot_id}", headers=account.headers).json()["knowledge"]
    assert (summary["pages"], summary["status"]) == (4, "ready")


def test_deleting_a_website_removes_its_pages_and_their_passages(client, account, crawler, run_job):
    chatbot_id = new_chatbot(client, account)
    with changing_site() as site:
        added = add_website(client, account, chatbot_id, site.url + "/", use_sitemap=False)
        run_job(added["job"]["id"])
    path = f"{websites_path(chatbot_id)}/{added['website']['id']}"
    search = f"{CHATBOTS}/{chatbot_id}/search"
    assert len(client.get(search, params={"q": "chameleons"}, headers=account.headers).json()["items"]) == 1

    deleted = client.delete(path, headers=account.headers)
    assert deleted.status_code == 204 and deleted.content == b""
    assert client.get(search, params={"q": "chameleons"}, headers=account.headers).json()["items"] == []
    assert_problem(client.get(path, headers=account.headers), 404, NOT_FOUND)
    assert_problem(client.get(f"{path}/pages", headers=account.headers), 404, NOT_FOUND)
    assert client.get(websites_path(chatbot_id), headers=account.headers).json()["items"] == []
    summary = client.get(f"{CHATBOTS}/{chatbot_id}", headers=account.headers).json()["knowledge"]
    assert summary == {"sources": 0, "pages": 0, "documents": 0, "passages": 0, "status": "empty"}


def test_invalid_settings_are_400_and_create_nothing(client, account, crawler):
    chatbot_id = new_chatbot(client, account)
    for body in (
        {"start_url": "http://127.0.0.1:9/", "max_pages": 0},
        {"start_url": "http://127.0.0.1:9/", "max_pages": 1001},
        {"start_url": "http://127.0.0.1:9/", "max_depth": 11},
        {"start_url": "http://127.0.0.1:9/", "include_paths": ["docs/*"]},
        {"start_url": "ftp://127.0.0.1/"},
        {"start_url": "http://127.0.0.1:9/", "regex": ".*"},
        {},
    ):
        assert_problem(client.post(websites_path(chatbot_id), json=body, headers=account.headers), 400, VALIDATION)
    assert client.get(websites_path(chatbot_id), headers=account.headers).json()["items"] == []


def test_another_users_chatbot_and_websites_are_404_everywhere(client, account, other_account, crawler):
    chatbot_id = new_chatbot(client, account)
    website_id = add_website(client, account, chatbot_id, "http://127.0.0.1:9/")["website"]["id"]
    path = f"{websites_path(chatbot_id)}/{website_id}"
    for method, url, body in [
        ("get", websites_path(chatbot_id), None),
        ("post", websites_path(chatbot_id), {"start_url": "http://127.0.0.1:9/"}),
        ("get", path, None),
        ("get", f"{path}/pages", None),
        ("post", f"{path}/recrawl", None),
        ("delete", path, None),
    ]:
        kwargs = {"json": body} if body is not None else {}
        assert_problem(getattr(client, method)(url, headers=other_account.headers, **kwargs), 404, NOT_FOUND)
    # a website under another chatbot's id is 404 too
    own_chatbot = new_chatbot(client, other_account)
    assert_problem(
        client.get(f"{websites_path(own_chatbot)}/{website_id}", headers=other_account.headers), 404, NOT_FOUND
    )
    assert client.get(path, headers=account.headers).status_code == 200


def test_the_data_export_lists_the_websites_of_the_callers_chatbots(client, account, other_account, crawler):
    chatbot_id = new_chatbot(client, account)
    website = add_website(client, account, chatbot_id, "http://127.0.0.1:9/docs/", max_pages=5)["website"]
    new_chatbot(client, other_account)
    add_website(client, other_account, new_chatbot(client, other_account), "http://127.0.0.1:9/")
    exported = client.get("/api/v1/users/me/export", headers=account.headers).json()["websites"]
    assert [(item["id"], item["start_url"], item["max_pages"]) for item in exported] == [
        (website["id"], "http://127.0.0.1:9/docs/", 5)
    ]
