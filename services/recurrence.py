"""Recurring tasks (issue 14): a task's `recurrence` is an RFC 5545 RRULE value, e.g.
``FREQ=WEEKLY;BYDAY=MO`` (RFC 5545 section 3.3.10), evaluated with python-dateutil's `rrule`
from the task's due date. Completing an occurrence creates the next one (`services.tasks`).

What is supported, and why the rest is refused (400 `/problems/unsupported-recurrence`, naming
the part): FREQ of DAILY, WEEKLY, MONTHLY or YEARLY; INTERVAL, COUNT (at most 1000 each), UNTIL
(a UTC date-time ``…Z``), BYDAY, BYMONTHDAY, BYMONTH. The time of day is the due
date's, so BYHOUR, BYMINUTE, BYSECOND and the sub-daily frequencies are refused; BYSETPOS,
BYWEEKNO, BYYEARDAY and WKST are refused as rarely needed by todo lists; DTSTART is the due
date, never a part of the rule.

COUNT counts occurrences from the one it is written on: the task created for the next
occurrence carries COUNT one smaller, and completing the occurrence with COUNT=1 creates none.
"""

from __future__ import annotations

from datetime import UTC, datetime

from dateutil.rrule import rrulestr

from services.errors import InvalidInput, ProblemType

SUPPORTED_FREQUENCIES = ("DAILY", "WEEKLY", "MONTHLY", "YEARLY")
SUPPORTED_PARTS = ("FREQ", "INTERVAL", "COUNT", "UNTIL", "BYDAY", "BYMONTHDAY", "BYMONTH")
MAX_NUMBER = 1000
"""The largest INTERVAL and COUNT accepted."""


class UnsupportedRecurrence(InvalidInput):
    """A recurrence rule that is not an RRULE this service evaluates; the detail names the part."""

    problem = ProblemType("/problems/unsupported-recurrence", "Recurrence rule not supported", 400)


def _parts(rule: str, pointer: str) -> dict[str, str]:
    parts: dict[str, str] = {}
    for piece in rule.split(";"):
        name, equals, value = piece.partition("=")
        name = name.strip().upper()
        if not equals or not name or not value.strip():
            raise UnsupportedRecurrence(f"The recurrence part {piece!r} is not NAME=VALUE.", pointer=pointer)
        if name not in SUPPORTED_PARTS:
            raise UnsupportedRecurrence(
                f"The recurrence part {name} is not supported; use {', '.join(SUPPORTED_PARTS)}.", pointer=pointer
            )
        if name in parts:
            raise UnsupportedRecurrence(f"The recurrence part {name} appears twice.", pointer=pointer)
        parts[name] = value.strip().upper()
    return parts


def _check_numbers(parts: dict[str, str], name: str, allowed: range | list[int], pointer: str) -> None:
    for value in parts.get(name, "").split(",") if name in parts else []:
        try:
            number = int(value)
        except ValueError:
            number = None
        if number not in allowed:
            raise UnsupportedRecurrence(f"The recurrence part {name}={parts[name]} is out of range.", pointer=pointer)


def validate(rule: str, *, due_at: datetime | None, pointer: str = "/recurrence") -> str:
    """The rule as stored (parts upper-cased, in the given order), after checking it.

    Args:
        rule: an RRULE value without the ``RRULE:`` prefix (the contract's `recurrence`).
        due_at: the task's due date (aware): the first occurrence.
        pointer: the body member to name in the error.

    Raises:
        UnsupportedRecurrence: a part outside SUPPORTED_PARTS, a FREQ outside
            SUPPORTED_FREQUENCIES, no FREQ, COUNT with UNTIL (RFC 5545 forbids both), an
            INTERVAL or COUNT outside 1..1000, or a value dateutil cannot read (named).
        InvalidInput: the task has no due date (a recurrence counts from it).
    """
    parts = _parts(rule, pointer)
    frequency = parts.get("FREQ")
    if frequency is None:
        raise UnsupportedRecurrence("The recurrence needs a FREQ part.", pointer=pointer)
    if frequency not in SUPPORTED_FREQUENCIES:
        raise UnsupportedRecurrence(
            f"FREQ={frequency} is not supported; use one of {', '.join(SUPPORTED_FREQUENCIES)}.", pointer=pointer
        )
    if "COUNT" in parts and "UNTIL" in parts:
        raise UnsupportedRecurrence("COUNT and UNTIL cannot both be given (RFC 5545).", pointer=pointer)
    for name in ("INTERVAL", "COUNT"):
        if name in parts and not (parts[name].isdigit() and 1 <= int(parts[name]) <= MAX_NUMBER):
            raise UnsupportedRecurrence(f"{name} must be a whole number from 1 to {MAX_NUMBER}.", pointer=pointer)
    _check_numbers(parts, "BYMONTH", range(1, 13), pointer)
    _check_numbers(parts, "BYMONTHDAY", [*range(-31, 0), *range(1, 32)], pointer)
    if due_at is None:
        raise InvalidInput("A recurring task needs a due_at: occurrences count from it.", pointer=pointer)
    normalised = ";".join(f"{name}={value}" for name, value in parts.items())
    for name in [*(part for part in parts if part != "FREQ"), "FREQ"]:
        tried = normalised if name == "FREQ" else f"FREQ={frequency};{name}={parts[name]}"
        try:
            rrulestr(tried, dtstart=due_at.astimezone(UTC))
        except (ValueError, TypeError, OverflowError) as error:
            hint = " (UNTIL is a UTC date-time such as 20270101T000000Z)" if name == "UNTIL" else ""
            raise UnsupportedRecurrence(
                f"The recurrence part {name}={parts[name]} cannot be read{hint}.", pointer=pointer
            ) from error
    return normalised


def next_occurrence(rule: str, *, due_at: datetime) -> tuple[datetime, str] | None:
    """The due date of the occurrence after the one due at `due_at`, and the rule the next task
    carries (COUNT one smaller); None when the series has ended (COUNT=1, or past UNTIL).

    Args:
        rule: a rule `validate` accepted.
        due_at: the completed occurrence's due date (aware).
    """
    parts = _parts(rule, "/recurrence")
    if "COUNT" in parts:
        remaining = int(parts["COUNT"]) - 1
        if remaining < 1:
            return None
        parts["COUNT"] = str(remaining)
    next_rule = ";".join(f"{name}={value}" for name, value in parts.items())
    without_count = ";".join(f"{name}={value}" for name, value in parts.items() if name != "COUNT")
    following = rrulestr(without_count, dtstart=due_at.astimezone(UTC)).after(due_at.astimezone(UTC))
    if following is None:
        return None
    return following.astimezone(UTC), next_rule
