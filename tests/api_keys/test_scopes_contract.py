"""Which operations keys reach is declared in the contract (`x-api-key-scopes`) and checked in one
place: start-up refuses a malformed or forbidden declaration, and for every operation of the
contract — read from it, not listed by hand — a key lacking the declared scopes, or presented to
an operation that declares none, is refused with 403 before any handler runs."""

from __future__ import annotations

import copy
import re
import uuid
from typing import Any

import pytest

from server.contract import HTTP_METHODS, ContractError, api_key_scopes, bundle
from services.api_keys import KEYLESS_TAGS, Scope
from tests.api_keys.conftest import key_headers, make_key
from tests.helpers import assert_problem

SPEC = bundle()
EVERY_SCOPE = [scope.value for scope in Scope]


def _operations() -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, template, operation)
        for template, item in SPEC["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS and isinstance(operation, dict) and operation["x-access"] != "public"
    ]


def _example_body(operation: dict[str, Any]) -> Any:
    content = operation.get("requestBody", {}).get("content", {}).get("application/json")
    if content is None:
        return None
    return content["example"] if "example" in content else next(iter(content["examples"].values()))["value"]


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        kind, name = node["$ref"].removeprefix("#/components/").split("/")
        node = SPEC["components"][kind][name]
    return node


def _required_query(template: str, operation: dict[str, Any]) -> dict[str, Any]:
    """The example values of the operation's required query parameters (so that request
    validation, which comes first, passes)."""
    declared = [*SPEC["paths"][template].get("parameters", []), *operation.get("parameters", [])]
    parameters = [_resolve(parameter) for parameter in declared]
    return {
        p["name"]: p.get("example", p["schema"].get("example"))
        for p in parameters
        if p["in"] == "query" and p.get("required")
    }


def _call(client, method: str, template: str, operation: dict[str, Any], key: str, user_id: str):
    path = re.sub(r"\{[a-z_]+\}", str(uuid.uuid4()), template.replace("{user_id}", user_id))
    return client.request(
        method.upper(),
        path,
        params=_required_query(template, operation),
        json=_example_body(operation),
        headers=key_headers(key),
    )


def test_the_contracts_scope_enum_is_the_services():
    assert SPEC["components"]["schemas"]["ApiKeyScope"]["enum"] == EVERY_SCOPE


def test_the_declared_scopes_are_read_and_keyless_tags_declare_none():
    scopes = api_key_scopes(SPEC)
    assert scopes["listTasks"] == {"tasks:read"} and scopes["createTask"] == {"tasks:write"}
    assert scopes["searchKnowledge"] == {"knowledge:read"} and scopes["uploadDocument"] == {"chatbots:write"}
    declared = {scope for needed in scopes.values() for scope in needed}
    assert declared == set(EVERY_SCOPE)
    assert scopes["sendMessage"] == {"chat"}
    for _, _, operation in _operations():
        if set(operation["tags"]) & KEYLESS_TAGS or operation["x-access"] == "admin":
            assert operation["operationId"] not in scopes


@pytest.mark.parametrize(
    ("path", "method", "value", "message"),
    [
        ("/api/v1/users/{user_id}/tasks", "get", ["tasks:reed"], "unknown scope tasks:reed"),
        ("/api/v1/users/{user_id}/tasks", "get", [], "non-empty list"),
        ("/api/v1/users/{user_id}/tasks", "get", "tasks:read", "non-empty list"),
        ("/api/v1/auth/register", "post", ["tasks:read"], "public operation cannot admit API keys"),
        ("/api/v1/users", "get", ["tasks:read"], "admin operation cannot admit API keys"),
        ("/api/v1/auth/logout", "post", ["tasks:read"], "tagged auth never admit API keys"),
        ("/api/v1/api-keys", "post", ["chat"], "tagged api-keys never admit API keys"),
        ("/api/v1/users/me", "delete", ["chat"], "tagged users never admit API keys"),
    ],
)
def test_a_malformed_or_forbidden_declaration_stops_start_up(path, method, value, message):
    spec = copy.deepcopy(SPEC)
    spec["paths"][path][method]["x-api-key-scopes"] = value
    with pytest.raises(ContractError, match=re.escape(message)):
        api_key_scopes(spec)


@pytest.mark.parametrize(
    ("method", "template", "operation"),
    [entry for entry in _operations() if entry[2]["operationId"] not in api_key_scopes(SPEC)],
    ids=lambda value: value["operationId"] if isinstance(value, dict) else "",
)
def test_an_operation_without_scopes_refuses_a_key_holding_every_scope(client, account, method, template, operation):
    key = make_key(client, account, *EVERY_SCOPE)["key"]

    response = _call(client, method, template, operation, key, account.id)

    problem = assert_problem(response, 403, "/problems/insufficient-scope")
    assert operation["operationId"] in problem["detail"]


@pytest.mark.parametrize(
    ("method", "template", "operation"),
    [entry for entry in _operations() if entry[2]["operationId"] in api_key_scopes(SPEC)],
    ids=lambda value: value["operationId"] if isinstance(value, dict) else "",
)
def test_an_operation_refuses_a_key_holding_every_scope_but_its_own(client, account, method, template, operation):
    needed = set(operation["x-api-key-scopes"])
    key = make_key(client, account, *[scope for scope in EVERY_SCOPE if scope not in needed])["key"]

    response = _call(client, method, template, operation, key, account.id)

    problem = assert_problem(response, 403, "/problems/insufficient-scope")
    assert all(scope in problem["detail"] for scope in needed)
