"""Request validators for connexion that report every invalid field by name.

Connexion's stock validators stop at the first error, describe it in one string, build a
new jsonschema validator on every request, and answer 500 for a body that is not UTF-8
(spec-first/connexion#1860). These subclasses keep connexion's validation rules and fix that:
each error names its field (`pointer`, RFC 6901) or parameter, and validators are compiled
once per operation. They are passed to ``add_api(validator_map=...)``.
"""

from __future__ import annotations

import codecs
import collections
import json
import re
import typing as t

import fastjsonschema
import orjson
from connexion.datastructures import MediaTypeDict
from connexion.exceptions import NonConformingResponseBody
from connexion.json_schema import Draft4RequestValidator, Draft4ResponseValidator
from connexion.lifecycle import ConnexionRequest
from connexion.utils import is_null, is_nullable
from connexion.validators import (
    VALIDATOR_MAP,
    JSONRequestBodyValidator,
    JSONResponseBodyValidator,
    ParameterValidator,
    TextResponseBodyValidator,
)
from jsonschema import Draft4Validator, FormatChecker, ValidationError
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import Receive, Scope, Send

from server.contract import RouteTable
from server.integration.problems import RequestValidationProblem

FORMAT_CHECKER = FormatChecker()
"""Every format jsonschema knows (uuid, date-time with rfc3339-validator, email, …), not only
the draft-4 ones connexion checks by default."""

MAX_ERRORS = 100

_COMPILED: dict[tuple[str, int], tuple[t.Any, t.Any]] = {}


def _cached(kind: str, schema: t.Any, build: t.Callable[[], t.Any]) -> t.Any:
    """One compiled validator per schema object: connexion makes a validator instance per
    request, but an operation's schemas are the same objects every time. The schema is kept
    in the cache beside its validator, so its id cannot be reused by another object."""
    key = (kind, id(schema))
    hit = _COMPILED.get(key)
    if hit is None or hit[0] is not schema:
        hit = _COMPILED[key] = (schema, build())
    return hit[1]


MAX_MESSAGE = 300
"""jsonschema quotes the offending value in its messages; a long value is cut so the problem
stays within the contract's limits (FieldError.message, maxLength 2000)."""

_NO_BODY = object()
"""What `_parse` returns for an empty body, told apart from a JSON `null` body."""


def _short(message: str) -> str:
    return message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 1] + "…"


OAS_ONLY_KEYWORDS = {
    "nullable",
    "example",
    "examples",
    "discriminator",
    "xml",
    "externalDocs",
    "deprecated",
    "readOnly",
    "writeOnly",
    "components",
}


def to_json_schema(schema: t.Any, *, response: bool) -> t.Any:
    """An OpenAPI 3.0 schema as plain JSON Schema (draft 4) for fastjsonschema, with the
    meaning connexion's validators give it: `nullable` admits null, and in a response a
    `writeOnly` property must not appear (a secret leaking out)."""
    if isinstance(schema, list):
        return [to_json_schema(item, response=response) for item in schema]
    if not isinstance(schema, dict):
        return schema
    converted = {
        key: to_json_schema(value, response=response)
        for key, value in schema.items()
        if key not in OAS_ONLY_KEYWORDS and key != "properties"
    }
    if "properties" in schema:
        converted["properties"] = {
            name: (
                False
                if response and isinstance(sub, dict) and sub.get("writeOnly")
                else to_json_schema(sub, response=response)
            )
            for name, sub in schema["properties"].items()
        }
    if schema.get("nullable"):
        if "type" in converted:
            kinds = converted["type"] if isinstance(converted["type"], list) else [converted["type"]]
            converted["type"] = [*kinds, "null"]
        if "enum" in converted:
            converted["enum"] = [*converted["enum"], None]
        for combinator in ("allOf", "oneOf", "anyOf"):
            if combinator in converted:
                converted = {"anyOf": [{"type": "null"}, converted]}
                break
    return converted


def _formats(schema: t.Any, found: set[str]) -> set[str]:
    # Skips "components": connexion attaches the whole (self-containing) components to schemas.
    if isinstance(schema, dict):
        if isinstance(schema.get("format"), str):
            found.add(schema["format"])
        for key, value in schema.items():
            if key != "components":
                _formats(value, found)
    elif isinstance(schema, list):
        for value in schema:
            _formats(value, found)
    return found


def format_verdict(name: str) -> t.Callable[[t.Any], bool]:
    """Whether a value conforms to the format `name`, by the function `FORMAT_CHECKER` holds
    for it, called directly: ``FormatChecker.conforms`` gives the same verdict (False when the
    function answers falsy or raises one of its declared errors) through two more calls and an
    exception per refusal, a cost paid for every uuid and date-time of every answer (issue 13).
    Unknown formats conform, as in jsonschema."""
    if name not in FORMAT_CHECKER.checkers:
        return lambda _value: True
    check, raises = FORMAT_CHECKER.checkers[name]

    def conforms(value: t.Any) -> bool:
        try:
            return bool(check(value))
        except raises:
            return False

    return conforms


class FastCheck:
    """A compiled validity check (fastjsonschema: the schema turned into Python code once),
    for the common case of valid data. Formats are checked by the same functions as the
    jsonschema validators, so the fast check never accepts what they would refuse; when it
    refuses, the jsonschema validator (the authority, which also names each error) decides.
    """

    def __init__(self, schema: dict, *, response: bool) -> None:
        formats = {name: format_verdict(name) for name in _formats(schema, set())}
        self._check = fastjsonschema.compile(to_json_schema(schema, response=response), formats=formats)

    def __call__(self, instance: t.Any) -> bool:
        """Whether `instance` is valid."""
        try:
            self._check(instance)
        except fastjsonschema.JsonSchemaException:
            return False
        return True


def json_pointer(path: t.Iterable[t.Any]) -> str:
    """RFC 6901 pointer for a jsonschema error path, e.g. ``['tags', 0]`` -> ``/tags/0``."""
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in path)


def _body_errors(validator: Draft4Validator, body: t.Any) -> list[dict[str, str]]:
    found = []
    for error in sorted(validator.iter_errors(body), key=lambda e: list(map(str, e.absolute_path))):
        path = list(error.absolute_path)
        if error.validator == "required" and isinstance(error.instance, dict):
            missing = [name for name in error.validator_value if name not in error.instance]
            path += missing[:1]
        elif error.validator == "additionalProperties" and isinstance(error.instance, dict):
            allowed = set(error.schema.get("properties", {}))
            extra = sorted(name for name in error.instance if name not in allowed)
            path += extra[:1]
        found.append({"pointer": json_pointer(path), "message": _short(error.message)})
        if len(found) == MAX_ERRORS:
            break
    return found


class ProblemRequestBodyValidator(JSONRequestBodyValidator):
    """JSON body validator: strict UTF-8, one compiled validator, every error with a pointer."""

    def __init__(self, **kwargs: t.Any) -> None:
        super().__init__(**kwargs)
        self._compiled, self._fast = _cached(
            "request",
            self._schema,
            lambda: (
                Draft4RequestValidator(self._schema, format_checker=FORMAT_CHECKER),
                FastCheck(self._schema, response=False),
            ),
        )

    @property
    def _validator(self) -> Draft4Validator:
        return self._compiled

    async def wrap_receive(self, receive: Receive, *, scope: Scope) -> tuple[Receive, Scope]:
        """Connexion takes a body without Content-Length for no body at all, so a chunked body
        would be refused as missing (or skip validation when optional). Such a body is read,
        validated, and handed on re-encoded with a Content-Length.

        A body whose schema is marked ``x-raw-body: true`` is handed on untouched, neither
        parsed nor validated: its handler checks a signature over the exact bytes before
        anything reads them (the payment providers' webhooks, issue 17)."""
        if isinstance(self._schema, dict) and self._schema.get("x-raw-body") is True:
            return receive, scope
        headers = Headers(scope=scope)
        if "content-length" in headers or "chunked" not in headers.get("transfer-encoding", "").lower():
            return await super().wrap_receive(receive, scope=scope)
        chunks = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)

        async def stream() -> t.AsyncGenerator[bytes, None]:
            yield b"".join(chunks)

        body = await self._parse(stream(), scope=scope)
        self._validate(body)
        if body is _NO_BODY:
            return receive, scope
        scope = {**scope, "headers": [(k, v) for k, v in scope["headers"] if k.lower() != b"transfer-encoding"]}
        return self._insert_body(receive, body=body, scope=scope)

    async def _parse(self, stream: t.AsyncGenerator[bytes, None], scope: Scope) -> t.Any:
        raw = b"".join([chunk async for chunk in stream])
        if not raw:
            return _NO_BODY
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise RequestValidationProblem(
                "The request body is not valid UTF-8 text.",
                [{"pointer": "", "message": f"invalid UTF-8 at byte {error.start}"}],
            ) from None
        try:
            return json.loads(text)
        except json.JSONDecodeError as error:
            raise RequestValidationProblem(
                "The request body is not valid JSON.",
                [{"pointer": "", "message": f"{error.msg} at line {error.lineno} column {error.colno}"}],
            ) from None

    def _validate(self, body: t.Any) -> dict | None:
        if body is _NO_BODY:
            if not self._required:
                return None  # an optional body that was left out (e.g. PATCH …/complete)
            raise RequestValidationProblem(
                "The request body must not be empty.", [{"pointer": "", "message": "a JSON body is required"}]
            )
        if self._fast(body):
            return None
        found = _body_errors(self._compiled, body)
        if found:
            raise RequestValidationProblem("The request body does not match the schema.", found)
        return None


def _printable(name: str, limit: int = 200) -> str:
    """A client-chosen name made safe to echo: control characters replaced, length capped."""
    cleaned = "".join("\ufffd" if ord(ch) < 0x20 or ord(ch) == 0x7F else ch for ch in name)
    return cleaned[:limit] or "\ufffd"


class ProblemParameterValidator(ParameterValidator):
    """Query, path and header parameter validator that reports every invalid parameter.

    Connexion's router sends ``PUT …/tasks/bulk`` to ``PUT …/tasks/{task_id}`` (the literal
    path has no PUT), where ``bulk`` is an invalid task id. Such a request is about the literal
    resource, whose methods are listed by the 405 answer; `routes` (set by the app) tells.
    """

    routes: RouteTable | None = None

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        self.parameters, self._compiled = _cached(
            "parameters", args[0] if args else kwargs["parameters"], lambda: self._compile(self.parameters)
        )

    @staticmethod
    def _compile(by_location: dict[str, list[dict]]) -> tuple[dict[str, list[dict]], dict]:
        # Path-level and operation-level parameters may repeat: keep one of each.
        unique = {location: list({p["name"]: p for p in params}.values()) for location, params in by_location.items()}
        compiled = {
            (p["in"], p["name"]): (
                Draft4Validator(p.get("schema", p), format_checker=FORMAT_CHECKER),
                FastCheck(p.get("schema", p), response=False),
            )
            for params in unique.values()
            for p in params
        }
        return collections.defaultdict(list, unique), compiled

    def _check(self, param: dict, value: t.Any) -> str | None:
        if is_nullable(param) and is_null(value):
            return None
        if value is None:
            return f"the {param['in']} parameter '{param['name']}' is required" if param.get("required") else None
        validator, fast = self._compiled[(param["in"], param["name"])]
        if fast(value):  # the common case, a valid value, without jsonschema's machinery
            return None
        try:
            validator.validate(value)  # the authority, and its message
        except ValidationError as error:
            return _short(error.message)
        return None

    def validate(self, scope: Scope) -> None:
        """Connexion's entry point. An operation that declares no parameter, asked without a
        query string, has nothing to check (no unknown query parameter, no missing one): the
        same verdict, without building a request (issue 13)."""
        if not self._declares_parameters and not scope.get("query_string"):
            return
        super().validate(scope)

    @property
    def _declares_parameters(self) -> bool:
        return any(self.parameters.values())

    def validate_request(self, request: ConnexionRequest) -> None:
        found: list[dict[str, str]] = []
        if self.strict_validation:
            for name in sorted(self.validate_query_parameter_list(request, self.security_query_params)):
                found.append({"parameter": _printable(name), "in": "query", "message": "unknown query parameter"})
        sources = {
            "query": request.query_params,
            "path": request.path_params,
            "header": request.headers,
            "cookie": request.cookies,
        }
        for location, params in self.parameters.items():
            values = sources.get(location, {})
            for param in params:
                key = param["name"].replace("-", "_") if location == "path" else param["name"]
                message = self._check(param, values.get(key))
                if message:
                    found.append({"parameter": param["name"], "in": location, "message": message})
        bad_path_parameters = {entry["parameter"] for entry in found if entry.get("in") == "path"}
        if bad_path_parameters and self.routes is not None:
            template = self.routes.template(request.url.path)
            if template is not None and not any(f"{{{name}}}" in template for name in bad_path_parameters):
                raise HTTPException(status_code=405)
        if found:
            names = ", ".join(sorted({entry["parameter"] for entry in found}))
            if len(names) > 500:
                names = names[:500] + "…"
            raise RequestValidationProblem(f"Invalid or unknown parameters: {names}.", found[:MAX_ERRORS])


class CompiledResponseBodyValidator(JSONResponseBodyValidator):
    """Connexion's JSON response validator, compiled once per schema: a fastjsonschema check
    for valid answers, connexion's own jsonschema validation (and its error) for the others."""

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        self._compiled, self._fast = _response_validators_for(self._schema)

    @property
    def validator(self) -> Draft4Validator:
        return self._compiled

    def wrap_send(self, send: Send) -> Send:
        """A HEAD answer has the GET's headers and no body (RFC 9110 section 9.3.2; Flask runs
        the GET view and drops the body): there is nothing to check, and checking the empty body
        answered 500 ("None is not of type 'object'") to every HEAD on a JSON operation."""
        if self._scope.get("method") == "HEAD":
            return send
        return super().wrap_send(send)

    def _parse(self, stream: t.Generator[bytes, None, None]) -> t.Any:
        raw = b"".join(stream)
        if _CHECKED_ANSWERS.pop((id(self._fast), raw), False):
            return _ALREADY_CHECKED
        if raw:
            parsed = parsed_answer(raw)
            if parsed is not _UNPARSED:
                return parsed
        return super()._parse(iter((raw,)))  # connexion's own parse, and its error

    def _validate(self, body: t.Any) -> None:
        if body is _ALREADY_CHECKED:
            return
        if not self._fast(body):
            super()._validate(body)


_UNPARSED = object()


def parsed_answer(raw: bytes) -> t.Any:
    """An answer's JSON parsed with orjson (a fraction of `json.loads`'s cost on a page of
    tasks), or `_UNPARSED` when orjson would read it differently from `json`; the caller then
    parses with `json`, so a verdict never changes. orjson refuses what strict RFC 8259 refuses
    (NaN, bad UTF-8) and reads an integer beyond 64 bits as a float where `json` keeps an int:
    a body with a run of 19 or more digits anywhere is left to `json`. Our answers are written
    by orjson in the first place (`server.integration.resolver`)."""
    if _LONG_DIGIT_RUN.search(raw):
        return _UNPARSED
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _UNPARSED


_LONG_DIGIT_RUN = re.compile(rb"[0-9]{19,}")


_ALREADY_CHECKED = object()
"""What `CompiledResponseBodyValidator._parse` answers for a body `check_response_body` passed."""

_CHECKED_ANSWERS: dict[tuple[int, bytes], bool] = {}
"""Bodies `check_response_body` found valid, by (their schema's fast check, the bytes), until
connexion's response validation meets them: the same bytes against the same schema get the same
verdict, so a write's answer is parsed and checked once, not twice (issue 13). At most
`CHECKED_ANSWERS` are kept (an answer that never reaches connexion is forgotten, oldest first)."""

CHECKED_ANSWERS = 256


def _response_validators_for(schema: dict) -> tuple[Draft4Validator, FastCheck]:
    return _cached(
        "response",
        schema,
        lambda: (Draft4ResponseValidator(schema, format_checker=FORMAT_CHECKER), FastCheck(schema, response=True)),
    )


class RawTextResponseBodyValidator(TextResponseBodyValidator):
    """connexion's `text/plain` answer validator, without its guess: connexion parses a text
    answer as JSON when it can (a document holding ``42`` would be checked as a number) and
    fails on bytes that are not in the declared charset. A text answer is a string here, its
    bytes decoded with the declared charset (UTF-8 when none or an unknown one), undecodable
    bytes replaced: an uploaded text document is served as it was stored."""

    def _parse(self, stream: t.Generator[bytes, None, None]) -> str:  # type: ignore[override]
        try:
            encoding = codecs.lookup(self._encoding).name
        except LookupError:
            encoding = "utf-8"
        return b"".join(stream).decode(encoding, errors="replace")


VALIDATORS = {
    **VALIDATOR_MAP,
    "parameter": ProblemParameterValidator,
    "body": MediaTypeDict({"*/*json": ProblemRequestBodyValidator}),
    "response": MediaTypeDict(
        {
            **VALIDATOR_MAP["response"],
            "*/*json": CompiledResponseBodyValidator,
            "text/plain": RawTextResponseBodyValidator,
        }
    ),
}
"""The `validator_map` for ``add_api``."""


def check_response_body(operation: t.Any, status: int, mimetype: str, body: bytes) -> None:
    """Validate a JSON answer against the operation's response schema.

    Used before committing a write (see `server.app`); connexion's own response validation
    runs later, after the commit would have happened, and does not check a body that passed
    here again (`_CHECKED_ANSWERS`).

    Raises:
        connexion.exceptions.NonConformingResponseBody: the body breaks the contract (a 500).
    """
    if not body or not mimetype.endswith("json"):
        return
    schema = operation.response_schema(str(status), mimetype)
    if not schema:
        return
    validator, fast = _response_validators_for(schema)
    instance = parsed_answer(body)
    if instance is _UNPARSED:
        instance = json.loads(body)
    if fast(instance):
        if len(_CHECKED_ANSWERS) >= CHECKED_ANSWERS:
            _CHECKED_ANSWERS.pop(next(iter(_CHECKED_ANSWERS), (0, b"")), None)
        _CHECKED_ANSWERS[(id(fast), body)] = True
        return
    try:
        validator.validate(instance)
    except ValidationError as error:
        raise NonConformingResponseBody(detail=f"response breaks the contract: {_short(error.message)}") from None
