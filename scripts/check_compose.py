"""`make lint`: check compose.yaml without Docker.

Two passes:

1. the Compose specification, through `compose-spec` (Python bindings of the `compose_spec`
   Rust crate): unknown keys, wrong types and malformed durations are refused;
2. what the specification cannot know, from the file loaded with PyYAML:
   - every service has an `image` or a `build`, and a `healthcheck` (a test, or `disable: true`);
   - every `depends_on` names a service of the file, with a condition; `service_healthy` only on
     a service whose healthcheck has a test, `service_completed_successfully` only on a one-shot
     (`restart: "no"`) service;
   - every named volume a service mounts is declared under `volumes`;
   - the Charter services run a real `charter` subcommand (serve, worker, migrate), `serve`
     binds 0.0.0.0, and every environment variable they get is a setting of
     `server.settings.Settings` (so a renamed setting cannot silently stop applying).

Exit status 0 and nothing printed when the file is fine; 1 and one line per problem otherwise.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
CHARTER_COMMANDS = {"serve", "worker", "migrate"}


def setting_names() -> set[str]:
    """The environment variables the settings read (field names, upper-cased)."""
    sys.path.insert(0, str(ROOT))
    from server.settings import Settings

    return {name.upper() for name in Settings.model_fields}


_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def interpolated(text: str) -> str:
    """`text` with Compose's variable interpolation done as with an empty environment, but every
    required variable (`${NAME}`, `${NAME:?message}`) given the value `placeholder`: Compose
    interpolates before it validates."""

    def value(match: re.Match[str]) -> str:
        operator, operand = match.group(2), match.group(3)
        return operand if operator in (":-", "-") else "placeholder"

    return _VARIABLE.sub(value, text)


def spec_problems(text: str) -> list[str]:
    """What the Compose specification refuses in `text` (empty: nothing), after interpolation."""
    from compose_spec import PyCompose

    try:
        PyCompose.from_yaml(interpolated(text)).validate()
    except ValueError as error:
        return [f"compose specification: {error}"]
    return []


def _is_charter(service: dict[str, Any]) -> bool:
    return "charter" in str(service.get("image", "")) or "build" in service


def structure_problems(document: dict[str, Any], settings: set[str]) -> list[str]:
    """What the checks of the module documentation find in the loaded file."""
    problems: list[str] = []
    services: dict[str, Any] = document.get("services") or {}
    declared_volumes = set((document.get("volumes") or {}).keys())
    if not services:
        return ["no services"]
    charter = {name for name, service in services.items() if _is_charter(service)}
    for name, service in services.items():
        where = f"services.{name}"
        if "image" not in service and "build" not in service:
            problems.append(f"{where}: neither image nor build")
        health = service.get("healthcheck")
        if not isinstance(health, dict) or not (health.get("test") or health.get("disable") is True):
            problems.append(f"{where}: no healthcheck (give a test, or `disable: true` with the reason)")
        depends = service.get("depends_on") or {}
        if isinstance(depends, list):
            problems.append(f"{where}.depends_on: a list has no conditions; map each service to its condition")
            depends = {}
        for other, rule in depends.items():
            if other not in services:
                problems.append(f"{where}.depends_on: {other!r} is not a service of this file")
                continue
            condition = (rule or {}).get("condition")
            if condition not in CONDITIONS:
                known = sorted(CONDITIONS)
                problems.append(f"{where}.depends_on.{other}: condition {condition!r} is not one of {known}")
            target = services[other]
            target_health = target.get("healthcheck") or {}
            if condition == "service_healthy" and not target_health.get("test"):
                problems.append(f"{where}.depends_on.{other}: service_healthy, but {other} has no healthcheck test")
            if condition == "service_completed_successfully" and target.get("restart", "no") != "no":
                problems.append(f"{where}.depends_on.{other}: waits for completion, but {other} restarts")
        for mount in service.get("volumes") or []:
            source = mount.split(":", 1)[0] if isinstance(mount, str) else mount.get("source", "")
            if source and not source.startswith((".", "/", "$")) and source not in declared_volumes:
                problems.append(f"{where}.volumes: {source!r} is not declared under volumes")
        if name in charter:
            command = service.get("command") or ["serve"]
            if not isinstance(command, list) or command[0] not in CHARTER_COMMANDS:
                problems.append(f"{where}.command: {command!r} is not one of charter {sorted(CHARTER_COMMANDS)}")
            elif command[0] == "serve" and "0.0.0.0" not in command:  # noqa: S104 - what a container must bind
                problems.append(f"{where}.command: serve must bind --host 0.0.0.0 in a container")
            environment = service.get("environment") or {}
            if isinstance(environment, list):
                environment = dict(item.split("=", 1) for item in environment)
            for variable in environment:
                if variable not in settings:
                    problems.append(f"{where}.environment: {variable} is not a setting (server/settings.py)")
    return problems


def check(path: Path) -> list[str]:
    """Every problem with the compose file at `path` (empty: none)."""
    text = path.read_text()
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        return [f"not YAML: {error}"]
    if not isinstance(document, dict):
        return ["not a mapping"]
    return spec_problems(text) + structure_problems(document, setting_names())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", type=Path, default=ROOT / "compose.yaml")
    args = parser.parse_args(argv)
    problems = check(args.path)
    for problem in problems:
        print(f"{args.path.name}: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
