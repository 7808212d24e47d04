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


def readiness_status(checks: Mapping[str, str], breakers: Mapping[str, str]) -> str:
    """``degraded`` when Redis does not answer or a dependency's circuit breaker is ``open`` or
    ``half_open``, else ``ready`` (the database is checked first: without it the instance is not
    ready at all). A breaker family's ``partly_open`` (some webhook receivers or crawled sites
    failing) is reported but is not this instance's degradation.

    The rule (README, "Resilience"): degraded still answers 200, so a load balancer keeps the
    instance: every dependency behind a breaker has a fallback, and every instance shares the
    same dependencies, so taking this one out would only move the same fault elsewhere.

    Args:
        checks: `check_dependencies`' answer.
        breakers: each dependency breaker's state by name (``closed``, ``open``, ``half_open``,
            ``partly_open``).
    """
    if checks.get("redis") == "unavailable":
        return "degraded"
    if any(state in ("open", "half_open") for state in breakers.values()):
        return "degraded"
    return "ready"
