"""The container files: hadolint passes the Dockerfile with nothing to say; compose.yaml passes
`scripts/check_compose.py`, which refuses the mistakes it exists for; the Dockerfile and the
compose file agree with the contract (liveness path) and the CLI (subcommands); and, when asked
(CHARTER_IMAGE_SMOKE=1, root, buildah), the image is built and the README flow runs in it."""

from __future__ import annotations

import copy
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import ROOT

HADOLINT = Path(sys.executable).parent / "hadolint"


def _check_compose():
    spec = importlib.util.spec_from_file_location("check_compose", ROOT / "scripts" / "check_compose.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    result = subprocess.run(
        [str(HADOLINT), "--failure-threshold", "info", str(ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_the_dockerfile_serves_on_every_interface_and_probes_liveness() -> None:
    text = (ROOT / "Dockerfile").read_text()
    contract = yaml.safe_load((ROOT / "openapi" / "openapi.yaml").read_text())
    assert "/api/v1/health/live" in contract["paths"]
    assert "http://127.0.0.1:8000/api/v1/health/live" in text
    assert 'ENTRYPOINT ["charter"]' in text
    assert 'CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]' in text
    assert "USER 10001:10001" in text
    assert text.count("FROM ${BASE}") == 2  # builder and runtime, both from the BASE argument


def test_compose_file_passes() -> None:
    assert _check_compose().check(ROOT / "compose.yaml") == []


def test_compose_start_order_is_health_based() -> None:
    services = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]
    assert set(services) == {"migrate", "api", "worker", "postgres", "redis", "clamd"}
    for name in ("api", "worker"):
        depends = services[name]["depends_on"]
        assert depends["migrate"] == {"condition": "service_completed_successfully"}
        assert depends["postgres"] == {"condition": "service_healthy"}
        assert depends["redis"] == {"condition": "service_healthy"}
    assert services["worker"]["depends_on"]["clamd"] == {"condition": "service_healthy"}
    assert services["migrate"]["command"] == ["migrate"]
    assert services["worker"]["command"][0] == "worker"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d["services"]["api"]["depends_on"].update({"db": {"condition": "service_healthy"}}), "'db' is not"),
        (lambda d: d["services"]["redis"].pop("healthcheck"), "services.redis: no healthcheck"),
        (lambda d: d["services"]["migrate"].update({"restart": "always"}), "but migrate restarts"),
        (lambda d: d["services"]["api"]["environment"].update({"DATABSE_URL": "x"}), "DATABSE_URL is not a setting"),
        (lambda d: d["services"]["api"].update({"command": ["serve", "--port", "8000"]}), "must bind --host 0.0.0.0"),
        (lambda d: d["services"]["worker"].update({"command": ["work"]}), "is not one of charter"),
        (lambda d: d["services"]["api"].update({"volumes": ["missing:/data"]}), "'missing' is not declared"),
        (lambda d: d["services"]["postgres"].update({"healthcheck": {"disable": True}}), "postgres has no healthcheck"),
        (lambda d: d["services"]["redis"].update({"restrat": "always"}), "compose specification"),
        (lambda d: d["services"]["redis"].pop("image"), "neither image nor build"),
    ],
)
def test_compose_check_refuses(tmp_path: Path, change, expected: str) -> None:
    document = yaml.safe_load((ROOT / "compose.yaml").read_text())
    for service in document["services"].values():  # the anchors were expanded: one copy each
        if "environment" in service:
            service["environment"] = copy.deepcopy(service["environment"])
    change(document)
    broken = tmp_path / "compose.yaml"
    broken.write_text(yaml.safe_dump(document, sort_keys=False))
    problems = _check_compose().check(broken)
    assert any(expected in problem for problem in problems), problems


@pytest.mark.skipif(
    os.environ.get("CHARTER_IMAGE_SMOKE") != "1" or shutil.which("buildah") is None or os.geteuid() != 0,
    reason="builds the image (minutes, PyPI and the Debian mirror): CHARTER_IMAGE_SMOKE=1, as root, with buildah",
)
def test_image_runs_the_readme_flow() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "image_smoke.py")],
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "flow: register, login, me, create, list, complete, logout, 401: ok" in result.stdout
