"""Every OpenAPI link of the contract leads somewhere real: from a successful call of its source
operation, the link's runtime expressions give the values of a call of its target operation,
and that call succeeds (and answers what the contract says).

schemathesis' stateful phase follows the same links at random (tests/contract/test_fuzz.py,
`make fuzz`); this walks each one on purpose, so a link with a wrong pointer, parameter or
operation fails here even when the fuzzer never happened to reach it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from starlette.testclient import TestClient

from server.contract import bundle
from tests.helpers import PASSWORD, ContractClient, bearer, create_admin_and_login, registration, unique_email

SPEC = bundle()
METHODS = {"get", "put", "post", "delete", "patch"}


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    parameters: dict[str, str]
    """name -> location (path, query, header)."""
    body_example: Any = None
    multipart: bool = False
    """Whether its body is multipart/form-data (its example's members sent as parts)."""


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        kind, name = node["$ref"].removeprefix("#/components/").split("/")
        node = SPEC["components"][kind][name]
    return node


def _operations() -> dict[str, Operation]:
    found = {}
    for path, item in SPEC["paths"].items():
        shared = item.get("parameters", [])
        for method, operation in item.items():
            if method not in METHODS:
                continue
            parameters = [_resolve(parameter) for parameter in [*shared, *operation.get("parameters", [])]]
            contents = (operation.get("requestBody") or {}).get("content", {})
            multipart = "multipart/form-data" in contents
            content = contents.get("multipart/form-data" if multipart else "application/json", {})
            found[operation["operationId"]] = Operation(
                method.upper(), path, {p["name"]: p["in"] for p in parameters}, content.get("example"), multipart
            )
    return found


OPERATIONS = _operations()
LINKS = [
    (operation["operationId"], status, name, link)
    for item in SPEC["paths"].values()
    for method, operation in item.items()
    if method in METHODS
    for status, response in operation["responses"].items()
    for name, link in _resolve(response).get("links", {}).items()
]


@dataclass
class Call:
    """One call made through the contract: what was sent and what came back."""

    operation_id: str
    path: dict[str, str] = field(default_factory=dict)
    body: Any = None
    response: Any = None
    token: str | None = None


def call(client: ContractClient, operation_id: str, *, token: str | None = None, **values: Any) -> Call:
    """Call `operation_id`; `values` are its parameters by name, `body` its JSON body."""
    operation = OPERATIONS[operation_id]
    body = values.pop("body", None)
    by_location: dict[str, dict[str, Any]] = {"path": {}, "query": {}, "header": {}}
    for name, value in values.items():
        by_location[operation.parameters[name]][name] = value
    headers = {**by_location["header"], **(bearer(token) if token else {})}
    if operation.multipart and body is not None:  # a file part named after its member, as text
        sent: dict[str, Any] = {
            "files": {
                name: (f"{name}.txt", str(value).encode(), "text/plain") if name == "file" else (None, str(value))
                for name, value in body.items()
            }
        }
    else:
        sent = {"json": body} if body is not None else {}
    response = client.request(
        operation.method,
        operation.path.format(**by_location["path"]),
        params=by_location["query"] or None,
        headers=headers,
        **sent,
    )
    return Call(operation_id, by_location["path"], body, response, token)


def evaluate(expression: Any, source: Call) -> Any:
    """An OpenAPI runtime expression (the forms the contract uses) evaluated against `source`;
    objects are evaluated member by member, constants stay as they are."""
    if isinstance(expression, dict):
        return {key: evaluate(value, source) for key, value in expression.items()}
    if not isinstance(expression, str) or not expression.startswith("$"):
        return expression
    if expression.startswith("$request.path."):
        return source.path[expression.removeprefix("$request.path.")]
    if expression.startswith("$response.header."):
        return source.response.headers[expression.removeprefix("$response.header.")]
    for prefix, document in (("$request.body#", source.body), ("$response.body#", None)):
        if expression.startswith(prefix):
            node = document if document is not None else source.response.json()
            for token in filter(None, expression.removeprefix(prefix).split("/")):
                node = node[int(token)] if isinstance(node, list) else node[token]
            return node
    raise AssertionError(f"a runtime expression this test does not know: {expression}")


def _new_account(client: ContractClient) -> tuple[Call, str]:
    """Register a new account and log in: (the registration, an access token)."""
    registered = call(
        client,
        "registerUser",
        body=registration(unique_email("links"), display_name="Links"),
    )
    assert registered.response.status_code == 201, registered.response.text
    tokens = call(client, "login", body={"email": registered.body["email"], "password": PASSWORD})
    return registered, tokens.response.json()["access_token"]


def _own_task(client: ContractClient, user_id: str, token: str) -> Call:
    created = call(client, "createTask", token=token, user_id=user_id, body={"title": "Follow the links"})
    assert created.response.status_code == 201, created.response.text
    return created


def _login(client: ContractClient) -> Call:
    return call(client, "login", body={"email": _new_account(client)[0].body["email"], "password": PASSWORD})


def _refresh(client: ContractClient) -> Call:
    refresh_token = _login(client).response.json()["refresh_token"]
    return call(client, "refreshTokens", body={"refresh_token": refresh_token})


def _create_task(client: ContractClient) -> Call:
    registered, token = _new_account(client)
    return _own_task(client, registered.response.json()["id"], token)


def _list_tasks(client: ContractClient) -> Call:
    created = _create_task(client)
    return call(client, "listTasks", token=created.token, user_id=created.path["user_id"])


def _replace_task(client: ContractClient) -> Call:
    created = _create_task(client)
    task_id = created.response.json()["id"]
    body = {"title": "Followed", "priority": "low"}
    return call(client, "replaceTask", token=created.token, user_id=created.path["user_id"], task_id=task_id, body=body)


def _create_reminder(client: ContractClient) -> Call:
    created = _create_task(client)
    remind_at = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    return call(
        client,
        "createReminder",
        token=created.token,
        user_id=created.path["user_id"],
        task_id=created.response.json()["id"],
        body={"remind_at": remind_at},
    )


def _create_chatbot(client: ContractClient) -> Call:
    created = call(client, "createChatbot", token=_new_account(client)[1], body={"name": "Follow the links"})
    assert created.response.status_code == 201, created.response.text
    return created


def _list_chatbots(client: ContractClient) -> Call:
    return call(client, "listChatbots", token=_create_chatbot(client).token)


def _update_chatbot(client: ContractClient) -> Call:
    created = _create_chatbot(client)
    chatbot_id = created.response.json()["id"]
    return call(client, "updateChatbot", token=created.token, chatbot_id=chatbot_id, body={"status": "active"})


def _upload_document(client: ContractClient) -> Call:
    created = _create_chatbot(client)
    chatbot_id = created.response.json()["id"]
    return call(
        client,
        "uploadDocument",
        token=created.token,
        chatbot_id=chatbot_id,
        body=OPERATIONS["uploadDocument"].body_example,
    )


def _list_documents(client: ContractClient) -> Call:
    uploaded = _upload_document(client)
    return call(client, "listDocuments", token=uploaded.token, chatbot_id=uploaded.path["chatbot_id"])


def _create_website(client: ContractClient) -> Call:
    created = _create_chatbot(client)
    chatbot_id = created.response.json()["id"]
    body = {"start_url": "http://127.0.0.1:9/", "use_sitemap": False}  # queued only: nothing is fetched
    added = call(client, "createWebsite", token=created.token, chatbot_id=chatbot_id, body=body)
    assert added.response.status_code == 202, added.response.text
    return added


def _list_websites(client: ContractClient) -> Call:
    added = _create_website(client)
    return call(client, "listWebsites", token=added.token, chatbot_id=added.path["chatbot_id"])


def _recrawl_website(client: ContractClient) -> Call:
    added = _create_website(client)
    chatbot_id, website_id = added.path["chatbot_id"], added.response.json()["website"]["id"]
    cancelled = call(client, "cancelJob", token=added.token, job_id=added.response.json()["job"]["id"])
    assert cancelled.response.status_code == 200, cancelled.response.text  # the crawl ended: it may start again
    return call(client, "recrawlWebsite", token=added.token, chatbot_id=chatbot_id, website_id=website_id)


def _create_api_key(client: ContractClient) -> Call:
    created = call(client, "createApiKey", token=_new_account(client)[1], body={"name": "Links", "scopes": ["chat"]})
    assert created.response.status_code == 201, created.response.text
    return created


def _create_conversation(client: ContractClient) -> Call:
    published = _update_chatbot(client)  # active: it answers the messages the links send
    assert published.response.status_code == 200, published.response.text
    chatbot_id = published.path["chatbot_id"]
    body = OPERATIONS["createConversation"].body_example
    created = call(client, "createConversation", token=published.token, chatbot_id=chatbot_id, body=body)
    assert created.response.status_code == 201, created.response.text
    return created


def _list_api_keys(client: ContractClient) -> Call:
    return call(client, "listApiKeys", token=_create_api_key(client).token)


def _list_conversations(client: ContractClient) -> Call:
    created = _create_conversation(client)
    return call(client, "listConversations", token=created.token, chatbot_id=created.path["chatbot_id"])


def _update_conversation(client: ContractClient) -> Call:
    created = _create_conversation(client)
    conversation_id = created.response.json()["id"]
    return call(
        client, "updateConversation", token=created.token, conversation_id=conversation_id, body={"title": "Hi"}
    )


def _send_message(client: ContractClient) -> Call:
    created = _create_conversation(client)
    conversation_id = created.response.json()["id"]
    body = OPERATIONS["sendMessage"].body_example
    return call(client, "sendMessage", token=created.token, conversation_id=conversation_id, body=body)


def _start_visitor_conversation(client: ContractClient) -> Call:
    """A visitor's conversation with a new active public chatbot, started from a client address of
    its own (the start is limited per address); its link targets get the visitor token."""
    created = call(
        client, "createChatbot", token=_new_account(client)[1], body={"name": "Links", "visibility": "public"}
    )
    chatbot_id = created.response.json()["id"]
    published = call(client, "updateChatbot", token=created.token, chatbot_id=chatbot_id, body={"status": "active"})
    assert published.response.status_code == 200, published.response.text
    visitor = ContractClient(
        TestClient(client.client.app, client=(f"198.51.100.{uuid.uuid4().int % 250 + 1}", 5000)), client.openapi
    )
    started = call(visitor, "startVisitorConversation", public_id=published.response.json()["public_id"])
    assert started.response.status_code == 201, started.response.text
    started.token = started.response.json()["visitor_token"]
    return started


def _attach_payment_method(client: ContractClient) -> Call:
    attached = call(client, "attachPaymentMethod", token=_new_account(client)[1], body={"token": "tok_visa"})
    assert attached.response.status_code == 201, attached.response.text
    return attached


def _list_payment_methods(client: ContractClient) -> Call:
    attached = _attach_payment_method(client)
    return call(client, "listPaymentMethods", token=attached.token)


SOURCES: dict[str, Callable[[ContractClient], Call]] = {
    "registerUser": lambda client: _new_account(client)[0],
    "login": _login,
    "refreshTokens": _refresh,
    "getCurrentUser": lambda client: call(client, "getCurrentUser", token=_new_account(client)[1]),
    "listSessions": lambda client: call(client, "listSessions", token=_new_account(client)[1]),
    "createTask": _create_task,
    "listTasks": _list_tasks,
    "replaceTask": _replace_task,
    "createReminder": _create_reminder,
    "createChatbot": _create_chatbot,
    "listChatbots": _list_chatbots,
    "updateChatbot": _update_chatbot,
    "uploadDocument": _upload_document,
    "listDocuments": _list_documents,
    "createWebsite": _create_website,
    "listWebsites": _list_websites,
    "recrawlWebsite": _recrawl_website,
    "createApiKey": _create_api_key,
    "listApiKeys": _list_api_keys,
    "createConversation": _create_conversation,
    "listConversations": _list_conversations,
    "updateConversation": _update_conversation,
    "sendMessage": _send_message,
    "startVisitorConversation": _start_visitor_conversation,
    "attachPaymentMethod": _attach_payment_method,
    "listPaymentMethods": _list_payment_methods,
}
"""How to make a successful call of each operation that has links, each as a new account; the
link's target is called with the same token (an administrator's when the source is public)."""

EXPECTED = {
    "GetUnchangedTask": 304,
    "GetUnchangedChatbot": 304,
    "GetUploadedDocumentContent": 409,
    "GetUnchangedConversation": 304,
}
"""Links whose target answers something other than 2xx on success (a document just uploaded is not
ready: its content is 409 until its job has run)."""


@pytest.fixture(autouse=True)
def crawler_reaches_loopback(app, monkeypatch) -> None:
    """The websites' links start from a website on 127.0.0.1 (never crawled here): the SSRF guard
    lets the session app accept it, as CRAWLER_ALLOW_PRIVATE_ADDRESSES=true would."""
    monkeypatch.setattr(app.app.extensions["charter"].jobs.context["crawler"].guard, "allow_private", True)


@pytest.fixture(scope="module")
def admin_token(client: ContractClient, app) -> str:
    """An administrator (registerUser's links lead to the administrators' operations)."""
    return create_admin_and_login(app, client).access_token


def test_the_contract_has_links_between_its_operations():
    assert {(source, link["operationId"]) for source, _, _, link in LINKS} >= {
        ("registerUser", "login"),
        ("login", "refreshTokens"),
        ("getCurrentUser", "createTask"),
        ("createTask", "getTask"),
        ("createTask", "replaceTask"),
        ("createTask", "deleteTask"),
        ("createChatbot", "getChatbot"),
        ("createChatbot", "updateChatbot"),
        ("createChatbot", "deleteChatbot"),
        ("createChatbot", "uploadDocument"),
        ("uploadDocument", "getDocument"),
        ("createWebsite", "getWebsite"),
        ("createWebsite", "listWebsitePages"),
        ("createWebsite", "getJob"),
        ("createConversation", "getConversation"),
        ("createConversation", "sendMessage"),
        ("sendMessage", "giveFeedback"),
        ("startVisitorConversation", "sendVisitorMessage"),
    }


@pytest.mark.parametrize(
    ("source", "status", "name", "link"), LINKS, ids=[f"{source}-{name}" for source, _, name, _ in LINKS]
)
def test_link_leads_to_a_successful_call(client, admin_token, source, status, name, link):
    assert link["operationId"] in OPERATIONS, f"{name} names no operation of the contract"
    assert source in SOURCES, f"add a way to call {source} successfully to SOURCES"
    made = SOURCES[source](client)
    assert made.response.status_code == int(status), made.response.text

    values = {parameter: evaluate(expression, made) for parameter, expression in link.get("parameters", {}).items()}
    target = OPERATIONS[link["operationId"]]
    assert set(values) <= set(target.parameters), f"{name} sets parameters {link['operationId']} does not have"
    body = evaluate(link["requestBody"], made) if "requestBody" in link else target.body_example
    followed = call(client, link["operationId"], token=made.token or admin_token, body=body, **values)

    expected = EXPECTED.get(name)
    if expected is not None:
        assert followed.response.status_code == expected, followed.response.text
    else:
        assert 200 <= followed.response.status_code < 300, followed.response.text
