"""Billing periods (issue 17): a subscription's periods are counted from its billing cycle
anchor, period n being [anchor + n intervals, anchor + (n + 1) intervals). Months are calendar
months (python-dateutil's `relativedelta`, which clamps the day to the month's end: an anchor on
31 January gives periods starting 28/29 February, 31 March, 30 April, …), as Stripe's billing
cycle anchor does. Everything here is pure: no clock, no database."""

from __future__ import annotations

from datetime import datetime

from dateutil.relativedelta import relativedelta

INTERVALS = ("month", "year")
"""The plan intervals a period can have."""

MAX_PERIODS = 100_000
"""How many periods after its anchor a period can be looked for (8,000 years of months)."""


def period_start(anchor: datetime, interval: str, index: int) -> datetime:
    """The start of period `index` (0 is the first) of a cycle anchored at `anchor`.

    Raises:
        ValueError: `interval` is not ``month`` or ``year``, or `index` is negative.
    """
    if interval not in INTERVALS:
        raise ValueError(f"unknown interval {interval!r}")
    if index < 0:
        raise ValueError("a period index is not negative")
    step = relativedelta(months=index) if interval == "month" else relativedelta(years=index)
    return anchor + step


def period_containing(anchor: datetime, interval: str, at: datetime) -> tuple[datetime, datetime]:
    """The period [start, end) of the cycle anchored at `anchor` that contains `at` (the first
    period when `at` is before the anchor).

    Raises:
        ValueError: unknown `interval`, or `at` more than `MAX_PERIODS` periods after the anchor.
    """
    if at < anchor:
        return anchor, period_start(anchor, interval, 1)
    months = (at.year - anchor.year) * 12 + (at.month - anchor.month)
    index = max(0, months if interval == "month" else months // 12)
    index = min(index, MAX_PERIODS)
    # the month arithmetic can overshoot by one (the anchor's day or time not reached yet)
    while index > 0 and period_start(anchor, interval, index) > at:
        index -= 1
    if index >= MAX_PERIODS:
        raise ValueError("too far from the anchor")
    return period_start(anchor, interval, index), period_start(anchor, interval, index + 1)
