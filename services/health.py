"""Dependency checks for the readiness probe (brief 001)."""

from __future__ import annotations

from collections.abc import Callable, Mapping


def check_dependencies(probes: Mapping[str, Callable[[], bool] | None]) -> dict[str, str]:
    """The state of each dependency, by name: ``ok`` when its probe answers True,
    ``unavailable`` when it answers False, ``not_configured`` when there is no probe (e.g.
    Redis without REDIS_URL).

    Args:
        probes: a check per dependency (the database's, Redis's), each returning whether the
            dependency answered; the probes log their own failures.
    """
    return {
        name: "not_configured" if probe is None else ("ok" if probe() else "unavailable")
        for name, probe in probes.items()
    }
