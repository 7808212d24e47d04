"""Recurring tasks: RRULE parts this service evaluates and the ones it refuses (naming the part),
and completing an occurrence, which creates the next one with its reminders shifted."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services import recurrence, tasks
from services.errors import InvalidInput
from services.recurrence import UnsupportedRecurrence
from tests.reminders.conftest import T0, at, minutes, new_reminder, new_task, reminder_row

WEDNESDAY = datetime(2026, 12, 2, 17, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("rule", "due_at", "expected"),
    [
        ("FREQ=WEEKLY;BYDAY=MO", WEDNESDAY, (datetime(2026, 12, 7, 17, tzinfo=UTC), "FREQ=WEEKLY;BYDAY=MO")),
        ("freq=daily;interval=3", WEDNESDAY, (datetime(2026, 12, 5, 17, tzinfo=UTC), "FREQ=DAILY;INTERVAL=3")),
        (
            "FREQ=MONTHLY;BYMONTHDAY=-1",
            WEDNESDAY,
            (datetime(2026, 12, 31, 17, tzinfo=UTC), "FREQ=MONTHLY;BYMONTHDAY=-1"),
        ),
        ("FREQ=YEARLY;BYMONTH=2", WEDNESDAY, (datetime(2027, 2, 2, 17, tzinfo=UTC), "FREQ=YEARLY;BYMONTH=2")),
        ("FREQ=DAILY;COUNT=3", WEDNESDAY, (datetime(2026, 12, 3, 17, tzinfo=UTC), "FREQ=DAILY;COUNT=2")),
        ("FREQ=DAILY;COUNT=1", WEDNESDAY, None),
        (
            "FREQ=DAILY;UNTIL=20261203T170000Z",
            WEDNESDAY,
            (datetime(2026, 12, 3, 17, tzinfo=UTC), "FREQ=DAILY;UNTIL=20261203T170000Z"),
        ),
        ("FREQ=DAILY;UNTIL=20261203T165959Z", WEDNESDAY, None),
    ],
)
def test_the_next_occurrence(rule, due_at, expected):
    stored = recurrence.validate(rule, due_at=due_at)
    assert recurrence.next_occurrence(stored, due_at=due_at) == expected


@pytest.mark.parametrize(
    ("rule", "named"),
    [
        ("FREQ=HOURLY", "FREQ=HOURLY"),
        ("FREQ=MINUTELY", "FREQ=MINUTELY"),
        ("FREQ=DAILY;BYHOUR=9", "BYHOUR"),
        ("FREQ=MONTHLY;BYDAY=MO;BYSETPOS=1", "BYSETPOS"),
        ("FREQ=YEARLY;BYWEEKNO=20", "BYWEEKNO"),
        ("FREQ=WEEKLY;WKST=SU", "WKST"),
        ("DTSTART=20260101T000000Z;FREQ=DAILY", "DTSTART"),
        ("FREQ=WEEKLY;BYDAY=XX", "BYDAY=XX"),
        ("FREQ=DAILY;UNTIL=20270101T000000", "UNTIL=20270101T000000"),
        ("FREQ=DAILY;COUNT=2;UNTIL=20270101T000000Z", "COUNT and UNTIL"),
        ("FREQ=DAILY;INTERVAL=0", "INTERVAL"),
        ("FREQ=DAILY;COUNT=1001", "COUNT"),
        ("FREQ=YEARLY;BYMONTH=13", "BYMONTH=13"),
        ("FREQ=MONTHLY;BYMONTHDAY=0", "BYMONTHDAY=0"),
        ("FREQ=DAILY;FREQ=WEEKLY", "FREQ appears twice"),
        ("INTERVAL=2", "FREQ"),
        ("FREQ", "'FREQ' is not NAME=VALUE"),
    ],
)
def test_a_rule_this_service_does_not_evaluate_is_refused_naming_the_part(rule, named):
    with pytest.raises(UnsupportedRecurrence) as raised:
        recurrence.validate(rule, due_at=WEDNESDAY)
    assert named in raised.value.detail
    assert raised.value.pointer == "/recurrence"


def test_a_recurring_task_needs_a_due_date(new_uow, clock, owner):
    with new_uow() as uow, pytest.raises(InvalidInput, match="needs a due_at") as raised:
        tasks.create_task(uow=uow, clock=clock, owner_id=owner.id, data={"title": "x", "recurrence": "FREQ=DAILY"})
    assert raised.value.pointer == "/recurrence"


def test_completing_an_occurrence_creates_the_next_with_its_reminders_shifted(new_uow, clock, engine, queue, owner):
    due = T0 + minutes(8 * 60)  # 17:00 on Wednesday 2 December 2026
    task_id = new_task(
        new_uow, clock, owner, due_at=at(due), recurrence="FREQ=WEEKLY;BYDAY=MO", tags=["home"], priority="high"
    )
    relative = new_reminder(new_uow, clock, engine, owner, task_id, minutes_before_due=60, channels=["email"])
    fixed = new_reminder(new_uow, clock, engine, owner, task_id, remind_at=at(T0 + minutes(30)))
    queue.deliveries.clear()
    with new_uow() as uow:
        tasks.set_completion(uow=uow, clock=clock, owner_id=owner.id, task_id=task_id, completed=True, engine=engine)
    with new_uow() as uow:
        everything = uow.tasks.all_of_owner(owner.id)
        [following] = [task for task in everything if task.id != task_id]
        copies = uow.reminders.of_task(following.id)
    assert (following.title, following.priority, following.tags, following.completed) == (
        "water the plants",
        "high",
        ["home"],
        False,
    )
    monday = datetime(2026, 12, 7, 17, tzinfo=UTC)
    assert (following.due_at, following.recurrence) == (monday, "FREQ=WEEKLY;BYDAY=MO")
    shift = monday - due
    assert sorted((c.remind_at, c.minutes_before_due, c.channels, c.status) for c in copies) == sorted(
        [
            (monday - minutes(60), 60, ["email"], "pending"),
            (T0 + minutes(30) + shift, None, ["in_app"], "pending"),
        ]
    )
    assert sorted(at for _, at in queue.deliveries) == sorted(c.remind_at for c in copies)  # scheduled
    assert (reminder_row(new_uow, relative).status, reminder_row(new_uow, fixed).status) == ("skipped", "skipped")


def test_the_last_occurrence_creates_none(new_uow, clock, engine, owner):
    task_id = new_task(new_uow, clock, owner, due_at=at(T0 + minutes(60)), recurrence="FREQ=DAILY;COUNT=2")
    with new_uow() as uow:
        tasks.set_completion(uow=uow, clock=clock, owner_id=owner.id, task_id=task_id, completed=True, engine=engine)
    with new_uow() as uow:
        [second] = [task for task in uow.tasks.all_of_owner(owner.id) if task.id != task_id]
    assert second.recurrence == "FREQ=DAILY;COUNT=1"
    with new_uow() as uow:
        tasks.set_completion(uow=uow, clock=clock, owner_id=owner.id, task_id=second.id, completed=True, engine=engine)
    with new_uow() as uow:
        assert len(uow.tasks.all_of_owner(owner.id)) == 2
