"""Public chatbots through the ASGI app (every answer checked against the contract): a visitor
without an account starts a conversation by the chatbot's `public_id`, asks a question and gets
a cited answer, and reads the conversation back with the visitor token; the owner sees it as a
visitor conversation. A private, draft or paused chatbot is 404 to visitors; the visitor token
opens nothing else (401) and no other conversation (404); expired, it is 401. CORS follows the
chatbot's `allowed_origins`; the per-address limits answer 429 after exactly their figure."""

from __future__ import annotations

import copy
import itertools
import re
import uuid
from datetime import timedelta

import pytest
from starlette.testclient import TestClient

from persistence.conversations.models import Conversation
from server.contract import ContractError, access_policies, api_key_scopes, bundle, route_limits
from services import knowledge
from services.api_keys import Scope
from tests.api_keys.conftest import make_key
from tests.conversations.conftest import RETURNS_PAGE, SHIPPING_MANUAL, index
from tests.helpers import (
    FORBIDDEN,
    NOT_FOUND,
    T0,
    UNAUTHORIZED,
    ContractClient,
    assert_problem,
    bearer,
)

CHATBOTS = "/api/v1/chatbots"
PUBLIC = "/api/v1/public"
SHOP = "https://shop.example"
ELSEWHERE = "https://evil.example"
RATE_LIMITED = "/problems/rate-limited"
_peers = itertools.count(1)


def peer_client(app, openapi) -> ContractClient:
    """A contract-checking client of its own client address, so per-address counters start at 0."""
    host = f"198.18.{next(_peers)}.{uuid.uuid4().int % 250 + 1}"
    return ContractClient(TestClient(app, client=(host, 5000), raise_server_exceptions=False), openapi)


def make_public_chatbot(client, account, new_uow, *, visibility="public", status="active") -> dict:
    """A chatbot of `account` knowing a returns page and a shipping manual, with `status` and
    `visibility`, embeddable on SHOP; its representation."""
    created = client.post(
        CHATBOTS,
        json={"name": "Shop", "visibility": visibility, "allowed_origins": [SHOP], "welcome_message": "Hi!"},
        headers=account.headers,
    )
    assert created.status_code == 201, created.text
    chatbot = created.json()
    assert re.fullmatch(r"pcb_[A-Za-z0-9_-]{22}", chatbot["public_id"])
    for step in {"draft": [], "active": ["active"], "paused": ["active", "paused"]}[status]:
        changed = client.patch(f"{CHATBOTS}/{chatbot['id']}", json={"status": step}, headers=account.headers)
        assert changed.status_code == 200, changed.text
        chatbot = changed.json()
    chatbot_id = uuid.UUID(chatbot["id"])
    page = knowledge.KnowledgeSource("web_page", uuid.uuid4(), title="Returns", url=f"{SHOP}/returns")
    manual = knowledge.KnowledgeSource("document", uuid.uuid4(), title="Shipping manual")
    index(new_uow, chatbot_id, page, RETURNS_PAGE)
    index(new_uow, chatbot_id, manual, SHIPPING_MANUAL, page=2, heading="Shipping")
    return chatbot


def start(client, public_id: str, headers: dict[str, str] | None = None):
    return client.post(f"{PUBLIC}/chatbots/{public_id}/conversations", headers=headers or {})


def ask(client, conversation_id: str, token: str, content: str, headers: dict[str, str] | None = None):
    return client.post(
        f"{PUBLIC}/conversations/{conversation_id}/messages",
        json={"content": content},
        headers={**bearer(token), **(headers or {})},
    )


def started(client, public_id: str) -> tuple[str, str]:
    response = start(client, public_id)
    assert response.status_code == 201, response.text
    return response.json()["id"], response.json()["visitor_token"]


@pytest.fixture
def visitor(app, openapi) -> ContractClient:
    """A visitor's client, from an address of its own (the per-address limits start at 0)."""
    return peer_client(app, openapi)


@pytest.fixture
def chatbot(client, account, new_uow) -> dict:
    return make_public_chatbot(client, account, new_uow)


def test_a_visitor_gets_a_cited_answer_and_the_owner_sees_the_conversation(client, account, chatbot, visitor):
    response = start(visitor, chatbot["public_id"])
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["chatbot"] == {
        "public_id": chatbot["public_id"],
        "name": "Shop",
        "welcome_message": "Hi!",
        "suggested_questions": [],
    }
    assert re.fullmatch(r"chv_[A-Za-z0-9_-]{43}", body["visitor_token"])
    for secret in (chatbot["id"], account.id):  # nothing of the owner's ids reaches the visitor
        assert secret not in response.text
    conversation_id, token = body["id"], body["visitor_token"]

    answered = ask(visitor, conversation_id, token, "How long do refunds take?")
    assert answered.status_code == 201, answered.text
    answer = answered.json()
    assert answer["role"] == "assistant" and answer["finish_reason"] == "stop"
    assert "14 days" in answer["content"]
    # The refund sentence's marker names the returns page (its number depends on the ranking,
    # whose full-text statistics span the whole test database).
    cited = {citation["number"]: citation for citation in answer["citations"]}
    marker = re.search(r"within 14 days[^\[]*\[(\d+)\]", answer["content"])
    assert marker is not None, answer
    number = int(marker.group(1))
    assert cited[number]["source"]["url"] == f"{SHOP}/returns"
    assert "Refunds are paid within 14 days" in cited[number]["quote"]
    for secret in (chatbot["id"], account.id):
        assert secret not in answered.text

    read = visitor.get(f"{PUBLIC}/conversations/{conversation_id}/messages", headers=bearer(token))
    assert read.status_code == 200, read.text
    assert [(m["role"], m["content"]) for m in read.json()["items"]] == [
        ("user", "How long do refunds take?"),
        ("assistant", answer["content"]),
    ]
    assert read.json()["items"][1]["citations"] == answer["citations"]  # stored with the answer

    mine = client.get(f"{CHATBOTS}/{chatbot['id']}/conversations", headers=account.headers)
    assert [(c["id"], c["visitor"], c["message_count"]) for c in mine.json()["items"]] == [(conversation_id, True, 2)]
    owners_view = client.get(f"/api/v1/conversations/{conversation_id}/messages", headers=account.headers)
    assert [m["id"] for m in owners_view.json()["items"]] == [m["id"] for m in read.json()["items"]]


def test_an_owners_own_conversation_is_not_a_visitors(client, account, chatbot):
    created = client.post(f"{CHATBOTS}/{chatbot['id']}/conversations", json={}, headers=account.headers)
    assert created.status_code == 201, created.text
    assert created.json()["visitor"] is False


@pytest.mark.parametrize(("visibility", "status"), [("private", "active"), ("public", "draft"), ("public", "paused")])
def test_a_chatbot_not_active_and_public_is_404_to_visitors(client, account, new_uow, visibility, status, visitor):
    chatbot = make_public_chatbot(client, account, new_uow, visibility=visibility, status=status)
    assert_problem(start(visitor, chatbot["public_id"]), 404, NOT_FOUND)
    unknown = "pcb_" + "A" * 22
    assert_problem(start(visitor, unknown), 404, NOT_FOUND)
    mine = client.get(f"{CHATBOTS}/{chatbot['id']}/conversations", headers=account.headers)
    assert mine.json()["items"] == []  # nothing was started


def test_a_chatbot_paused_or_made_private_later_is_404_and_stores_nothing(client, account, chatbot, visitor):
    conversation_id, token = started(visitor, chatbot["public_id"])
    assert ask(visitor, conversation_id, token, "How long do refunds take?").status_code == 201
    for change in ({"status": "paused"}, {"status": "active", "visibility": "private"}):
        changed = client.patch(f"{CHATBOTS}/{chatbot['id']}", json=change, headers=account.headers)
        assert changed.status_code == 200, changed.text
        assert_problem(ask(visitor, conversation_id, token, "And shipping?"), 404, NOT_FOUND)
        read = visitor.get(f"{PUBLIC}/conversations/{conversation_id}/messages", headers=bearer(token))
        assert_problem(read, 404, NOT_FOUND)
    owners_view = client.get(f"/api/v1/conversations/{conversation_id}", headers=account.headers)
    assert owners_view.json()["message_count"] == 2  # the refused questions were not stored


def test_a_visitor_token_opens_nothing_else(client, account, chatbot, visitor):
    conversation_id, token = started(visitor, chatbot["public_id"])
    other_id, _other_token = started(visitor, chatbot["public_id"])
    for path in (
        "/api/v1/jobs",
        account.tasks_path,
        CHATBOTS,
        f"{CHATBOTS}/{chatbot['id']}/conversations",
        f"/api/v1/conversations/{conversation_id}",
        f"/api/v1/conversations/{conversation_id}/messages",
        "/api/v1/auth/me",
    ):
        assert_problem(client.get(path, headers=bearer(token)), 401, UNAUTHORIZED)
    response = client.post(
        f"/api/v1/conversations/{conversation_id}/messages", json={"content": "Hi"}, headers=bearer(token)
    )
    assert_problem(response, 401, UNAUTHORIZED)
    # Another conversation, with this token: 404, and nothing stored there.
    assert_problem(ask(visitor, other_id, token, "How long do refunds take?"), 404, NOT_FOUND)
    read = visitor.get(f"{PUBLIC}/conversations/{other_id}/messages", headers=bearer(token))
    assert_problem(read, 404, NOT_FOUND)
    other = client.get(f"/api/v1/conversations/{other_id}", headers=account.headers)
    assert other.json()["message_count"] == 0


def test_other_credentials_and_no_token_are_401_on_visitor_operations(client, account, chatbot, visitor):
    conversation_id, token = started(visitor, chatbot["public_id"])
    unknown = "chv_" + "x" * 43
    for headers in (
        {},
        account.headers,
        bearer(unknown),
        bearer(token[:-1]),
        bearer("not-a-token"),
    ):
        path = f"{PUBLIC}/conversations/{conversation_id}/messages"
        assert_problem(visitor.post(path, json={"content": "Hi"}, headers=headers), 401, UNAUTHORIZED)
        assert_problem(visitor.get(path, headers=headers), 401, UNAUTHORIZED)
    # An API key, whatever its scopes, is refused as on every operation that names none (403).
    api_key = make_key(client, account, *(scope.value for scope in Scope))["key"]
    path = f"{PUBLIC}/conversations/{conversation_id}/messages"
    refused = visitor.post(path, json={"content": "Hi"}, headers=bearer(api_key))
    assert_problem(refused, 403, "/problems/insufficient-scope")
    owners_view = client.get(f"/api/v1/conversations/{conversation_id}", headers=account.headers)
    assert owners_view.json()["message_count"] == 0


def test_an_expired_visitor_token_is_401(client, chatbot, new_uow, visitor):
    conversation_id, token = started(visitor, chatbot["public_id"])
    with new_uow() as uow:
        conversation = uow.session.get(Conversation, uuid.UUID(conversation_id))
        assert conversation is not None
        conversation.visitor_expires_at = T0 - timedelta(seconds=1)
    assert_problem(ask(visitor, conversation_id, token, "How long do refunds take?"), 401, UNAUTHORIZED)


def test_a_blank_or_oversized_message_is_400_and_stores_nothing(client, account, chatbot, visitor):
    conversation_id, token = started(visitor, chatbot["public_id"])
    assert_problem(ask(visitor, conversation_id, token, "   "), 400)
    assert_problem(ask(visitor, conversation_id, token, "x" * 4001), 400)
    owners_view = client.get(f"/api/v1/conversations/{conversation_id}", headers=account.headers)
    assert owners_view.json()["message_count"] == 0


# --- CORS -------------------------------------------------------------------------------------


def preflight(client, path: str, origin: str, method: str = "POST"):
    return client.request(
        "OPTIONS",
        path,
        validate=False,  # a preflight is no operation of the contract
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )


def test_cors_follows_the_chatbots_allowed_origins(client, account, chatbot, visitor):
    start_path = f"{PUBLIC}/chatbots/{chatbot['public_id']}/conversations"
    allowed = preflight(visitor, start_path, SHOP)
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == SHOP
    assert "POST" in allowed.headers["access-control-allow-methods"]
    assert "authorization" in allowed.headers["access-control-allow-headers"].lower()

    refused = preflight(visitor, start_path, ELSEWHERE)
    assert_problem(refused, 403, FORBIDDEN)
    assert not any(name.startswith("access-control-allow") for name in refused.headers)

    response = start(visitor, chatbot["public_id"], headers={"Origin": SHOP})
    assert response.status_code == 201, response.text
    assert response.headers["access-control-allow-origin"] == SHOP
    conversation_id, token = response.json()["id"], response.json()["visitor_token"]

    messages = f"{PUBLIC}/conversations/{conversation_id}/messages"
    assert preflight(visitor, messages, SHOP).headers["access-control-allow-origin"] == SHOP
    assert preflight(visitor, messages, SHOP, method="DELETE").status_code == 403
    assert_problem(preflight(visitor, messages, ELSEWHERE), 403, FORBIDDEN)
    answered = ask(visitor, conversation_id, token, "How long do refunds take?", headers={"Origin": SHOP})
    assert answered.status_code == 201
    assert answered.headers["access-control-allow-origin"] == SHOP

    # Another origin's actual requests are refused and change nothing.
    assert_problem(start(visitor, chatbot["public_id"], headers={"Origin": ELSEWHERE}), 403, FORBIDDEN)
    refused_ask = ask(visitor, conversation_id, token, "And shipping?", headers={"Origin": ELSEWHERE})
    assert_problem(refused_ask, 403, FORBIDDEN)
    assert "access-control-allow-origin" not in refused_ask.headers
    mine = client.get(f"{CHATBOTS}/{chatbot['id']}/conversations", headers=account.headers)
    assert [(c["id"], c["message_count"]) for c in mine.json()["items"]] == [(conversation_id, 2)]


def test_a_private_chatbot_allows_no_origin(client, account, new_uow, visitor):
    chatbot = make_public_chatbot(client, account, new_uow, visibility="private")
    path = f"{PUBLIC}/chatbots/{chatbot['public_id']}/conversations"
    assert_problem(preflight(visitor, path, SHOP), 403, FORBIDDEN)


# --- limits -----------------------------------------------------------------------------------


def _figure(operation_id: str) -> int:
    """The per-minute figure of the operation's per-client limit, as the contract declares it."""
    (limit,) = route_limits(bundle())[operation_id]
    assert limit.per == "client"
    return int(limit.limit.split("/")[0])


def test_starting_conversations_is_limited_per_address(app, openapi, chatbot, visitor):
    figure = _figure("startVisitorConversation")
    assert figure == 10
    visitor = peer_client(app, openapi)
    codes = [start(visitor, chatbot["public_id"]).status_code for _ in range(figure)]
    assert codes == [201] * figure
    refused = start(visitor, chatbot["public_id"])
    assert_problem(refused, 429, RATE_LIMITED)
    assert int(refused.headers["Retry-After"]) > 0
    assert start(peer_client(app, openapi), chatbot["public_id"]).status_code == 201  # another address


def test_visitor_messages_are_limited_per_address(app, openapi, client, account, chatbot, visitor):
    figure = _figure("sendVisitorMessage")
    assert figure == 20
    visitor = peer_client(app, openapi)
    conversation_id, token = started(visitor, chatbot["public_id"])
    codes = [ask(visitor, conversation_id, token, f"Refunds? {n}").status_code for n in range(figure)]
    assert codes == [201] * figure
    assert_problem(ask(visitor, conversation_id, token, "Refunds?"), 429, RATE_LIMITED)
    owners_view = client.get(f"/api/v1/conversations/{conversation_id}", headers=account.headers)
    assert owners_view.json()["message_count"] == 2 * figure  # the refused one stored nothing


# --- the contract -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda op: op.update({"security": []}), "does not match its security"),
        (lambda op: op.update({"x-api-key-scopes": ["chat"]}), "visitor operation cannot admit API keys"),
    ],
)
def test_a_visitor_operation_needs_a_token_and_admits_no_api_key(change, message):
    spec = copy.deepcopy(bundle())
    change(spec["paths"]["/api/v1/public/conversations/{conversation_id}/messages"]["post"])
    with pytest.raises(ContractError, match=re.escape(message)):
        access_policies(spec)
        api_key_scopes(spec)


def test_a_visitor_operation_names_its_conversation_in_its_path():
    spec = copy.deepcopy(bundle())
    spec["paths"]["/api/v1/auth/me"]["get"]["x-access"] = "visitor"
    with pytest.raises(ContractError, match=re.escape("needs a {conversation_id}")):
        access_policies(spec)
