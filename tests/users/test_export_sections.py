"""The data export is put together from the sections the areas declare (`EXPORT_SECTIONS` in a
handler module; `handlers.data_export`): every section the contract's `DataExport` names is
declared by exactly one area, and a new area's section is found without editing the export."""

from __future__ import annotations

import sys
import textwrap

import pytest

import handlers
from handlers.data_export import export_sections
from server.contract import bundle

PROBE = "charter_probe_export"


def test_every_section_of_the_contracts_export_is_declared_by_an_area():
    schema = bundle()["components"]["schemas"]["DataExport"]
    assert (
        set(export_sections())
        == set(schema["properties"]) - {"exported_at", "user"}
        == {
            "sessions",
            "tasks",
            "audit_events",
            "reminders",
            "notifications",
            "webhook_endpoints",
            "jobs",
            "chatbots",
            "documents",
            "websites",
            "api_keys",
            "conversations",
            "usage",
            "subscription",
            "invoices",
            "payment_methods",
        }
    )
    # Sections added after the export shipped are optional (older exports lack them): additive.
    assert set(schema["properties"]) - set(schema["required"]) == {
        "jobs",
        "documents",
        "websites",
        "api_keys",
        "conversations",
        "usage",
        "subscription",
        "invoices",
        "payment_methods",
    }


@pytest.fixture
def probe_area(tmp_path, monkeypatch):
    package = tmp_path / "probe_handlers"
    package.mkdir()
    (package / f"{PROBE}.py").write_text(
        textwrap.dedent(
            '''
            """A made-up area's handlers, named by no shared file."""

            EXPORT_SECTIONS = {"widgets": lambda user_id: [{"owner": str(user_id)}]}
            '''
        )
    )
    monkeypatch.setattr(handlers, "__path__", [*handlers.__path__, str(package)])
    export_sections.cache_clear()
    yield
    export_sections.cache_clear()
    sys.modules.pop(f"handlers.{PROBE}", None)


def test_a_new_areas_section_is_found_without_editing_the_export(probe_area):
    sections = export_sections()
    assert {"sessions", "tasks", "audit_events", "widgets"} <= set(sections)
    assert sections["widgets"]("u-1") == [{"owner": "u-1"}]


def test_a_section_declared_twice_is_refused(probe_area, tmp_path):
    (tmp_path / "probe_handlers" / f"{PROBE}.py").write_text('EXPORT_SECTIONS = {"tasks": lambda user_id: []}\n')
    with pytest.raises(ValueError, match="'tasks' is declared twice"):
        export_sections()
