"""ASGI app factories for the benchmarks (``uvicorn --factory bench.apps:<name>``)."""

from __future__ import annotations

from server.app import create_app


def with_edge():
    """The service as deployed: the whole edge middleware stack in front of connexion."""
    return create_app()


def without_edge():
    """The same service with no edge middleware: connexion, validation and handlers only."""
    return create_app(edge=False)
