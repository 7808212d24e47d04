"""Shaping answers: JSON bodies with an explicit content type, and resource representations."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import flask

JSON = {"Content-Type": "application/json"}


def json_answer(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> tuple:
    """A (body, status, headers) answer with ``Content-Type: application/json``.

    The content type must be explicit: operations declare both application/json and
    application/problem+json, and connexion refuses to guess between them.
    """
    return body, status, {**JSON, **(headers or {})}


def no_content() -> tuple:
    """An empty 204 answer."""
    return None, 204


def not_modified(headers: dict[str, str]) -> flask.Response:
    """An empty 304 answer. Built as a Flask response: connexion would otherwise insist on
    choosing a content type between the operation's JSON and problem+json, for no body at all."""
    return flask.Response(status=304, headers=headers)


def timestamp(value: datetime | None) -> str | None:
    """RFC 3339 UTC with a `Z`, microseconds included: ``2026-11-22T10:15:30.123456Z``."""
    if value is None:
        return None
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def now_timestamp() -> str:
    """The current time as `timestamp` writes it."""
    return timestamp(datetime.now(UTC))  # type: ignore[return-value]
