"""Access is declared in the contract and enforced in one place (issue 12): every operation
states its `x-access` policy, the policy agrees with the operation's security, and the one check
before the handlers refuses whom the policy refuses — for every operation, read from the
bundled contract, not from a list kept by hand."""

from __future__ import annotations

import copy
import re
import uuid
from typing import Any

import pytest

from server.contract import HTTP_METHODS, ContractError, access_policies, bundle
from services.access import Access
from tests.helpers import Account, ContractClient, assert_problem, bearer


def _operations(policy: Access) -> list[tuple[str, str, dict[str, Any]]]:
    found = []
    for template, item in bundle()["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS and isinstance(operation, dict) and operation.get("x-access") == policy:
                found.append((method, template, operation))
    return found


def _example_body(operation: dict[str, Any]) -> Any:
    content = operation.get("requestBody", {}).get("content", {}).get("application/json")
    if content is None:
        return None
    if "example" in content:
        return content["example"]
    return next(iter(content["examples"].values()))["value"]


def _call(client: ContractClient, method: str, template: str, operation: dict[str, Any], token: str, user_id: str):
    path = re.sub(r"\{user_id\}", user_id, template)
    path = re.sub(r"\{[a-z_]+\}", str(uuid.uuid4()), path)
    body = _example_body(operation)
    return client.request(method.upper(), path, json=body, headers=bearer(token) if token else {})


def test_every_operation_declares_a_policy_that_agrees_with_its_security():
    policies = access_policies(bundle())  # raises on a missing, unknown or contradictory policy
    operations = [op for item in bundle()["paths"].values() for m, op in item.items() if m in HTTP_METHODS]
    assert set(policies) == {operation["operationId"] for operation in operations}
    assert set(Access) == set(policies.values())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda op: op.pop("x-access"), "x-access must be one of"),
        (lambda op: op.update({"x-access": "everyone"}), "x-access must be one of"),
        (lambda op: op.update({"x-access": "public"}), "does not match its security"),
        (lambda op: op.update({"x-access": "owner"}), "needs a {user_id}"),
    ],
)
def test_a_missing_or_contradictory_policy_is_refused(change, message):
    spec = copy.deepcopy(bundle())
    change(spec["paths"]["/api/v1/auth/me"]["get"])  # authenticated, no {user_id}
    with pytest.raises(ContractError, match=re.escape(message)):
        access_policies(spec)


@pytest.mark.parametrize(
    ("method", "template", "operation"),
    _operations(Access.ADMIN),
    ids=lambda value: value["operationId"] if isinstance(value, dict) else "",
)
def test_an_admin_operation_answers_403_to_a_user(
    client, account: Account, other_account: Account, method, template, operation
):
    response = _call(client, method, template, operation, account.access_token, other_account.id)
    assert_problem(response, 403, "/problems/forbidden")


@pytest.mark.parametrize(
    ("method", "template", "operation"),
    _operations(Access.OWNER),
    ids=lambda value: value["operationId"] if isinstance(value, dict) else "",
)
def test_an_owner_operation_answers_404_on_another_users_resources(
    client, account: Account, other_account: Account, method, template, operation
):
    response = _call(client, method, template, operation, account.access_token, other_account.id)
    assert_problem(response, 404, "/problems/not-found")
    assert "not yours" in response.json()["detail"]  # refused by the policy, not by a lookup
