"""The README stays true: its configuration table names every setting, and no setting it
names is missing from the code."""

from __future__ import annotations

import re
from pathlib import Path

from server.settings import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def _documented() -> set[str]:
    section = README.read_text().split("## Configuration", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([A-Z_]+)` \|", section, flags=re.MULTILINE))


def test_every_setting_is_documented():
    assert {name.upper() for name in Settings.model_fields} == _documented()
