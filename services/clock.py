"""What time it is, as the services see it: passed in (a `Clock`), never read from the system by
a service itself, so a test can freeze it and move it forward instead of sleeping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """The current instant."""

    def now(self) -> datetime:
        """The current time as an aware UTC datetime."""
        ...


class SystemClock:
    """The machine's clock (what the service runs on)."""

    def now(self) -> datetime:
        """`datetime.now(UTC)`."""
        return datetime.now(UTC)


class FrozenClock:
    """A clock that stands still until told to move (for tests).

    Args:
        at: the instant it shows, an aware datetime.
    """

    def __init__(self, at: datetime) -> None:
        if at.tzinfo is None:
            raise ValueError("a FrozenClock needs an aware datetime")
        self.at = at

    def now(self) -> datetime:
        """The instant it was set to."""
        return self.at

    def advance(self, **delta: float) -> datetime:
        """Move forward by ``timedelta(**delta)`` (e.g. ``minutes=2``); returns the new instant."""
        self.at += timedelta(**delta)
        return self.at
