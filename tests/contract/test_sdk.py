"""The generated SDKs, used for real: `make sdk`'s generators run without a warning; the Python
client is installed (pip, from the generated package) and runs the README's whole flow against a
live server, reading errors as its typed `Problem` model; `tsc --noEmit` type-checks
tests/contract/sdk_usage.ts against the generated TypeScript types."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.contract.conftest import LiveServer
from tests.helpers import PASSWORD, ROOT, unique_email

BIN = Path(sys.executable).parent
SDK = ROOT / "build" / "sdk"


@pytest.fixture(scope="module")
def generated() -> Path:
    """`make sdk` (scripts/sdk.py): both generators, failing on any warning."""
    result = subprocess.run([sys.executable, "scripts/sdk.py"], cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "warn" not in (result.stdout + result.stderr).lower()
    return SDK


@pytest.fixture(scope="module")
def sdk(generated: Path, tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    """The generated Python client installed with pip into a folder of its own, then imported
    from there (its dependencies, httpx and attrs, are the project's)."""
    site = tmp_path_factory.mktemp("sdk-site")
    install = subprocess.run(
        [
            str(BIN / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(site),
            str(generated / "python"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    sys.path.insert(0, str(site))
    try:
        package = importlib.import_module("charter_api_client")
        assert Path(package.__file__).is_relative_to(site)
        yield package
    finally:
        sys.path.remove(str(site))
        for name in [name for name in sys.modules if name.split(".")[0] == "charter_api_client"]:
            del sys.modules[name]


def test_the_readme_flow_through_the_python_client(sdk, live_server: LiveServer):
    from charter_api_client import AuthenticatedClient, Client
    from charter_api_client.api.auth import get_current_user, login, logout, register_user
    from charter_api_client.api.tasks import complete_task, create_task, delete_task, get_task, list_tasks, replace_task
    from charter_api_client.models import (
        LoginRequest,
        Priority,
        Problem,
        RegisterRequest,
        Task,
        TaskCreate,
        TaskPage,
        TaskReplace,
        TokenPair,
        User,
    )

    email = unique_email("sdk")
    public = Client(base_url=live_server.url, raise_on_unexpected_status=True)

    # register → login
    user = register_user.sync(
        client=public, body=RegisterRequest(email=email, password=PASSWORD, display_name="Ada Lovelace")
    )
    assert isinstance(user, User), user
    assert user.email == email
    again = register_user.sync_detailed(
        client=public, body=RegisterRequest(email=email, password=PASSWORD, display_name="Ada Lovelace")
    )
    assert again.status_code == 409
    assert isinstance(again.parsed, Problem)  # a problem+json error, read as the typed model
    assert again.parsed.type_ == "/problems/email-taken"
    assert again.parsed.request_id == again.headers["x-request-id"]

    tokens = login.sync(client=public, body=LoginRequest(email=email, password=PASSWORD))
    assert isinstance(tokens, TokenPair), tokens
    client = AuthenticatedClient(base_url=live_server.url, token=tokens.access_token, raise_on_unexpected_status=True)
    me = get_current_user.sync(client=client)
    assert isinstance(me, User)
    assert me.id == user.id

    # tasks: create → list → get → replace → complete → delete
    created = create_task.sync_detailed(
        me.id, client=client, body=TaskCreate(title="Write the report", priority=Priority.HIGH, tags=["Work"])
    )
    assert created.status_code == 201
    task = created.parsed
    assert isinstance(task, Task)
    assert (task.title, task.priority, task.tags) == ("Write the report", Priority.HIGH, ["work"])
    assert task.completed is False
    assert created.headers["etag"] == f'"{task.version}"'

    page = list_tasks.sync(me.id, client=client, limit=10)
    assert isinstance(page, TaskPage)
    assert [item.id for item in page.items] == [task.id]
    assert page.next_cursor is None

    fetched = get_task.sync(me.id, task.id, client=client)
    assert isinstance(fetched, Task)
    assert fetched.id == task.id

    replaced = replace_task.sync(
        me.id,
        task.id,
        client=client,
        body=TaskReplace(title="Write the final report", priority=Priority.URGENT),
        if_match=f'"{task.version}"',
    )
    assert isinstance(replaced, Task)
    assert (replaced.title, replaced.priority, replaced.version) == ("Write the final report", Priority.URGENT, 2)
    stale = replace_task.sync_detailed(
        me.id, task.id, client=client, body=TaskReplace(title="Lost update"), if_match=f'"{task.version}"'
    )
    assert stale.status_code == 412
    assert isinstance(stale.parsed, Problem)
    assert stale.parsed.type_ == "/problems/precondition-failed"

    done = complete_task.sync(me.id, task.id, client=client)
    assert isinstance(done, Task)
    assert done.completed is True
    assert done.completed_at is not None

    deleted = delete_task.sync_detailed(me.id, task.id, client=client)
    assert deleted.status_code == 204
    gone = get_task.sync_detailed(me.id, task.id, client=client)
    assert gone.status_code == 404
    assert isinstance(gone.parsed, Problem)
    assert gone.parsed.type_ == "/problems/not-found"

    # logout: the session's token stops working at once
    assert logout.sync_detailed(client=client).status_code == 204
    after = get_current_user.sync_detailed(client=client)
    assert after.status_code == 401
    assert isinstance(after.parsed, Problem)
    assert after.parsed.type_ == "/problems/unauthorized"


def test_a_validation_problem_names_the_field_in_the_typed_model(sdk, live_server: LiveServer):
    from charter_api_client import Client
    from charter_api_client.api.auth import register_user
    from charter_api_client.models import Problem, RegisterRequest

    response = register_user.sync_detailed(
        client=Client(base_url=live_server.url),
        body=RegisterRequest(email="not-an-email", password=PASSWORD, display_name="Ada"),
    )
    assert response.status_code == 400
    problem = response.parsed
    assert isinstance(problem, Problem)
    assert problem.type_ == "/problems/validation-error"
    assert [error.pointer for error in problem.errors] == ["/email"]


def test_typescript_usage_type_checks_against_the_generated_types(generated: Path):
    assert (generated / "typescript" / "charter.d.ts").exists()
    tsc = ROOT / "node_modules" / ".bin" / "tsc"
    result = subprocess.run(
        [str(tsc), "--noEmit", "-p", "tests/contract/tsconfig.json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
