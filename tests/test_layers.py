"""Rules of the layers that import-linter (`make lint`) cannot see: services take the time from
the `Clock` they are given, never from the system (issue 12)."""

from __future__ import annotations

import ast
from pathlib import Path

SERVICES = Path(__file__).resolve().parent.parent / "services"
READS_THE_SYSTEM_CLOCK = {("datetime", "now"), ("datetime", "utcnow"), ("date", "today"), ("time", "time")}


def _clock_reads(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            name = owner.id if isinstance(owner, ast.Name) else getattr(owner, "attr", "")
            if (name, node.func.attr) in READS_THE_SYSTEM_CLOCK:
                found.append(f"{path.name}:{node.lineno} {name}.{node.func.attr}()")
    return found


def test_no_service_reads_the_system_clock():
    modules = [path for path in SERVICES.rglob("*.py") if path.name != "clock.py"]  # SystemClock itself
    assert modules
    assert [read for path in modules for read in _clock_reads(path)] == []


def test_the_check_sees_a_clock_read(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("from datetime import UTC, datetime\n\nnow = datetime.now(UTC)\n")
    assert _clock_reads(sample) == ["sample.py:3 datetime.now()"]
