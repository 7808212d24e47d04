"""Opaque keyset cursors (API_STYLE, Collections): the position of a page's last item — the
values of its sort keys and its id — and the sort they belong to.

A cursor is unpadded URL-safe base64 of a small JSON object. It is not signed: a client can
read it and make one up, and a made-up position only moves where a page starts within the
caller's own data; a cursor that does not decode, or was made for another sort, is a 400.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from services.errors import InvalidInput

T = TypeVar("T")
Position = tuple[datetime, uuid.UUID]


def _instant(value: Any) -> datetime:
    if not isinstance(value, str):
        raise TypeError("instant expected")
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError("naive timestamp")
    return parsed.astimezone(UTC)


def _uuid(value: Any) -> uuid.UUID:
    if not isinstance(value, str):
        raise TypeError("uuid expected")
    return uuid.UUID(value)


def _integer(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError("integer expected")
    return value


def _number(value: Any) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError("number expected")
    return float(value)


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("text expected")
    return value


KINDS: dict[str, Callable[[Any], Any]] = {
    "instant": _instant,
    "uuid": _uuid,
    "integer": _integer,
    "number": _number,
    "text": _text,
}
"""How each kind of position value is read back from a cursor."""


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def encode_values(values: Sequence[Any], *, scope: str = "") -> str:
    """A cursor for a position (`values`: datetimes, UUIDs, numbers, text) within `scope`
    (e.g. the sort it was made for)."""
    raw = json.dumps({"s": scope, "v": [_plain(v) for v in values]}, separators=(",", ":"), ensure_ascii=False)
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_values(cursor: str, *, kinds: Sequence[str], scope: str = "") -> list[Any]:
    """The position in a cursor made by `encode_values` for the same `scope`, read as `kinds`.

    Raises:
        InvalidInput: (parameter ``cursor``) for anything else.
    """
    try:
        payload = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(payload, dict) or payload.get("s") != scope or not isinstance(payload.get("v"), list):
            raise ValueError("not a cursor of this list")
        values = payload["v"]
        if len(values) != len(kinds):
            raise ValueError("wrong length")
        return [KINDS[kind](value) for kind, value in zip(kinds, values, strict=True)]
    except (binascii.Error, ValueError, TypeError, OverflowError, UnicodeDecodeError) as error:
        raise InvalidInput("The cursor is not valid; start again from the first page.", parameter="cursor") from error


def encode_cursor(position: Position) -> str:
    """A cursor for a (timestamp, id) position: lists ordered by creation or occurrence."""
    return encode_values(position)


def decode_cursor(cursor: str) -> Position:
    """The (timestamp, id) position in a cursor made by `encode_cursor`. Raises InvalidInput."""
    timestamp, item_id = decode_values(cursor, kinds=("instant", "uuid"))
    return timestamp, item_id


def page(rows: list[T], limit: int, position: Callable[[T], Position]) -> tuple[list[T], str | None]:
    """Split `limit + 1` fetched rows into a page and the next page's cursor (None on the last)."""
    items = rows[:limit]
    return items, (encode_cursor(position(items[-1])) if len(rows) > limit else None)
