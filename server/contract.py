"""The contract: load the split OpenAPI document in `openapi/` and bundle it into one.

Connexion, schemathesis and SDK generators all want one self-contained document. Each area
owns its components in ``components/<area>.yaml`` and the ones two or more areas use live in
``components/common.yaml``; a component file holds several kinds, the shape of an OpenAPI
``components`` object (``schemas:``, ``parameters:``, ``headers:``, ``responses:``, …). Path
files refer to them as ``../components/<file>.yaml#/<kind>/<Name>``, component files as
``#/<kind>/<Name>`` (same file) or ``<file>.yaml#/<kind>/<Name>``. Bundling turns each into
``#/components/<kind>/<Name>`` and inlines the path items, the way ``redocly bundle`` does,
so generated clients get named models; a name is unique per kind across all the files.

Run ``python -m server.contract [--out FILE]`` to write the bundled document as JSON.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from limits import parse_many

from services.access import Access
from services.api_keys import KEYLESS_TAGS, Scope

CONTRACT_DIR = Path(__file__).resolve().parent.parent / "openapi"
ROOT_DOCUMENT = CONTRACT_DIR / "openapi.yaml"
COMPONENT_KINDS = {"schemas", "parameters", "headers", "responses", "requestBodies", "examples", "links"}


class ContractError(ValueError):
    """The split document cannot be bundled: a reference that cannot be resolved or bundled, a
    component file that is not a mapping of component kinds, or a name defined twice."""


@cache
def _load(path: Path) -> Any:
    try:
        with path.open(encoding="utf-8") as stream:
            return yaml.safe_load(stream)
    except FileNotFoundError as error:
        raise ContractError(f"no such file: {path}") from error


def component_files(directory: Path) -> dict[Path, dict[str, dict[str, Any]]]:
    """The components of every file in `directory` (``openapi/components``): resolved file path
    -> kind (``schemas``, ``parameters``, …) -> name -> definition; ``{}`` when there is no such
    directory.

    A file holds the kinds it names as top-level keys, like an OpenAPI ``components`` object. A
    file named after a kind (``schemas.yaml``, ``parameters.yaml``, …) holds that one kind, its
    components as top-level keys: the layout before areas owned their components, which
    ``make spec-diff`` still bundles when it compares with an older commit.

    Raises:
        ContractError: a file is not a mapping of component kinds to mappings of components, or
            the same kind and name are defined in two files (names must stay unique).
    """
    files: dict[Path, dict[str, dict[str, Any]]] = {}
    defined_in: dict[tuple[str, str], Path] = {}
    for path in sorted(directory.glob("*.yaml")) if directory.is_dir() else ():
        path = path.resolve()
        document = _load(path) or {}
        sections = {path.stem: document} if path.stem in COMPONENT_KINDS else document
        if not isinstance(sections, dict) or not all(
            kind in COMPONENT_KINDS and isinstance(section, dict) for kind, section in sections.items()
        ):
            kinds = ", ".join(sorted(COMPONENT_KINDS))
            raise ContractError(f"{path.name}: its top-level keys must be component kinds ({kinds})")
        for kind, section in sections.items():
            for name in section:
                other = defined_in.setdefault((kind, name), path)
                if other != path:
                    raise ContractError(f"{kind} {name!r} is defined in both {other.name} and {path.name}")
        files[path] = sections
    return files


def _resolve_pointer(document: Any, pointer: str, where: str) -> Any:
    node = document
    for token in filter(None, pointer.split("/")):
        token = token.replace("~1", "/").replace("~0", "~")
        try:
            node = node[int(token)] if isinstance(node, list) else node[token]
        except (KeyError, IndexError, ValueError) as error:
            raise ContractError(f"unresolvable $ref {where}") from error
    return node


def bundle(root: Path = ROOT_DOCUMENT) -> dict[str, Any]:
    """The whole contract as one dict with only internal ``#/…`` references.

    Args:
        root: path of the root document; path files sit beside it, component files in its
            ``components/`` directory (see `component_files`).

    Raises:
        ContractError: a reference points at a missing file or member, a reference to a
            component file is not ``<file>.yaml#/<kind>/<Name>`` (``#/<Name>`` in a file named
            after its kind), a component file is not one, or two component files define the same
            kind and name.
    """
    root = root.resolve()
    files = component_files(root.parent / "components")
    components: dict[str, dict[str, Any]] = {}

    def rewrite(node: Any, base: Path) -> Any:
        if isinstance(node, list):
            return [rewrite(item, base) for item in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if not isinstance(ref, str):
            rewritten = {key: rewrite(value, base) for key, value in node.items()}
            mapping = (rewritten.get("discriminator") or {}).get("mapping")
            if isinstance(mapping, dict):  # discriminator mappings are references written as strings
                mapping.update({name: rewrite({"$ref": target}, base)["$ref"] for name, target in mapping.items()})
            return rewritten
        file_part, _, pointer = ref.partition("#")
        target = (base.parent / file_part).resolve() if file_part else base
        if target == root:
            return dict(node)
        if target in files:
            tokens = pointer.strip("/").split("/")
            if target.stem in COMPONENT_KINDS:  # a file of one kind, named after it: #/<Name>
                tokens.insert(0, target.stem)
            if len(tokens) != 2 or not all(tokens):
                raise ContractError(f"cannot bundle $ref {ref!r} in {base.name}")
            kind, name = tokens
            definition = _resolve_pointer(files[target], f"/{kind}/{name}", f"{ref!r} in {base.name}")
            section = components.setdefault(kind, {})
            if name not in section:
                section[name] = None  # placeholder: stops recursion on self-references
                section[name] = rewrite(definition, target)
            return {"$ref": f"#/components/{kind}/{name}"}
        return rewrite(_resolve_pointer(_load(target), pointer, f"{ref!r} in {base.name}"), target)

    document = rewrite(_load(root), root)
    merged = document.setdefault("components", {})
    for kind, section in components.items():
        merged.setdefault(kind, {}).update(dict(sorted(section.items())))
    return document


HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


class RouteTable:
    """The contract's operations by method and path, for requests connexion has not routed
    (answered at the edge, or refused): their log line, metrics and `Allow` header.

    Args:
        spec: the bundled contract.
    """

    def __init__(self, spec: dict[str, Any]) -> None:
        self._routes: list[tuple[re.Pattern[str], str, dict[str, str]]] = []
        self.templates: dict[str, str] = {}
        """operationId -> path template."""
        for template, item in spec.get("paths", {}).items():
            pattern = re.compile("^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)) + "$")
            operations = {
                method.upper(): operation["operationId"]
                for method, operation in item.items()
                if method in HTTP_METHODS and isinstance(operation, dict)
            }
            self._routes.append((pattern, template, operations))
            self.templates.update(dict.fromkeys(operations.values(), template))

    def match(self, method: str, path: str) -> tuple[str, str] | None:
        """``(operationId, path template)`` of the operation for `method` and `path`, or None."""
        for pattern, template, operations in self._routes:
            if pattern.match(path):
                operation_id = operations.get(method.upper())
                return (operation_id, template) if operation_id else None
        return None

    def template(self, path: str) -> str | None:
        """The first path template of the contract that `path` matches (literal paths such as
        ``…/tasks/bulk`` come before templated ones such as ``…/tasks/{task_id}``), or None."""
        return next((template for pattern, template, _ in self._routes if pattern.match(path)), None)

    def allowed(self, path: str) -> str | None:
        """The `Allow` header value for `path` (GET implies HEAD), or None when no path matches."""
        for pattern, _, operations in self._routes:
            if pattern.match(path):
                methods = list(operations)
                if "GET" in methods:
                    methods.append("HEAD")
                return ", ".join(methods)
        return None


def access_policies(spec: dict[str, Any]) -> dict[str, Access]:
    """Each operation's access policy (its `x-access`), by operationId.

    Args:
        spec: the bundled contract.

    Raises:
        ContractError: an operation without a policy or with an unknown one; a `public`
            operation that asks for a token, or a token-less one that is not `public`; an
            `owner` operation whose path has no ``{user_id}``, a `visitor` one whose path has
            no ``{conversation_id}`` (the conversation its visitor token must open).
    """
    policies: dict[str, Access] = {}
    default_security = spec.get("security", [])
    for template, item in spec.get("paths", {}).items():
        for method, operation in item.items():
            if method not in HTTP_METHODS or not isinstance(operation, dict):
                continue
            name = operation["operationId"]
            try:
                policy = Access(operation.get("x-access", ""))
            except ValueError:
                allowed = ", ".join(policy.value for policy in Access)
                raise ContractError(f"{name}: x-access must be one of {allowed}") from None
            public = operation.get("security", default_security) in ([], [{}])
            if public != (policy is Access.PUBLIC):
                raise ContractError(
                    f"{name}: x-access {policy} does not match its security {operation.get('security')}"
                )
            if policy is Access.VISITOR and "{conversation_id}" not in template:
                raise ContractError(f"{name}: x-access visitor needs a {{conversation_id}} in its path {template}")
            if policy is Access.OWNER and "{user_id}" not in template:
                raise ContractError(f"{name}: x-access owner needs a {{user_id}} in its path {template}")
            policies[name] = policy
    return policies


def api_key_scopes(spec: dict[str, Any]) -> dict[str, frozenset[str]]:
    """The scopes each operation that admits API keys needs (its `x-api-key-scopes`: a key must
    hold every one), by operationId; an operation without one refuses keys (403).

    Args:
        spec: the bundled contract.

    Raises:
        ContractError: `x-api-key-scopes` that is not a non-empty list of known scopes
            (`services.api_keys.Scope`), or that is declared on a `public`, `visitor` or `admin` operation
            or on an operation of a tag keys never reach (`services.api_keys.KEYLESS_TAGS`).
    """
    known = {scope.value for scope in Scope}
    scopes: dict[str, frozenset[str]] = {}
    for item in spec.get("paths", {}).values():
        for method, operation in item.items():
            if method not in HTTP_METHODS or not isinstance(operation, dict) or "x-api-key-scopes" not in operation:
                continue
            name = operation["operationId"]
            declared = operation["x-api-key-scopes"]
            if not isinstance(declared, list) or not declared:
                raise ContractError(f"{name}: x-api-key-scopes must be a non-empty list of scopes")
            unknown = sorted(str(scope) for scope in declared if scope not in known)
            if unknown:
                names = ", ".join(sorted(known))
                unknown_names = ", ".join(unknown)
                raise ContractError(f"{name}: x-api-key-scopes names unknown scope {unknown_names} (known: {names})")
            if operation.get("x-access") in (Access.PUBLIC, Access.VISITOR, Access.ADMIN):
                raise ContractError(f"{name}: a {operation.get('x-access')} operation cannot admit API keys")
            keyless = sorted(KEYLESS_TAGS.intersection(operation.get("tags", [])))
            if keyless:
                raise ContractError(f"{name}: operations tagged {', '.join(keyless)} never admit API keys")
            scopes[name] = frozenset(declared)
    return scopes


RATE_LIMIT_KEYS = ("client", "user", "account", "refresh_token")
"""What a route limit counts per: the client address, the authenticated user (else the client),
the account a body's ``email`` names, the ``refresh_token`` a body presents."""


@dataclass(frozen=True)
class RouteLimit:
    """One limit of an operation's `x-rate-limits`.

    Attributes:
        name: snake_case; the setting ``RATE_LIMIT_<NAME>`` overrides ``limit`` when the
            settings declare one (``server.settings``). Operations may share a name (and then
            its limit), each counting on its own.
        per: one of `RATE_LIMIT_KEYS`.
        limit: a flask-limiter limit string such as ``"5/minute;20/hour"`` (moving windows).
    """

    name: str
    per: str
    limit: str


def route_limits(spec: dict[str, Any]) -> dict[str, list[RouteLimit]]:
    """Each operation's own rate limits (its `x-rate-limits`), by operationId; operations
    without one are counted only by the edge limit and the per-user limit.

    Args:
        spec: the bundled contract.

    Raises:
        ContractError: a limit that is not a mapping of ``name``, ``per`` and ``limit``; an
            unknown ``per``; a limit string flask-limiter cannot parse; a name used twice or
            not snake_case, or a name given two different limits.
    """
    limits: dict[str, list[RouteLimit]] = {}
    by_name: dict[str, str] = {}
    for item in spec.get("paths", {}).values():
        for method, operation in item.items():
            if method not in HTTP_METHODS or not isinstance(operation, dict) or "x-rate-limits" not in operation:
                continue
            operation_id = operation["operationId"]
            declared = operation["x-rate-limits"]
            if not isinstance(declared, list) or not declared:
                raise ContractError(f"{operation_id}: x-rate-limits must be a non-empty list")
            for entry in declared:
                if not isinstance(entry, dict) or set(entry) != {"name", "per", "limit"}:
                    raise ContractError(f"{operation_id}: each x-rate-limits entry has exactly name, per and limit")
                limit = RouteLimit(str(entry["name"]), str(entry["per"]), str(entry["limit"]))
                if not re.fullmatch(r"[a-z][a-z0-9_]*", limit.name):
                    raise ContractError(f"{operation_id}: x-rate-limits name {limit.name!r} is not snake_case")
                if by_name.setdefault(limit.name, limit.limit) != limit.limit:
                    raise ContractError(f"{operation_id}: x-rate-limits {limit.name} has two different limits")
                if limit.per not in RATE_LIMIT_KEYS:
                    raise ContractError(
                        f"{operation_id}: x-rate-limits per must be one of {', '.join(RATE_LIMIT_KEYS)}"
                    )
                try:
                    parse_many(limit.limit)
                except ValueError:
                    raise ContractError(f"{operation_id}: x-rate-limits limit {limit.limit!r} is malformed") from None
                limits.setdefault(operation_id, []).append(limit)
    return limits


def main(argv: list[str] | None = None) -> int:
    """CLI: write the bundled contract as JSON to --out (default: standard output)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="file to write; standard output when omitted")
    args = parser.parse_args(argv)
    text = json.dumps(bundle(), indent=2, ensure_ascii=False) + "\n"
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
