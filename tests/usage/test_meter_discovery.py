"""Usage meters are declared by the area that owns them (`USAGE_METERS` in its service module)
and found by `services.usage.meters()`: a made-up area's meter is found without editing a shared
file, and a meter declared twice is refused."""

from __future__ import annotations

import sys
import textwrap

import pytest

import services
from services.usage import meters

PROBE = "charter_probe_usage"


@pytest.fixture
def probe_area(tmp_path, monkeypatch):
    package = tmp_path / "probe_services"
    package.mkdir()
    (package / f"{PROBE}.py").write_text(
        textwrap.dedent(
            '''
            """A made-up area's service, named by no shared file."""
            from services.usage import Meter

            USAGE_METERS = [Meter(name="widgets", unit="widgets", periodic=True, description="Widgets made.")]
            '''
        )
    )
    monkeypatch.setattr(services, "__path__", [*services.__path__, str(package)])
    meters.cache_clear()
    yield package
    meters.cache_clear()
    sys.modules.pop(f"services.{PROBE}", None)


def test_a_new_areas_meter_is_found_without_editing_a_shared_file(probe_area):
    found = meters()
    assert {"chatbots", "messages", "widgets"} <= set(found)
    assert found["widgets"].periodic and found["widgets"].unit == "widgets"


def test_a_meter_declared_twice_is_refused(probe_area):
    (probe_area / f"{PROBE}.py").write_text(
        'from services.usage import Meter\nUSAGE_METERS = [Meter("messages", "messages", True, "Again.")]\n'
    )
    with pytest.raises(ValueError, match="'messages' is declared twice"):
        meters()
