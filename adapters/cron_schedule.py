"""Cron expressions (``minute hour day month day-of-week``), evaluated by huey's `crontab` (the
job queue's own scheduler, so one cron dialect serves the project): the adapter of
`services.backups.Schedule`."""

from __future__ import annotations

from datetime import UTC, datetime

from huey import crontab

FIELDS = ("minute", "hour", "day", "month", "day_of_week")


def parse_fields(expression: str) -> dict[str, str]:
    """The five fields of `expression` by name.

    Raises:
        ValueError: not five whitespace-separated fields, or a field huey's crontab refuses
            (``*``, ``*/n``, ``a-b``, ``a,b`` and numbers in range are accepted; day of week 0 is
            Sunday). The message names the expression.
    """
    parts = expression.split()
    if len(parts) != len(FIELDS):
        raise ValueError(
            f"{expression!r} is not a cron expression: five fields are needed (minute hour day month day-of-week), "
            "e.g. '0 3 * * *' for 03:00 UTC every day"
        )
    fields = dict(zip(FIELDS, parts, strict=True))
    try:
        crontab(**fields, strict=True)
    except ValueError as error:
        raise ValueError(f"{expression!r} is not a cron expression huey accepts: {error}") from error
    return fields


class CronSchedule:
    """A cron expression, in UTC.

    Args:
        expression: ``minute hour day month day-of-week`` (see `parse_fields`).

    Raises:
        ValueError: the expression is malformed.
    """

    def __init__(self, expression: str) -> None:
        self.expression = expression
        self._matches = crontab(**parse_fields(expression), strict=True)

    def matches(self, minute: datetime) -> bool:
        """Whether the minute holding `minute` (an aware datetime) is one the schedule names."""
        at = minute.astimezone(UTC).replace(tzinfo=None, second=0, microsecond=0)
        return bool(self._matches(at))
