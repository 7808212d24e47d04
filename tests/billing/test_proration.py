"""Proration (services/proration.py): the README's worked examples exact to the cent, the rule for
interval changes, and the properties that hold for every change (lines sum to the exact net rounded
once; the credit never exceeds the old price)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.proration import (
    ChangeKind,
    PlanTerms,
    change_kind,
    new_cycle_lines,
    total,
    unused_fraction,
    upgrade_lines,
)

FREE = PlanTerms("free", "month", 0)
PRO_M = PlanTerms("pro_monthly", "month", 2900)
BUS_M = PlanTerms("business_monthly", "month", 9900)
PRO_Y = PlanTerms("pro_yearly", "year", 29000)
BUS_Y = PlanTerms("business_yearly", "year", 99000)
START = datetime(2027, 1, 1, tzinfo=UTC)


def amounts(lines):
    return [(line.kind, line.amount) for line in lines]


def test_pro_to_business_at_exactly_half_of_a_30_day_period():
    end = START + timedelta(days=30)
    lines = upgrade_lines(PRO_M, BUS_M, period_start=START, period_end=end, at=START + timedelta(days=15))
    assert amounts(lines) == [("proration_credit", -1450), ("proration_charge", 4950)]
    assert total(lines) == 3500
    assert all(line.period_start == START + timedelta(days=15) and line.period_end == end for line in lines)
    assert [line.plan_code for line in lines] == ["pro_monthly", "business_monthly"]


def test_a_third_of_a_31_day_month_rounds_the_credit_and_the_net_once():
    end = START + timedelta(days=31)  # January 2027
    at = START + timedelta(seconds=31 * 86400 // 3)  # a third used: 2/3 unused exactly
    lines = upgrade_lines(PRO_M, BUS_M, period_start=START, period_end=end, at=at)
    # credit 2900 * 2/3 = 1933.33 -> 1933; net 7000 * 2/3 = 4666.67 -> 4667; charge 4667 + 1933
    assert amounts(lines) == [("proration_credit", -1933), ("proration_charge", 6600)]
    assert total(lines) == 4667


def test_ten_days_left_of_31_where_rounding_each_line_alone_would_be_a_cent_off():
    end = START + timedelta(days=31)
    lines = upgrade_lines(PRO_M, BUS_M, period_start=START, period_end=end, at=end - timedelta(days=10))
    # credit 2900 * 10/31 = 935.48 -> 935; net 7000 * 10/31 = 2258.06 -> 2258; charge 2258 + 935 = 3193
    # (the charge alone, 9900 * 10/31 = 3193.55, would round to 3194 and the total to 2259)
    assert amounts(lines) == [("proration_credit", -935), ("proration_charge", 3193)]
    assert total(lines) == 2258


def test_half_cents_round_to_even():
    end = START + timedelta(seconds=4)
    old, new = PlanTerms("a", "month", 1), PlanTerms("b", "month", 4)
    lines = upgrade_lines(old, new, period_start=START, period_end=end, at=START + timedelta(seconds=2))
    # credit 1/2 -> 0 (even); net 3/2 -> 2 (even); charge 2 - 0
    assert amounts(lines) == [("proration_credit", 0), ("proration_charge", 2)]
    lines = upgrade_lines(
        PlanTerms("a", "month", 3),
        PlanTerms("b", "month", 8),
        period_start=START,
        period_end=end,
        at=START + timedelta(seconds=2),
    )
    # credit 3/2 -> 2; net 5/2 -> 2; charge 2 + 2 = 4
    assert amounts(lines) == [("proration_credit", -2), ("proration_charge", 4)]


def test_at_the_start_and_the_end_of_the_period():
    end = START + timedelta(days=31)
    assert amounts(upgrade_lines(PRO_M, BUS_M, period_start=START, period_end=end, at=START)) == [
        ("proration_credit", -2900),
        ("proration_charge", 9900),
    ]
    assert amounts(upgrade_lines(PRO_M, BUS_M, period_start=START, period_end=end, at=end)) == [
        ("proration_credit", 0),
        ("proration_charge", 0),
    ]


def test_microseconds_do_not_count_a_second_is_the_unit():
    end = START + timedelta(seconds=10)
    assert unused_fraction(START, end, START + timedelta(seconds=5, microseconds=999_999)) == Fraction(4, 10)


def test_a_moment_outside_the_period_or_an_empty_period_is_refused():
    with pytest.raises(ValueError, match="outside"):
        unused_fraction(START, START + timedelta(days=1), START + timedelta(days=2))
    with pytest.raises(ValueError, match="empty"):
        unused_fraction(START, START, START)


@pytest.mark.parametrize(
    ("old", "new", "kind"),
    [
        (FREE, PRO_M, ChangeKind.NEW_CYCLE),
        (FREE, BUS_Y, ChangeKind.NEW_CYCLE),
        (PRO_M, BUS_M, ChangeKind.PRORATED_UPGRADE),
        (PRO_Y, BUS_Y, ChangeKind.PRORATED_UPGRADE),
        (BUS_M, PRO_M, ChangeKind.AT_PERIOD_END),
        (BUS_Y, PRO_Y, ChangeKind.AT_PERIOD_END),
        (PRO_M, PRO_Y, ChangeKind.NEW_CYCLE),
        (BUS_M, PRO_Y, ChangeKind.NEW_CYCLE),  # monthly -> yearly always applies now
        (PRO_Y, PRO_M, ChangeKind.AT_PERIOD_END),  # yearly -> monthly always at the period's end
        (PRO_Y, BUS_M, ChangeKind.AT_PERIOD_END),
        (PRO_M, FREE, ChangeKind.AT_PERIOD_END),
        (PlanTerms("a", "month", 2900), PlanTerms("b", "month", 2900), ChangeKind.AT_PERIOD_END),
    ],
)
def test_the_one_rule_for_each_kind_of_change(old, new, kind):
    assert change_kind(old, new) is kind


def test_the_same_plan_is_not_a_change():
    with pytest.raises(ValueError):
        change_kind(PRO_M, PRO_M)


def test_monthly_to_yearly_credits_the_unused_month_and_charges_a_full_year_from_now():
    end = START + timedelta(days=31)
    at = START + timedelta(days=21)  # 10 of 31 days left
    lines = new_cycle_lines(PRO_M, PRO_Y, period_start=START, period_end=end, at=at)
    assert amounts(lines) == [("proration_credit", -935), ("subscription", 29000)]
    assert lines[1].period_start == at and lines[1].period_end == at.replace(year=2028)
    assert total(lines) == 28065


def test_from_free_the_full_price_for_a_period_from_now():
    at = START + timedelta(days=3, hours=5)
    lines = new_cycle_lines(FREE, PRO_M, period_start=START, period_end=START + timedelta(days=31), at=at)
    assert amounts(lines) == [("subscription", 2900)]
    assert (lines[0].period_start, lines[0].period_end) == (at, datetime(2027, 2, 4, 5, tzinfo=UTC))


@given(
    old_price=st.integers(0, 10**7),
    extra=st.integers(1, 10**7),
    length=st.integers(1, 400 * 86400),
    data=st.data(),
)
def test_lines_always_sum_to_the_exact_net_rounded_once(old_price, extra, length, data):
    elapsed = data.draw(st.integers(0, length))
    end = START + timedelta(seconds=length)
    at = START + timedelta(seconds=elapsed)
    old, new = PlanTerms("a", "month", old_price), PlanTerms("b", "month", old_price + extra)
    credit, charge = upgrade_lines(old, new, period_start=START, period_end=end, at=at)
    exact_unused = Fraction(length - elapsed, length)
    assert credit.amount + charge.amount == round(extra * exact_unused)
    assert credit.amount == -round(old_price * exact_unused)
    assert 0 <= -credit.amount <= old_price and 0 <= charge.amount <= new.price
