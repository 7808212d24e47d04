"""The contract's layout: an area's components live in ``components/<area>.yaml`` and are used by
that area alone (its path file, directly or through other components); ``components/common.yaml``
holds only what two or more areas (or openapi.yaml itself) use. A component name defined in two
files cannot be bundled."""

from __future__ import annotations

import shutil
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from server.contract import ContractError, bundle, component_files
from tests.helpers import ROOT

CONTRACT = ROOT / "openapi"
COMPONENTS = CONTRACT / "components"
Component = tuple[Path, str, str]  # file, kind, name


def _refs(node: Any) -> Iterator[str]:
    """Every $ref in `node`, discriminator mappings included."""
    if isinstance(node, list):
        for item in node:
            yield from _refs(item)
    elif isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        mapping = (node.get("discriminator") or {}).get("mapping") or {}
        yield from mapping.values()
        for value in node.values():
            yield from _refs(value)


def _users() -> dict[Component, set[str]]:
    """Each component -> the areas (path file stems, or ``openapi``) that use it, directly or
    through other components."""
    files = component_files(COMPONENTS)
    used_by: dict[Component, set[str]] = defaultdict(set)

    def visit(node: Any, base: Path, user: str) -> None:
        for ref in _refs(node):
            file_part, _, pointer = ref.partition("#")
            target = (base.parent / file_part).resolve() if file_part else base
            if target in files:
                kind, name = pointer.strip("/").split("/")
                if user not in used_by[(target, kind, name)]:
                    used_by[(target, kind, name)].add(user)
                    visit(files[target][kind][name], target, user)

    root = CONTRACT / "openapi.yaml"
    document = yaml.safe_load(root.read_text())
    visit({key: value for key, value in document.items() if key != "paths"}, root.resolve(), "openapi")
    for path_file in sorted((CONTRACT / "paths").glob("*.yaml")):
        visit(yaml.safe_load(path_file.read_text()), path_file.resolve(), path_file.stem)
    return {
        (path, kind, name): used_by.get((path, kind, name), set())
        for path, sections in files.items()
        for kind, section in sections.items()
        for name in section
    }


def _home(users: set[str]) -> str | None:
    """The file a component used by `users` belongs in: its area's when one area uses it, else
    common.yaml; None when nothing uses it."""
    if len(users) == 1 and "openapi" not in users:
        return f"{next(iter(users))}.yaml"
    return "common.yaml" if users else None


def test_each_component_lives_in_the_file_of_the_areas_that_use_it():
    misplaced = [
        f"{path.name}#/{kind}/{name}, used by {sorted(users)}: " + (f"belongs in {home}" if home else "unused")
        for (path, kind, name), users in sorted(_users().items())
        if path.name != (home := _home(users))
    ]
    assert not misplaced, "\n".join(misplaced)


def test_a_name_defined_in_two_files_cannot_be_bundled(tmp_path):
    contract = tmp_path / "openapi"
    shutil.copytree(CONTRACT, contract)
    tasks = contract / "components" / "tasks.yaml"
    document = yaml.safe_load(tasks.read_text())
    document["schemas"]["Problem"] = {"type": "object"}  # common.yaml already defines it
    tasks.write_text(yaml.safe_dump(document, sort_keys=False))
    with pytest.raises(ContractError, match=r"schemas 'Problem' is defined in both common\.yaml and tasks\.yaml"):
        bundle(contract / "openapi.yaml")
