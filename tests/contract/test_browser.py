"""The documentation pages in a real browser (Playwright driving Debian's Chromium) against a
real server: Swagger UI shows every tag and operation, authorizes with a real token and runs
requests with "Try it out"; the Redoc page renders; neither page asks anything of another origin.

Screenshots go to test-artifacts/browser/ (git-ignored). Without Chromium (`apt-get install -y
chromium`, which .ci/run does when /usr/bin/chromium is missing) the test is skipped and says so.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from server.contract import bundle
from server.edge.docs import REFERENCE_PAGE
from tests.contract.conftest import LiveServer
from tests.helpers import ROOT, register_and_login

ARTIFACTS = ROOT / "test-artifacts" / "browser"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TIMEOUT_MS = 20_000

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason=f"no browser: {CHROMIUM} is missing (install it with `apt-get install -y chromium`; .ci/run does)",
)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


class PageWatch:
    """Every request the page sends (through Playwright's router, which sees only what would
    reach the network) and every uncaught script error."""

    def __init__(self, page, origin: str) -> None:
        self.origin = origin
        self.requests: list[str] = []
        self.errors: list[str] = []
        page.route("**/*", self._route)
        page.on("pageerror", lambda error: self.errors.append(str(error)))

    def _route(self, route) -> None:
        url = route.request.url
        self.requests.append(url)
        if url.startswith("data:") or url.startswith(self.origin + "/"):
            route.continue_()
        else:
            route.abort()

    def foreign(self) -> list[str]:
        """Requests to any origin but the server's."""
        return [url for url in self.requests if not url.startswith("data:") and not url.startswith(self.origin + "/")]


def _screenshot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=False)


def _operations() -> list[tuple[str, str]]:
    spec = bundle()
    return [
        (operation["tags"][0], operation["operationId"])
        for item in spec["paths"].values()
        for method, operation in item.items()
        if method in {"get", "put", "post", "delete", "patch"}
    ]


def _execute(page, tag: str, operation_id: str) -> tuple[str, dict]:
    """Run the expanded operation's "Try it out" request; its status and JSON body as shown."""
    block = page.locator(f"#operations-{tag}-{operation_id}")
    block.locator(".btn.execute").click()
    row = block.locator(".live-responses-table .response").first
    row.locator(".response-col_status").wait_for(timeout=TIMEOUT_MS)
    status = row.locator(".response-col_status").inner_text().strip()
    body = row.locator(".response-col_description pre.microlight").first.inner_text()
    return status, json.loads(body)


def test_swagger_ui_try_it_out(browser, live_server: LiveServer):
    with httpx.Client(base_url=live_server.url, timeout=30) as http:  # over HTTP, as the README's flow does
        account = register_and_login(http)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    watch = PageWatch(page, live_server.url)
    try:
        page.goto(f"{live_server.url}/api/v1/ui/", wait_until="networkidle")
        page.locator(".opblock-tag-section").first.wait_for(timeout=TIMEOUT_MS)

        # Every tag of the contract, in its order, and every operation under its tag.
        tags = [tag["name"] for tag in bundle()["tags"]]
        assert page.locator(".opblock-tag-section h3 .nostyle span").all_inner_texts() == tags
        operations = _operations()
        assert page.locator(".opblock").count() == len(operations)
        for tag, operation_id in operations:
            assert page.locator(f"#operations-{tag}-{operation_id}").count() == 1, operation_id

        # Authorize with the token from the API's own login.
        page.locator(".scheme-container .btn.authorize").click()
        dialog = page.locator(".modal-ux")
        dialog.locator(".auth-container input").fill(account.access_token)
        dialog.locator(".auth-btn-wrapper .btn.authorize").click()
        assert dialog.get_by_text("Logout").count() == 1  # Swagger UI now holds the token
        dialog.locator(".auth-btn-wrapper .btn-done").click()

        # GET /api/v1/auth/me from the page: the bearer token is sent, the account comes back.
        me = page.locator("#operations-auth-getCurrentUser")
        me.locator(".opblock-summary").click()
        me.locator(".try-out__btn").click()
        status, body = _execute(page, "auth", "getCurrentUser")
        assert status == "200"
        assert body["id"] == account.id
        assert body["email"] == account.email
        me.scroll_into_view_if_needed()
        _screenshot(page, "swagger-ui-get-current-user")
        me.locator(".opblock-summary").click()  # fold it again

        # POST /api/v1/users/{user_id}/tasks from the page.
        create = page.locator("#operations-tasks-createTask")
        create.locator(".opblock-summary").click()
        create.locator(".try-out__btn").click()
        create.locator('tr[data-param-name="user_id"] input').fill(account.id)
        create.locator("textarea.body-param__text").fill(
            json.dumps({"title": "Written in Swagger UI", "priority": "high", "tags": ["docs"]})
        )
        status, task = _execute(page, "tasks", "createTask")
        assert status == "201"
        assert task["title"] == "Written in Swagger UI"
        assert task["priority"] == "high"
        create.locator(".live-responses-table").scroll_into_view_if_needed()
        _screenshot(page, "swagger-ui-create-task")

        # It really was created, for this account.
        stored = httpx.get(
            f"{live_server.url}/api/v1/users/{account.id}/tasks/{task['id']}",
            headers=account.headers,
            timeout=10,
        )
        assert stored.status_code == 200, stored.text
        assert stored.json()["title"] == "Written in Swagger UI"

        assert watch.foreign() == []
        assert watch.errors == []
    finally:
        page.close()


@pytest.fixture(scope="module")
def reference_page() -> Path:
    """The Redoc page, built by `make docs` (`make test` builds it first); built here if missing."""
    if not REFERENCE_PAGE.exists():
        if shutil.which("make") is None:
            pytest.fail("build/docs/index.html is missing and make is not installed: run `make docs`")
        subprocess.run(["make", "--no-print-directory", "docs"], cwd=ROOT, check=True)
    return REFERENCE_PAGE


def test_redoc_page_renders_the_contract(browser, live_server: LiveServer, reference_page: Path):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    watch = PageWatch(page, live_server.url)
    blocked: list[str] = []
    page.on("requestfailed", lambda request: blocked.append(f"{request.url} {request.failure}"))
    try:
        page.goto(f"{live_server.url}/api/v1/docs", wait_until="networkidle")
        assert page.title() == "Charter API reference"
        page.get_by_role("heading", name="Charter API").first.wait_for(timeout=TIMEOUT_MS)

        # Open the tasks section and one operation: its description, written in the contract, is shown.
        sidebar = page.locator("[data-component-name='Menu/MenuItem']")
        sidebar.get_by_text("tasks", exact=True).first.click()
        sidebar.get_by_text("Create a task", exact=True).first.click()
        description = page.get_by_text("Adds a task for the user.")
        description.first.wait_for(timeout=TIMEOUT_MS)
        assert description.first.is_visible()
        _screenshot(page, "redoc-create-task")

        # Nothing was fetched from elsewhere. Redoc's own "API docs by Redocly" logo points at its
        # CDN: the page's CSP blocks it before any request leaves (the logo hides itself).
        assert watch.foreign() == []
        assert all("cdn.redoc.ly" in entry and "csp" in entry for entry in blocked), blocked
        assert watch.errors == []
    finally:
        page.close()
