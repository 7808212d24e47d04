"""Instants given by clients."""

from __future__ import annotations

from datetime import UTC, datetime

from services.errors import InvalidInput


def parse_instant(value: str, *, pointer: str | None = None, parameter: str | None = None) -> datetime:
    """An RFC 3339 date-time (already checked by the contract) as an aware UTC datetime.

    Raises:
        InvalidInput: for a value Python cannot represent in UTC (e.g. year 1 with a positive
            offset), naming the body member (`pointer`) or query `parameter`.
    """
    try:
        return datetime.fromisoformat(value.upper().replace("Z", "+00:00")).astimezone(UTC)
    except (ValueError, OverflowError) as error:
        name = parameter or (pointer or "").lstrip("/") or "value"
        raise InvalidInput(
            f"{name} must be an RFC 3339 date-time with a UTC offset.", pointer=pointer, parameter=parameter
        ) from error
