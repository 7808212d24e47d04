"""Job functions per kind (ARCHITECTURE.md, "jobs"): thin, like handlers, calling services.

Each module of this package declares its kinds in a module-level ``JOB_KINDS`` list of
`services.jobs.JobKind`; `discover()` finds them, so an area adds a module here and registers
nothing in a shared file (as errors and export sections are found).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable

from services.jobs import JobKind


def discover(extra_modules: Iterable[str] = ()) -> dict[str, JobKind]:
    """Every kind declared by a module of this package (and by `extra_modules`, dotted module
    names: the tests' own kinds), by name.

    Raises:
        ValueError: two declarations of one name.
    """
    import jobs

    names = [module.name for module in pkgutil.walk_packages(jobs.__path__, "jobs.")] + list(extra_modules)
    kinds: dict[str, JobKind] = {}
    for name in names:
        for kind in getattr(importlib.import_module(name), "JOB_KINDS", []):
            if kind.name in kinds:
                raise ValueError(f"job kind {kind.name!r} is declared twice (again in {name})")
            kinds[kind.name] = kind
    return kinds
