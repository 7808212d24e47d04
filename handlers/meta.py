"""Operations of the `meta` tag."""

from __future__ import annotations

from handlers.responses import json_answer
from server.context import state


def get_service_info() -> tuple:
    """GET / — name, version and where the docs, the contract and the API live (brief 001)."""
    info = state()["service_info"]
    return json_answer(
        {
            "name": info.name,
            "version": info.version,
            "status": "running",
            "docs_url": info.docs_url,
            "openapi_url": info.openapi_url,
            "api_prefix": info.api_prefix,
        }
    )
