"""The compiled fast checks (fastjsonschema) mean what connexion's jsonschema validators mean:
they must never accept what those refuse, since valid answers skip the slower validator."""

from __future__ import annotations

import pytest
from connexion.json_schema import Draft4RequestValidator, Draft4ResponseValidator, resolve_refs
from jsonschema import Draft4Validator

from server.contract import bundle
from server.integration import content_type
from server.integration.validation import FORMAT_CHECKER, FastCheck, format_verdict

SCHEMAS = resolve_refs(bundle())["components"]["schemas"]


def _agree(name: str, instance: object, *, response: bool) -> bool:
    schema = SCHEMAS[name]
    validator = (Draft4ResponseValidator if response else Draft4RequestValidator)(schema, format_checker=FORMAT_CHECKER)
    fast = FastCheck(schema, response=response)(instance)
    assert fast == validator.is_valid(instance), (name, instance)
    return fast


TASK = {
    "id": "5b3f9f2e-9c5e-4a8e-8a8c-3a3d3b2c1a10",
    "title": "T",
    "description": None,
    "completed": False,
    "completed_at": None,
    "priority": "high",
    "due_at": None,
    "tags": [],
    "version": 1,
    "created_at": "2026-11-22T10:15:30.123456Z",
    "updated_at": "2026-11-22T10:15:30.123456Z",
}


def test_nullable_fields_accept_null_and_their_type():
    assert _agree("Task", TASK, response=True)
    assert _agree("Task", {**TASK, "description": "text", "due_at": "2026-12-01T17:00:00Z"}, response=True)


@pytest.mark.parametrize(
    "change",
    [
        {"priority": "critical"},
        {"due_at": "tomorrow"},
        {"version": 0},
        {"tags": ["x"] * 21},
        {"title": ""},
        {"id": 5},
        {"completed": None},
    ],
)
def test_invalid_answers_are_refused_by_both(change):
    assert not _agree("Task", {**TASK, **change}, response=True)


def test_a_write_only_field_in_an_answer_is_refused():
    body = {"email": "ada@example.com", "password": "secret secret secret", "display_name": "Ada"}
    assert not FastCheck(SCHEMAS["RegisterRequest"], response=True)(body)
    assert FastCheck(SCHEMAS["RegisterRequest"], response=False)(body)


@pytest.mark.parametrize(
    "body",
    [
        {"email": "ada@example.com", "password": "x" * 15, "display_name": "Ada"},
        {"email": "not-an-email", "password": "x" * 15, "display_name": "Ada"},
        {"email": "ada@example.com", "password": "x" * 15, "display_name": "   "},
        {"email": "ada@example.com", "password": "x" * 15, "display_name": "Ada", "role": "admin"},
    ],
)
def test_request_bodies_are_judged_alike(body):
    _agree("RegisterRequest", body, response=False)


@pytest.mark.parametrize(
    "value",
    [
        "2026-11-22T10:15:30.123456Z",
        "2026-02-29T10:15:30Z",  # not a leap year
        "2024-02-29T10:15:30+01:00",
        "2026-11-22 10:15:30Z",
        "5b3f9f2e-9c5e-4a8e-8a8c-3a3d3b2c1a10",
        "5b3f9f2e9c5e4a8e8a8c3a3d3b2c1a10",
        "not-a-uuid",
        "ada@example.com",
        "ada",
        "",
        5,
        None,
    ],
)
@pytest.mark.parametrize("name", ["date-time", "uuid", "email", "date", "ipv4", "no-such-format"])
def test_the_fast_format_verdicts_are_jsonschemas(name, value):
    assert format_verdict(name)(value) is FORMAT_CHECKER.conforms(value, name)


PARAMETERS = [
    parameter
    for item in resolve_refs(bundle())["paths"].values()
    for operation in item.values()
    if isinstance(operation, dict)
    for parameter in operation.get("parameters", [])
]
SAMPLES = ["", "abc", "5b3f9f2e-9c5e-4a8e-8a8c-3a3d3b2c1a10", "-created_at", "x" * 300, 0, 1, 20, 101, -1, True, ["a"]]


@pytest.mark.parametrize("parameter", PARAMETERS, ids=lambda p: f"{p['in']}:{p['name']}")
def test_the_fast_parameter_checks_agree_with_jsonschema(parameter):
    schema = parameter.get("schema", parameter)
    validator = Draft4Validator(schema, format_checker=FORMAT_CHECKER)
    fast = FastCheck(schema, response=False)
    assert [fast(value) for value in SAMPLES] == [validator.is_valid(value) for value in SAMPLES]


@pytest.mark.parametrize(
    "headers",
    [
        [(b"host", b"x"), (b"content-type", b"application/json; charset=utf-8")],
        [(b"Content-Type", b"text/plain"), (b"content-type", b"application/json")],
        [(b"accept", b"*/*")],
        [],
        [("Content-TYPE", "application/problem+json")],
        {"content-type": "application/json"},
        {"Accept": "x"},
        [(b"content-type", "caf\xe9".encode("latin-1"))],
    ],
)
def test_the_cheaper_content_type_helper_answers_as_connexions(headers):
    assert content_type.extract_content_type(headers) == content_type.ORIGINAL(headers)


def test_a_writes_answer_is_checked_once_before_the_commit_and_not_again(client, account, monkeypatch):
    from server.integration import validation
    from tests.helpers import bearer

    checks = []
    original = validation.FastCheck.__call__

    def counting(self, instance):
        checks.append(instance.get("title") if isinstance(instance, dict) else instance)
        return original(self, instance)

    monkeypatch.setattr(validation.FastCheck, "__call__", counting)
    validation._CHECKED_ANSWERS.clear()
    answer = client.post(account.tasks_path, json={"title": "checked once"}, headers=bearer(account.access_token))
    assert answer.status_code == 201
    assert checks.count("checked once") == 2  # the request body, then the answer before the commit
    assert validation._CHECKED_ANSWERS == {}  # connexion's validation met the answer and let it through


@pytest.mark.parametrize(
    "raw",
    [
        b'{"items": [{"id": "x", "n": 1.5e300, "t": "caf\\u00e9 \\ud83d\\ude00"}], "next_cursor": null}',
        b'{"a": 1, "a": 2}',
        b'{"big": 123456789012345678901234567890}',
        b'{"n": NaN}',
        b"[1, 2, 3]",
        b'"text"',
    ],
)
def test_answers_parse_as_json_reads_them(raw):
    import json

    from server.integration.validation import _UNPARSED, parsed_answer

    parsed = parsed_answer(raw)
    if parsed is not _UNPARSED:
        assert parsed == json.loads(raw)
    else:
        assert raw in (b'{"big": 123456789012345678901234567890}', b'{"n": NaN}')  # left to json, as before
