"""Adding an area touches new files, not shared registries (issue 12; docs/ADDING_AN_AREA.md).
A models module that no shared file names is found and migrated with the rest; an area's errors
(tests/server/test_problems.py) and its operations' access policies (tests/contract/
test_access.py) are found the same way; its rate limits are declared in its own path file."""

from __future__ import annotations

import sys
import textwrap

import persistence
from persistence.base import Base, database_only_objects, load_models
from server.integration.route_limits import client_key, limits_by_operation, user_or_client_key
from server.settings import Settings

PROBE = "charter_area_probe"

MODELS = textwrap.dedent(
    '''
    """A made-up area, in a folder of its own, named by no shared file."""

    from sqlalchemy import Integer
    from sqlalchemy.orm import Mapped, mapped_column

    from persistence.base import Base

    DATABASE_ONLY_OBJECTS = {"ix_probe_widgets_search"}


    class ProbeWidget(Base):
        __tablename__ = "probe_widgets"

        id: Mapped[int] = mapped_column(Integer, primary_key=True)
    '''
)


def test_a_new_areas_models_are_found_without_editing_a_shared_file(tmp_path, monkeypatch):
    area = tmp_path / PROBE
    area.mkdir()
    (area / "__init__.py").write_text('"""A made-up area."""\n')
    (area / "models.py").write_text(MODELS)
    monkeypatch.setattr(persistence, "__path__", [*persistence.__path__, str(tmp_path)])
    try:
        found = {module.__name__ for module in load_models()}
        assert f"persistence.{PROBE}.models" in found
        assert {"persistence.accounts.models", "persistence.tasks.models", "persistence.audit.models"} <= found
        assert "probe_widgets" in Base.metadata.tables  # what Alembic compares the migrations with
        assert {"ix_probe_widgets_search", "search_vector"} <= database_only_objects()
    finally:
        if "probe_widgets" in Base.metadata.tables:
            Base.metadata.remove(Base.metadata.tables["probe_widgets"])
        for name in [name for name in sys.modules if name.startswith(f"persistence.{PROBE}")]:
            del sys.modules[name]


def test_a_new_operations_rate_limit_is_read_from_the_contract_without_a_setting():
    spec = {
        "paths": {
            "/widgets": {
                "post": {
                    "operationId": "createWidget",
                    "x-rate-limits": [{"name": "widget_create", "per": "user", "limit": "7/minute"}],
                }
            },
            "/auth/login": {
                "post": {
                    "operationId": "login",
                    "x-rate-limits": [{"name": "login", "per": "client", "limit": "10/minute"}],
                }
            },
        }
    }
    settings = Settings(rate_limit_login="3/minute")
    limits = limits_by_operation(spec, settings)
    assert limits["createWidget"] == [("7/minute", user_or_client_key, "widget_create")]  # no setting: the contract's
    assert limits["login"] == [("3/minute", client_key, "login")]  # a declared setting, when set, wins
