"""The data export (GET /api/v1/users/me/export; brief 004, GDPR articles 15 and 20) is put
together from sections each area declares in its own handler module, so a new area that stores
something about a person adds its section without editing the export:

    EXPORT_SECTIONS = {"widgets": export_widgets}   # in handlers/widgets.py

The name is a top-level property of the contract's `DataExport` schema; the function takes the
caller's id (a `uuid.UUID`) and answers that property's JSON list, read within the request's
unit of work.
"""

from __future__ import annotations

import importlib
import pkgutil
import uuid
from collections.abc import Callable
from functools import cache
from typing import Any

import handlers

ExportSection = Callable[[uuid.UUID], list[dict[str, Any]]]


@cache
def export_sections() -> dict[str, ExportSection]:
    """Every handler module's `EXPORT_SECTIONS`, merged, in module-name order.

    Raises:
        ValueError: two modules declare a section of the same name.
    """
    sections: dict[str, ExportSection] = {}
    for module_info in sorted(pkgutil.iter_modules(handlers.__path__), key=lambda found: found.name):
        module = importlib.import_module(f"{handlers.__name__}.{module_info.name}")
        for name, section in getattr(module, "EXPORT_SECTIONS", {}).items():
            if name in sections:
                raise ValueError(f"export section {name!r} is declared twice (again in {module.__name__})")
            sections[name] = section
    return sections
