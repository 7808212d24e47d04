"""The usage interface (`services.usage`) with a frozen clock: meters found in the areas'
modules, a use counted once per idempotency key, the quota check and its problem's members,
periodic meters resetting with the billing period, releases, and the 80 % / 100 % thresholds
announced once (notification and `usage.threshold_reached`)."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select

from persistence.billing.models import UsageEvent
from persistence.notifications.models import Notification
from services import usage
from services.subscriptions import current_plan
from services.usage import ALL_TIME, QuotaExceeded, check_quota, record_usage


def record(new_uow, clock, owner, meter: str, quantity: int, key: str | None = None) -> bool:
    with new_uow() as uow:
        return record_usage(
            uow,
            owner_id=owner.id,
            meter=meter,
            quantity=quantity,
            idempotency_key=key or str(uuid.uuid4()),
            clock=clock,
        )


def used(new_uow, clock, owner, meter: str) -> int:
    with new_uow() as uow:
        report = usage.usage_report(uow=uow, owner_id=owner.id, clock=clock)
    return next(item.used for item in report.meters if item.meter.name == meter)


def notifications_of(new_uow, owner) -> list[Notification]:
    with new_uow() as uow:
        return [n for n in uow.notifications.all_of_owner(owner.id) if n.type == usage.NOTIFICATION_TYPE]


def test_the_meters_are_declared_by_the_areas_and_found():
    found = usage.meters()
    assert set(found) == {"chatbots", "messages", "crawled_pages", "documents", "storage_bytes", "api_keys"}
    assert {name for name, meter in found.items() if meter.periodic} == {"messages", "crawled_pages"}
    assert found["storage_bytes"].unit == "bytes"
    from services import api_keys, chatbots, conversations, documents, websites

    declared = [*chatbots.USAGE_METERS, *conversations.USAGE_METERS, *websites.USAGE_METERS]
    declared += [*documents.USAGE_METERS, *api_keys.USAGE_METERS]
    assert sorted(meter.name for meter in declared) == sorted(found)


def test_a_use_counts_once_per_idempotency_key(new_uow, clock, owner):
    assert record(new_uow, clock, owner, "messages", 1, key="message:1") is True
    assert record(new_uow, clock, owner, "messages", 1, key="message:1") is False
    assert record(new_uow, clock, owner, "messages", 1, key="message:2") is True
    assert record(new_uow, clock, owner, "messages", 1, key="k" * 250) is True  # known by its first 200
    assert record(new_uow, clock, owner, "messages", 1, key="k" * 250) is False
    assert used(new_uow, clock, owner, "messages") == 3
    with new_uow() as uow:
        events = uow.session.scalar(select(func.count()).select_from(UsageEvent).where(UsageEvent.owner_id == owner.id))
    assert events == 3


def test_over_quota_is_refused_with_the_meter_limit_used_and_no_reset_for_what_exists(new_uow, clock, owner):
    record(new_uow, clock, owner, "chatbots", 2)
    with pytest.raises(QuotaExceeded) as refused:
        record(new_uow, clock, owner, "chatbots", 1, key="chatbot:third")
    assert refused.value.problem.status == 402 and refused.value.problem.type == "/problems/quota-exceeded"
    assert refused.value.members() == {"meter": "chatbots", "limit": 2, "used": 2, "reset_at": None}
    assert used(new_uow, clock, owner, "chatbots") == 2
    # the refused key was not recorded: it counts once there is room
    record(new_uow, clock, owner, "chatbots", -1)
    assert record(new_uow, clock, owner, "chatbots", 1, key="chatbot:third") is True
    with new_uow() as uow, pytest.raises(QuotaExceeded):
        check_quota(uow, owner_id=owner.id, meter="chatbots", quantity=0, clock=clock)


def test_periodic_meters_count_per_billing_period_and_reset_with_it(new_uow, clock, owner):
    with new_uow() as uow:
        period = current_plan(uow, owner_id=owner.id, clock=clock)
    record(new_uow, clock, owner, "messages", 100)
    with pytest.raises(QuotaExceeded) as refused:
        record(new_uow, clock, owner, "messages", 1)
    assert refused.value.members() == {
        "meter": "messages",
        "limit": 100,
        "used": 100,
        "reset_at": period.period_end.isoformat().replace("+00:00", "Z"),
    }
    clock.advance(seconds=(period.period_end - clock.now()).total_seconds() - 1)
    with pytest.raises(QuotaExceeded):
        record(new_uow, clock, owner, "messages", 1)  # still the same period, one second before its end
    clock.advance(seconds=1)
    assert record(new_uow, clock, owner, "messages", 1) is True  # a new period: usage reset
    assert used(new_uow, clock, owner, "messages") == 1
    with new_uow() as uow:
        old = uow.usage.counter(owner_id=owner.id, meter="messages", period_start=period.period_start)
        new = uow.usage.counter(owner_id=owner.id, meter="messages", period_start=period.period_end)
        forever = uow.usage.counter(owner_id=owner.id, meter="messages", period_start=ALL_TIME)
    assert (old.used, new.used, forever) == (100, 1, None)


def test_a_release_is_never_refused_and_a_counter_never_goes_below_zero(new_uow, clock, owner):
    record(new_uow, clock, owner, "storage_bytes", 50 * 1024 * 1024)
    record(new_uow, clock, owner, "storage_bytes", -10)
    record(new_uow, clock, owner, "api_keys", -3)  # what existed before metering was never counted up
    assert used(new_uow, clock, owner, "storage_bytes") == 50 * 1024 * 1024 - 10
    assert used(new_uow, clock, owner, "api_keys") == 0


def test_a_paid_plan_has_bigger_limits_and_null_is_unlimited(new_uow, clock, owner, app):
    from tests.helpers import on_plan

    on_plan(app, owner.id, "pro_monthly")
    record(new_uow, clock, owner, "chatbots", 10)
    with pytest.raises(QuotaExceeded):
        record(new_uow, clock, owner, "chatbots", 1)
    with new_uow() as uow:
        plan = uow.plans.get("pro_monthly")
        plan.quotas = {**plan.quotas, "chatbots": None}
    try:
        assert record(new_uow, clock, owner, "chatbots", 1000) is True
        with new_uow() as uow:
            report = usage.usage_report(uow=uow, owner_id=owner.id, clock=clock)
        chatbots = next(item for item in report.meters if item.meter.name == "chatbots")
        assert (chatbots.used, chatbots.limit, chatbots.remaining) == (1010, None, None)
    finally:
        with new_uow() as uow:
            plan = uow.plans.get("pro_monthly")
            plan.quotas = {**plan.quotas, "chatbots": 10}


def test_crossing_80_and_100_percent_is_announced_once_per_period(published, clock, owner):
    new_uow, events = published
    record(new_uow, clock, owner, "messages", 79)
    assert notifications_of(new_uow, owner) == [] and events == []
    record(new_uow, clock, owner, "messages", 1)
    record(new_uow, clock, owner, "messages", 10)
    assert [(event.type, event.data["threshold"], event.data["used"]) for event in events] == [
        ("usage.threshold_reached", 80, 80)
    ]
    record(new_uow, clock, owner, "messages", 10)
    assert [event.data["threshold"] for event in events] == [80, 100]
    assert events[1].data == {
        "meter": "messages",
        "unit": "messages",
        "threshold": 100,
        "used": 100,
        "limit": 100,
        "plan_code": "free",
        "period_start": events[1].data["period_start"],
        "reset_at": events[1].data["reset_at"],
    }
    assert events[1].data["reset_at"] > events[1].data["period_start"]
    titles = [n.title for n in notifications_of(new_uow, owner)]
    assert sorted(titles) == ["You have used 100% of your messages quota", "You have used 80% of your messages quota"]

    clock.advance(days=32)  # the next period: announced again when crossed again
    record(new_uow, clock, owner, "messages", 100)
    assert [event.data["threshold"] for event in events] == [80, 100, 100]  # a jump announces the highest only


def test_an_all_time_meter_announces_again_after_going_back_below(published, clock, owner):
    new_uow, events = published
    record(new_uow, clock, owner, "chatbots", 1)  # 50 %
    record(new_uow, clock, owner, "chatbots", 1)  # 100 %
    record(new_uow, clock, owner, "chatbots", -1)  # back to 50 %
    record(new_uow, clock, owner, "chatbots", 1)  # 100 % again
    assert [(event.data["threshold"], event.data["period_start"], event.data["reset_at"]) for event in events] == [
        (100, None, None),
        (100, None, None),
    ]
    assert len(notifications_of(new_uow, owner)) == 2
