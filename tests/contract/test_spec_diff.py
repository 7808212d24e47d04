"""`make spec-diff` (scripts/spec_diff.py with api-smart-diff): the contract passes against
itself and against additive changes (a value added to an enum marked open included), fails on a
removed operation, a newly required parameter or a value added to a closed enum, passes those
once info.version's major changes, and finds its git reference the documented way (last tag,
else HEAD~1 here). Every broken contract is a copy in a temp dir."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import ROOT

SCRIPT = ROOT / "scripts" / "spec_diff.py"

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="no Node.js: api-smart-diff runs on it")


def spec_diff(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=120
    )


def _copy(tmp_path: Path) -> Path:
    copy = tmp_path / "openapi"
    shutil.copytree(ROOT / "openapi", copy)
    return copy


def _edit(path: Path, change) -> None:
    document = yaml.safe_load(path.read_text())
    change(document)
    path.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))


def _remove_delete_task(contract: Path) -> None:
    _edit(contract / "paths" / "tasks.yaml", lambda paths: paths["task"].pop("delete"))


def _require_a_new_parameter(contract: Path) -> None:
    parameter = {
        "name": "workspace",
        "in": "query",
        "required": True,
        "description": "The workspace.",
        "schema": {"type": "string", "maxLength": 40},
    }
    _edit(contract / "paths" / "tasks.yaml", lambda paths: paths["tasks"]["get"]["parameters"].append(parameter))


def _set_version(contract: Path, version: str) -> None:
    _edit(contract / "openapi.yaml", lambda root: root["info"].update(version=version))


def test_the_contract_against_itself_passes():
    result = spec_diff("--base-dir", "openapi")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no change to the HTTP surface" in result.stdout


def test_an_additive_change_passes(tmp_path):
    contract = _copy(tmp_path)
    optional = {"name": "colour", "in": "query", "required": False, "description": "x", "schema": {"type": "string"}}
    _edit(contract / "paths" / "tasks.yaml", lambda paths: paths["tasks"]["get"]["parameters"].append(optional))
    result = spec_diff("--base-dir", "openapi", "--spec-dir", str(contract))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "non-breaking" in result.stdout
    assert "breaking:" not in result.stdout


def test_a_removed_operation_fails(tmp_path):
    contract = _copy(tmp_path)
    _remove_delete_task(contract)
    result = spec_diff("--base-dir", "openapi", "--spec-dir", str(contract))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "breaking: [Removed] operation DELETE /api/v1/users/{user_id}/tasks/{task_id}" in result.stdout
    assert "bump info.version's major" in result.stdout


def test_a_newly_required_parameter_fails(tmp_path):
    contract = _copy(tmp_path)
    _require_a_new_parameter(contract)
    result = spec_diff("--base-dir", "openapi", "--spec-dir", str(contract))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "required query parameter `workspace`" in result.stdout
    assert "GET /api/v1/users/{user_id}/tasks" in result.stdout


def test_a_new_major_version_may_break(tmp_path):
    contract = _copy(tmp_path)
    _remove_delete_task(contract)
    _set_version(contract, "1.0.0")
    result = spec_diff("--base-dir", "openapi", "--spec-dir", str(contract))
    assert result.returncode == 0, result.stdout + result.stderr
    base = yaml.safe_load((ROOT / "openapi" / "openapi.yaml").read_text())["info"]["version"]
    assert f"allowed, info.version's major changed ({base} -> 1.0.0)" in result.stdout

    major, minor, _ = base.split(".")
    _set_version(contract, f"{major}.{int(minor) + 1}.0")  # a minor bump does not license a breaking change
    assert spec_diff("--base-dir", "openapi", "--spec-dir", str(contract)).returncode == 1


def _notification_types(contract: Path, values: list[str], *, open_ended: bool) -> None:
    def change(components: dict) -> None:
        schema = components["schemas"]["Notification"]["properties"]["type"]
        schema["enum"] = values
        if open_ended:
            schema["x-extensible-enum"] = True
        else:
            schema.pop("x-extensible-enum", None)

    _edit(contract / "components" / "common.yaml", change)


def test_a_value_added_to_an_open_enum_passes_and_to_a_closed_one_fails(tmp_path):
    """Adding a value to a response's enum breaks a client that knows only the old values,
    unless the base contract marked the enum open (`x-extensible-enum: true`)."""
    closed, grown = _copy(tmp_path / "closed"), _copy(tmp_path / "grown")
    _notification_types(closed, ["task_reminder"], open_ended=False)
    _notification_types(grown, ["task_reminder", "something_new"], open_ended=True)

    result = spec_diff("--base-dir", str(closed), "--spec-dir", str(grown))
    assert result.returncode == 1, result.stdout + result.stderr  # marked and grown at once
    assert "GET /api/v1/users/me/notifications" in result.stdout

    marked = _copy(tmp_path / "marked")
    _notification_types(marked, ["task_reminder"], open_ended=True)
    assert spec_diff("--base-dir", str(closed), "--spec-dir", str(marked)).returncode == 0
    result = spec_diff("--base-dir", str(marked), "--spec-dir", str(grown))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "breaking:" not in result.stdout


def _event_shapes(contract: Path, *, open_ended: bool, extra: bool) -> None:
    def change(components: dict) -> None:
        union = components["schemas"]["WebhookEvent"]
        if not open_ended:
            union.pop("x-extensible-oneOf", None)
        if extra:
            shape = {"type": "object", "required": ["type"], "properties": {"type": {"type": "string"}}}
            union["oneOf"].append(shape)

    _edit(contract / "components" / "webhooks.yaml", change)


def test_a_branch_added_to_an_open_union_of_event_shapes_passes_and_to_a_closed_one_fails(tmp_path):
    closed, open_union = _copy(tmp_path / "closed"), _copy(tmp_path / "open")
    _event_shapes(closed, open_ended=False, extra=False)
    for base, expected in ((closed, 1), (open_union, 0)):
        grown = _copy(tmp_path / f"grown-{expected}")
        _event_shapes(grown, open_ended=True, extra=True)
        result = spec_diff("--base-dir", str(base), "--spec-dir", str(grown))
        assert result.returncode == expected, result.stdout + result.stderr


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=Spec Diff", "-c", "user.email=spec-diff@example.com", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


@pytest.mark.skipif(shutil.which("git") is None, reason="no git")
def test_the_default_reference_is_the_last_tag_else_the_previous_commit(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "--quiet", "--initial-branch=work")
    contract = _copy(repo)
    _git(repo, "add", "openapi")
    _git(repo, "commit", "--quiet", "-m", "the contract")
    assert spec_diff("--spec-dir", str(contract)).returncode == 0  # one commit: against itself

    _require_a_new_parameter(contract)
    _git(repo, "commit", "--quiet", "-am", "a required parameter")
    against_parent = spec_diff("--spec-dir", str(contract))
    assert against_parent.returncode == 1, against_parent.stdout + against_parent.stderr
    assert "against HEAD~1" in against_parent.stdout

    _git(repo, "tag", "v0.2.0")  # released: from now on changes are compared with the release
    against_tag = spec_diff("--spec-dir", str(contract))
    assert against_tag.returncode == 0, against_tag.stdout + against_tag.stderr
    assert "against v0.2.0" in against_tag.stdout

    _remove_delete_task(contract)  # not even committed: the working tree is what is checked
    broken = spec_diff("--spec-dir", str(contract))
    assert broken.returncode == 1
    assert "DELETE /api/v1/users/{user_id}/tasks/{task_id}" in broken.stdout
    assert spec_diff("--spec-dir", str(contract), "--base", "no-such-ref").returncode == 2
