"""schemathesis fuzzes every operation in-process, as a logged-in user, with every check, on
valid (positive) and invalid (negative) data.

Any failure (a 500, an undeclared status, a body or header that breaks the contract, valid
data refused, invalid data accepted, auth ignored, …) fails the operation's test.
"""

from __future__ import annotations

import re
import uuid

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.engine import Status, events, from_schema
from starlette.testclient import TestClient

from persistence.unit_of_work import UnitOfWork
from server.contract import bundle
from services.accounts import email_digest
from tests.helpers import create_admin, login, on_plan, register_and_login, unique_email

METHODS = {"get", "put", "post", "delete", "patch"}
OPERATIONS = [
    f"{method.upper()} {path}" for path, item in bundle()["paths"].items() for method in item if method in METHODS
]
EXAMPLES_PER_OPERATION = 60
STATEFUL_SCENARIOS = 100
ENDS_ITS_CALLER = {"DELETE /api/v1/users/me"}
"""Operations whose success deletes the caller's account: each case acts as a new account."""
CHAIN_RECURRENCE = (
    r"^(FREQ=(DAILY|WEEKLY|MONTHLY|YEARLY)(;INTERVAL=[1-9])?(;BYDAY=(MO|TU|WE|TH|FR|SA|SU))?"
    r"|[A-Za-z]{1,10}=[A-Za-z0-9,+-]{1,10})$"
)
"""The `recurrence` the stateful phase sends (request bodies only; answers are still checked
against the contract's `Recurrence`): a subset of the contract's RRULE grammar, rules the service
supports or one NAME=VALUE part it refuses (400). The contract's pattern nests unbounded
repetitions (`NAME=VALUE(;NAME=VALUE)*`), so hypothesis draws recurrences of ~60 characters at
the median and hundreds of choices in its tail; in the first scenarios hypothesis caps a test case
at five times its simplest one ("reduced max size for early test cases") and drops a larger one
unsent, which schemathesis reports as a skipped scenario (the 11th of the seeded run: the root
rule `RANDOM -> POST /api/v1/users/{user_id}/tasks`). The contract is right and stays as it is (any
change to a request `pattern` is breaking for `make spec-diff`); the other phases and
test_operation_honours_the_contract still draw from its whole grammar."""


@pytest.fixture(scope="module")
def fuzz_user(app) -> dict[str, str]:
    """The account the fuzzer acts as: an administrator, so the administrators' operations are
    fuzzed past their 403 too."""
    email = unique_email("fuzz")
    # Not PASSWORD: that one is the contract's example password, which schemathesis sends (as
    # `current_password` too), so a fuzzed password change would succeed and lock the fuzzer out.
    password = f"fuzzing passphrase {uuid.uuid4().hex}"
    user_id = create_admin(app, email, display_name="Fuzz", password=password)
    on_plan(app, user_id)  # the free plan's quotas would answer most creations 402 after two
    return {"id": user_id, "email": email, "password": password}


def _throwaway_token(app) -> str:
    """A token of a new account, for operations that end their caller's account."""
    with TestClient(app) as client:
        return register_and_login(client, unique_email("gone"), display_name="Gone").access_token


@pytest.fixture(scope="module")
def api_schema(app):
    return schemathesis.openapi.from_asgi("/api/v1/openapi.json", app)


def _fresh_token(app, email: str, password: str) -> str:
    """A new login per case, so a case that ends its session (logout, refresh-token reuse)
    leaves the next case authenticated. The account's lockout is lifted first, as a password
    reset lifts it: schemathesis sends the login operation the emails it saw in answers, the
    fuzz account's among them, with wrong passwords, and five failures (LOGIN_MAX_FAILURES in
    the tests' settings; `make fuzz` raises it) locked the account for every later operation."""
    with UnitOfWork(app.app.extensions["charter"].session_factory) as uow:
        uow.throttles.clear(email_digest(email))
    with TestClient(app) as client:
        return login(client, email, password).access_token


def _chain_recurrences(schema) -> None:
    """Let the request bodies of `schema` (a loaded schemathesis schema, not yet used) draw
    `recurrence` from CHAIN_RECURRENCE; the `Task` answers keep the contract's `Recurrence`."""
    schemas = schema.raw_schema["components"]["schemas"]
    narrowed = {**schemas["Recurrence"], "pattern": CHAIN_RECURRENCE}
    for name in ("TaskCreate", "TaskReplace"):
        assert schemas[name]["properties"]["recurrence"] == {"$ref": "#/components/schemas/Recurrence"}, name
        schemas[name]["properties"]["recurrence"] = narrowed


def test_chain_recurrences_follow_the_contract_grammar():
    """What CHAIN_RECURRENCE generates is schema-valid: every value also matches the contract's
    `Recurrence` pattern (so the stateful phase sends only data the contract allows)."""
    contract = re.compile(bundle()["components"]["schemas"]["Recurrence"]["pattern"])
    chain = CHAIN_RECURRENCE.removesuffix("$") + r"\Z"  # JSON Schema's `$` ends the string

    @given(value=st.from_regex(chain))
    @settings(max_examples=300, deadline=None, database=None, derandomize=True)
    def generated_values_match(value):
        assert contract.search(value), value

    generated_values_match()


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
        token = None
        if secured:
            if label in ENDS_ITS_CALLER:
                token = _throwaway_token(app)
            else:
                token = _fresh_token(app, fuzz_user["email"], fuzz_user["password"])
        headers = {"Authorization": f"Bearer {token}"} if token else None
        _own_user_id(case, fuzz_user["id"])
        case.call_and_validate(headers=headers)

    fuzz()


def test_stateful_chains_follow_the_contract_links(app, fuzz_user):
    """schemathesis' stateful phase in-process, run by its own engine as the CLI runs it (which
    tells a failure from the flakiness of a server whose state moves on): scenarios of calls
    chained through the contract's OpenAPI links (register -> log in, administer the new account;
    me -> the caller's tasks; create -> get/replace/complete/delete with its ETag; list -> get;
    replace -> get with If-None-Match; sessions -> revoke; login -> refresh -> refresh), positive
    data, every check on every answer, and no scenario skipped. Deleting one's own account is left
    out: it would end the fuzzer's identity."""
    loaded = schemathesis.openapi.from_asgi("/api/v1/openapi.json", app)
    _chain_recurrences(loaded)
    schema = loaded.exclude(operation_id="deleteOwnAccount")

    @schema.auth(refresh_interval=None)
    class FreshLogin:
        """A new login for every call: a chain may end the session it was called with."""

        def get(self, case, context):
            return _fresh_token(app, fuzz_user["email"], fuzz_user["password"])

        def set(self, case, data, context):
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}

    schema.config.phases.update(phases=["stateful"])
    # Positive data only: a scenario whose first step hypothesis cannot generate is skipped, unsent,
    # and schemathesis' negative mode rejects a share of its own draws (a mutation of a path
    # parameter object it has no operator for), as it did for the 45th scenario's first step,
    # `RANDOM -> POST …/tasks/{task_id}/reminders`, once the recurrence overrun was gone. Negative
    # data is test_operation_honours_the_contract's and `make fuzz`'s (both modes, every phase).
    schema.config.generation.update(
        modes=[GenerationMode.POSITIVE], max_examples=STATEFUL_SCENARIOS, deterministic=True
    )
    schema.config.update(parameters={"path.user_id": fuzz_user["id"]})  # the task paths: its own tasks

    outcomes: list[str] = []
    followed: set[str] = set()
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            outcomes.append(event.status)
            followed.update(node.transition.id for node in event.recorder.cases.values() if node.transition)
            for check in (check for checks in event.recorder.checks.values() for check in checks):
                info = check.failure_info
                assert check.status != Status.FAILURE, f"{check.name}: {info.failure.title}\n{info.code_sample}"
        elif isinstance(event, events.NonFatalError):
            pytest.fail(f"stateful phase error: {event.value!r}")
        elif isinstance(event, events.EngineFinished):
            assert event.stop_reason == "completed"
    assert outcomes
    # Every scenario ran; none was skipped (a test case hypothesis dropped unsent, see CHAIN_RECURRENCE).
    assert all(outcome == Status.SUCCESS for outcome in outcomes), outcomes
    # Calls really were chained through links, not only made one by one: a link from a created
    # resource among them. Which ones the derandomized walk takes moves with every link the
    # contract gains (the conversations' links took it off createTask's), so no single one is named.
    assert any("-> [201]" in link for link in followed), followed
