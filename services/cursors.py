"""Opaque keyset cursors (API_STYLE, Collections): a page's last position, (timestamp, id)."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar

from services.errors import InvalidInput

Position = tuple[datetime, uuid.UUID]
T = TypeVar("T")


def encode_cursor(position: Position) -> str:
    """An opaque cursor for a keyset position: unpadded URL-safe base64 of a small JSON object."""
    timestamp, item_id = position
    raw = json.dumps({"c": timestamp.isoformat(), "i": str(item_id)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> Position:
    """The position in a cursor made by `encode_cursor`.

    Raises:
        InvalidInput: (parameter ``cursor``) anything else, so a made-up cursor is a 400.
    """
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        position = json.loads(raw)
        if (
            not isinstance(position, dict)
            or not isinstance(position.get("c"), str)
            or not isinstance(position.get("i"), str)
        ):
            raise ValueError("malformed cursor")
        timestamp = datetime.fromisoformat(position["c"])
        if timestamp.tzinfo is None:
            raise ValueError("naive cursor timestamp")
        return timestamp.astimezone(UTC), uuid.UUID(position["i"])
    except (binascii.Error, ValueError, OverflowError) as error:
        raise InvalidInput("The cursor is not valid; start again from the first page.", parameter="cursor") from error


def page(rows: list[T], limit: int, position: Callable[[T], Position]) -> tuple[list[T], str | None]:
    """Split `limit + 1` fetched rows into a page and the next page's cursor (None on the last)."""
    items = rows[:limit]
    return items, (encode_cursor(position(items[-1])) if len(rows) > limit else None)
