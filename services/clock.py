"""What time it is, as the services see it: passed in (a `Clock`), never read from the system by
a service itself, so a test can freeze it and move it forward instead of sleeping."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
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


class CrawlClock(Protocol):
    """Elapsed time and waiting, for loops that pace themselves (the crawler: `services.crawling`)."""

    def monotonic(self) -> float:
        """Seconds from an arbitrary start, never going back."""
        ...

    def sleep(self, seconds: float) -> None:
        """Wait `seconds`."""
        ...


class SystemCrawlClock:
    """The machine's monotonic clock and `time.sleep`."""

    def monotonic(self) -> float:
        """`time.monotonic()`."""
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        """`time.sleep(seconds)` (nothing for 0 or less)."""
        if seconds > 0:
            time.sleep(seconds)


@dataclass
class FakeCrawlClock:
    """A clock for tests: `sleep` moves it forward instead of waiting, and is recorded."""

    now: float = 0.0
    slept: list[float] = field(default_factory=list)

    def monotonic(self) -> float:
        """The current fake instant."""
        return self.now

    def sleep(self, seconds: float) -> None:
        """Move forward by `seconds` (recorded in `slept`)."""
        self.slept.append(seconds)
        self.now += max(0.0, seconds)
