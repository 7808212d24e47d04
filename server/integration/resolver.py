"""How connexion finds and answers with our handlers: operations resolved by tag and
operationId to ``handlers.<tag>.<operation_id>``, JSON rendered with orjson."""

from __future__ import annotations

from typing import Any

import inflection
import orjson
from connexion.resolver import Resolution, Resolver


class OrjsonModule:
    """The `json` module interface connexion's Jsonifier calls, backed by orjson (compact
    UTF-8, several times faster than the standard library on answer bodies)."""

    @staticmethod
    def dumps(data: Any, **_options: Any) -> str:
        return orjson.dumps(data).decode("utf-8")

    @staticmethod
    def loads(data: str | bytes) -> Any:
        return orjson.loads(data)


class TagResolver(Resolver):
    """Resolve an operation to ``handlers.<tag>.<operationId in snake_case>``: camelCase
    operationIds for SDKs, one handler module per tag for us (ARCHITECTURE.md)."""

    def resolve(self, operation: Any) -> Resolution:
        tag = operation._operation["tags"][0]
        module = inflection.underscore(tag).replace("-", "_")
        function = inflection.underscore(operation.operation_id)
        return Resolution(
            self.resolve_function_from_operation_id(f"handlers.{module}.{function}"), operation.operation_id
        )
