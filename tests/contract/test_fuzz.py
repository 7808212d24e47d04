"""schemathesis fuzzes every operation in-process, as a logged-in user, with every check, on
valid (positive) and invalid (negative) data.

Any failure (a 500, an undeclared status, a body or header that breaks the contract, valid
data refused, invalid data accepted, auth ignored, …) fails the operation's test.
"""

from __future__ import annotations

import uuid

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from starlette.testclient import TestClient

from server.contract import bundle
from tests.conftest import PASSWORD

METHODS = {"get", "put", "post", "delete", "patch"}
OPERATIONS = [
    f"{method.upper()} {path}" for path, item in bundle()["paths"].items() for method in item if method in METHODS
]
EXAMPLES_PER_OPERATION = 60


@pytest.fixture(scope="module")
def fuzz_user(app) -> dict[str, str]:
    """The account the fuzzer acts as."""
    email = f"fuzz-{uuid.uuid4().hex[:8]}@example.com"
    with TestClient(app) as client:
        registered = client.post(
            "/api/v1/auth/register", json={"email": email, "password": PASSWORD, "display_name": "Fuzz"}
        )
    assert registered.status_code == 201, registered.text
    return {"id": registered.json()["id"], "email": email}


@pytest.fixture(scope="module")
def api_schema(app):
    return schemathesis.openapi.from_asgi("/api/v1/openapi.json", app)


def _fresh_token(app, email: str) -> str:
    """A new login per case, so a case that ends its session (logout, refresh-token reuse)
    leaves the next case authenticated."""
    with TestClient(app) as client:
        response = client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def _own_user_id(case, user_id: str) -> None:
    """Task paths get the fuzz user's own id when the generated one is a well-formed UUID:
    a random user could only ever answer 404. Malformed ids are kept to test rejection."""
    generated = (case.path_parameters or {}).get("user_id")
    if isinstance(generated, str):
        try:
            uuid.UUID(generated)
        except ValueError:
            return
        case.path_parameters["user_id"] = user_id


@pytest.mark.parametrize("label", OPERATIONS)
def test_operation_honours_the_contract(app, api_schema, fuzz_user, label):
    operation = api_schema.find_operation_by_label(label)
    assert operation is not None, f"{label} is not in the served contract"
    strategy = st.one_of(
        operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
        operation.as_strategy(generation_mode=GenerationMode.NEGATIVE),
    )
    secured = operation.definition.raw.get("security", [{"bearerAuth": []}]) != []

    @given(case=strategy)
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def fuzz(case):
        headers = {"Authorization": f"Bearer {_fresh_token(app, fuzz_user['email'])}"} if secured else None
        _own_user_id(case, fuzz_user["id"])
        case.call_and_validate(headers=headers)

    fuzz()
