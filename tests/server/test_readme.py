"""The README stays true: its configuration table names every setting, and no setting it
names is missing from the code; its table of problem types lists exactly the problems the
service answers, each with the status its error class declares."""

from __future__ import annotations

import importlib
import pkgutil
import re

import handlers
import services
from server.contract import bundle, route_limits
from server.integration.problems import known_problem_types
from server.settings import Settings
from tests.helpers import ROOT

README = ROOT / "README.md"


def _documented() -> set[str]:
    section = README.read_text().split("## Configuration", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([A-Z_]+)` \|", section, flags=re.MULTILINE))


def test_every_setting_is_documented():
    assert {name.upper() for name in Settings.model_fields} == _documented()


def _documented_problems() -> dict[str, int]:
    rows = re.findall(r"^\| `(/problems/[a-z0-9-]+)` \| (\d{3}) \|", README.read_text(), flags=re.MULTILINE)
    return {type_: int(status) for type_, status in rows}


def test_every_problem_type_is_documented_with_its_status():
    for package in (services, handlers):  # every area's errors, wherever they are defined
        for module in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            importlib.import_module(module.name)
    declared = {type_: problem.status for type_, problem in known_problem_types().items()}
    test_only = {type_ for type_ in declared if type_.startswith("/problems/test-")}  # tests' own areas
    assert {type_: status for type_, status in declared.items() if type_ not in test_only} == _documented_problems()


def test_the_route_limit_defaults_it_shows_are_the_contracts():
    """The route limits' settings are unset by default: the figure is the contract's
    `x-rate-limits`, and the README's table shows that figure."""
    section = README.read_text().split("## Configuration", 1)[1].split("\n## ", 1)[0]
    shown = dict(re.findall(r"^\| `RATE_LIMIT_([A-Z_]+)` \| `([^`]+)` \|", section, flags=re.MULTILINE))
    declared = {
        limit.name.upper(): limit.limit
        for limits in route_limits(bundle()).values()
        for limit in limits
        if f"rate_limit_{limit.name}" in Settings.model_fields  # a limit may have no setting
    }
    assert len(declared) == 11
    assert all(Settings.model_fields[f"rate_limit_{name.lower()}"].default is None for name in declared)
    assert {name: shown[name] for name in declared} == declared
