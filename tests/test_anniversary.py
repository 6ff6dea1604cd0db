"""``is_anniversary(date, offset="0d")`` as an author uses it (contract §9 "Dates"): offsets in
days and weeks, every accepted form of ``date`` read in the customer's time zone, the 29
February rule in the year of the moved date, and false -- never an error -- for anything else."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from postflow.expressions import Helpers, compile_condition, compile_template, compile_value

NOW = datetime(2027, 5, 12, 12, 0, tzinfo=UTC)
EPOCH_1990_05_12 = 642470400  # 1990-05-12T00:00:00Z


def scope(now: datetime, zone: str, **extra: Any) -> dict[str, Any]:
    return {"now": now, "_helpers": Helpers(zone=ZoneInfo(zone)), "customer": {}, **extra}


_OMITTED = object()


def anniversary(d: Any, offset: Any = _OMITTED, *, now: datetime = NOW, zone: str = "UTC") -> Any:
    if offset is _OMITTED:
        return compile_value("is_anniversary(d)")(scope(now, zone, d=d))
    return compile_value("is_anniversary(d, offset)")(scope(now, zone, d=d, offset=offset))


def test_epoch_constant_is_midnight_utc() -> None:
    assert datetime.fromtimestamp(EPOCH_1990_05_12, UTC) == datetime(1990, 5, 12, tzinfo=UTC)


# -- offsets -------------------------------------------------------------------------------
def test_plain_date_on_the_day_and_not_either_side() -> None:
    assert anniversary(date(1990, 5, 12)) is True
    assert anniversary("1990-05-12") is True
    assert anniversary(date(1990, 5, 11)) is False
    assert anniversary(date(1990, 5, 13)) is False
    assert anniversary(date(1990, 5, 12), "0d") is True


def test_minus_seven_days_is_a_week_before() -> None:
    # today May 12 + 7 days = May 19: the birthday is a week away
    assert anniversary(date(1990, 5, 19), "-7d") is True
    assert anniversary(date(1990, 5, 12), "-7d") is False
    assert anniversary(date(1990, 5, 5), "-7d") is False


def test_weeks_and_explicit_plus_sign_look_back() -> None:
    assert anniversary(date(1990, 5, 5), "1w") is True  # a week after May 5
    assert anniversary(date(1990, 5, 5), "+1w") is True
    assert anniversary(date(1990, 5, 26), "-2w") is True
    assert anniversary(date(1990, 5, 9), "+3d") is True
    assert anniversary(date(1990, 5, 9), "3d") is True
    assert anniversary(date(1990, 5, 15), "+3d") is False


def test_offset_by_keyword_and_as_a_literal_in_conditions_and_templates() -> None:
    s = scope(NOW, "UTC", customer={"birthday": "1990-05-19"})
    assert compile_value("is_anniversary(customer.birthday, offset='-7d')")(s) is True
    assert compile_condition("is_anniversary(customer.birthday, '-1w')")(s) is True
    assert compile_condition("is_anniversary(customer.birthday)")(s) is False
    source = "{% if is_anniversary(customer.birthday, '-7d') %}soon{% endif %}"
    assert compile_template(source)(s) == "soon"


def test_offset_across_a_month_and_year_boundary() -> None:
    dec_27 = datetime(2026, 12, 27, 12, 0, tzinfo=UTC)
    assert anniversary(date(1990, 1, 3), "-7d", now=dec_27) is True
    assert anniversary("1990-01-03", "-1w", now=dec_27) is True
    assert anniversary(date(1990, 12, 27), "-7d", now=dec_27) is False
    # and back: on Jan 3, "7d" looks at Dec 27 of the previous year
    jan_3 = datetime(2027, 1, 3, 12, 0, tzinfo=UTC)
    assert anniversary(date(1990, 12, 27), "7d", now=jan_3) is True
    # month boundary: May 30 + 3 days is June 2
    may_30 = datetime(2027, 5, 30, 12, 0, tzinfo=UTC)
    assert anniversary(date(1990, 6, 2), "-3d", now=may_30) is True


# -- forms of the date ---------------------------------------------------------------------
def test_epoch_seconds_keep_their_utc_date_in_los_angeles() -> None:
    # 1990-05-12T00:00Z is the evening of May 11 in Los Angeles, but the contract reads epoch
    # seconds as "an instant whose UTC date is the date": the birthday is May 12
    la_may_12 = datetime(2027, 5, 12, 19, 0, tzinfo=UTC)  # 12:00 on May 12 in Los Angeles
    la_may_11 = datetime(2027, 5, 11, 19, 0, tzinfo=UTC)
    zone = "America/Los_Angeles"
    assert anniversary(EPOCH_1990_05_12, now=la_may_12, zone=zone) is True
    assert anniversary(float(EPOCH_1990_05_12), now=la_may_12, zone=zone) is True
    assert anniversary(EPOCH_1990_05_12, now=la_may_11, zone=zone) is False
    assert anniversary(EPOCH_1990_05_12 + 86399, now=la_may_12, zone=zone) is True
    assert anniversary(EPOCH_1990_05_12 - 1, now=la_may_12, zone=zone) is False
    la_may_5 = datetime(2027, 5, 5, 19, 0, tzinfo=UTC)
    assert anniversary(EPOCH_1990_05_12, "-7d", now=la_may_5, zone=zone) is True


def test_epoch_seconds_before_1970() -> None:
    # -1 is 1969-12-31T23:59:59Z
    assert anniversary(-1, now=datetime(2026, 12, 31, 12, tzinfo=UTC)) is True
    assert anniversary(-1, now=datetime(2027, 1, 1, 12, tzinfo=UTC)) is False


def test_aware_datetime_is_read_in_the_customers_zone() -> None:
    # 02:00 UTC on May 12 is 22:00 on May 11 in New York
    stamp = "1990-05-12T02:00:00+00:00"
    ny_may_11 = datetime(2027, 5, 11, 16, 0, tzinfo=UTC)
    ny_may_12 = datetime(2027, 5, 12, 16, 0, tzinfo=UTC)
    zone = "America/New_York"
    assert anniversary(stamp, now=ny_may_11, zone=zone) is True
    assert anniversary(stamp, now=ny_may_12, zone=zone) is False
    as_object = datetime(1990, 5, 12, 2, 0, tzinfo=UTC)
    assert anniversary(as_object, now=ny_may_11, zone=zone) is True
    assert anniversary("1990-05-12T02:00:00Z", now=ny_may_11, zone=zone) is True


def test_naive_datetime_is_the_customers_local_time() -> None:
    # 23:30 naive stays May 11 for a Tokyo customer (it is not read as UTC)
    tokyo_may_11 = datetime(2027, 5, 11, 3, 0, tzinfo=UTC)  # 12:00 in Tokyo
    zone = "Asia/Tokyo"
    assert anniversary("1990-05-11T23:30:00", now=tokyo_may_11, zone=zone) is True
    assert anniversary(datetime(1990, 5, 11, 23, 30), now=tokyo_may_11, zone=zone) is True
    assert anniversary("1990-05-12T00:30:00", now=tokyo_may_11, zone=zone) is False


def test_sydney_customer_is_already_on_tomorrow() -> None:
    # 20:00 UTC on May 11 is 06:00 on May 12 in Sydney
    now = datetime(2027, 5, 11, 20, 0, tzinfo=UTC)
    assert anniversary("1990-05-12", now=now, zone="Australia/Sydney") is True
    assert anniversary("1990-05-12", now=now, zone="UTC") is False
    assert anniversary("1990-05-11", now=now, zone="UTC") is True
    assert anniversary("1990-05-19", "-7d", now=now, zone="Australia/Sydney") is True
    # epoch seconds still use the UTC date of the stored instant
    assert anniversary(EPOCH_1990_05_12, now=now, zone="Australia/Sydney") is True


# -- 29 February ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("today", "expected"),
    [
        (datetime(2027, 2, 28, 12, tzinfo=UTC), True),  # not a leap year: Feb 28 stands in
        (datetime(2027, 3, 1, 12, tzinfo=UTC), False),
        (datetime(2028, 2, 28, 12, tzinfo=UTC), False),  # leap year: only the 29th
        (datetime(2028, 2, 29, 12, tzinfo=UTC), True),
        (datetime(2028, 3, 1, 12, tzinfo=UTC), False),
    ],
)
def test_leap_day(today: datetime, expected: bool) -> None:
    assert anniversary("2000-02-29", now=today) is expected
    assert anniversary(date(2000, 2, 29), now=today) is expected


def test_leap_day_rule_uses_the_year_of_the_moved_date() -> None:
    # Feb 21 2027 + 7 days = Feb 28 2027 (not leap): a week before the stand-in day
    assert anniversary("2000-02-29", "-7d", now=datetime(2027, 2, 21, 12, tzinfo=UTC)) is True
    # Feb 22 2028 + 7 days = Feb 29 2028 (leap)
    assert anniversary("2000-02-29", "-7d", now=datetime(2028, 2, 22, 12, tzinfo=UTC)) is True
    assert anniversary("2000-02-29", "-7d", now=datetime(2028, 2, 21, 12, tzinfo=UTC)) is False
    # looking back: Mar 7 2027 - 1 week = Feb 28 2027 (stand-in); Mar 7 2028 - 1 week = Feb 29
    assert anniversary("2000-02-29", "1w", now=datetime(2027, 3, 7, 12, tzinfo=UTC)) is True
    assert anniversary("2000-02-29", "1w", now=datetime(2028, 3, 7, 12, tzinfo=UTC)) is True
    assert anniversary("2000-02-29", "1w", now=datetime(2028, 3, 6, 12, tzinfo=UTC)) is False
    # the year that counts is the moved date's, not today's: Mar 1 2027 (not leap) + 52 weeks
    # is Feb 28 2028 (leap), which is not the stand-in day; + 365 days is Feb 29 2028
    assert anniversary("2000-02-29", "-52w", now=datetime(2027, 3, 1, 12, tzinfo=UTC)) is False
    assert anniversary("2000-02-29", "-365d", now=datetime(2027, 3, 1, 12, tzinfo=UTC)) is True
    # and the other way: Jan 2 2028 (leap) - 308 days is Feb 28 2027 (not leap)
    assert anniversary("2000-02-29", "308d", now=datetime(2028, 1, 2, 12, tzinfo=UTC)) is True


# -- anything else is false ----------------------------------------------------------------
@pytest.mark.parametrize(
    "junk",
    [
        None,
        "",
        "   ",
        "yesterday",
        "1990-13-01",
        "1990-02-30",
        "12:00",
        "631152000",  # numeric text is not read as epoch seconds
        "642470400",
        "19900512",  # nor as a basic-format ISO date
        " 642470400 ",
        "6.4247e8",
        [],
        ["1990-05-12"],
        {"date": "1990-05-12"},
        object(),
        float("nan"),
        float("inf"),
        float("-inf"),
        10**30,
        -(10**30),
        1e300,
        True,
        False,
    ],
)
def test_anything_else_is_false(junk: Any) -> None:
    assert anniversary(junk) is False
    assert anniversary(junk, "-7d") is False


def test_bool_is_not_epoch_seconds() -> None:
    # True would be 1970-01-01T00:00:01Z and False 1970-01-01T00:00:00Z if read as numbers
    jan_1 = datetime(2027, 1, 1, 12, tzinfo=UTC)
    assert anniversary(True, now=jan_1) is False
    assert anniversary(False, now=jan_1) is False
    assert anniversary(1, now=jan_1) is True
    assert anniversary(0, now=jan_1) is True


def test_missing_values_are_false_in_expressions_and_templates() -> None:
    s = scope(NOW, "UTC")
    assert compile_value("is_anniversary(customer.birthday)")(s) is False
    assert compile_value("is_anniversary(customer.birthday, customer.offset)")(s) is False
    assert compile_value("is_anniversary('1990-05-12', customer.offset)")(s) is False
    assert compile_condition("is_anniversary(customer.a.b.c)")(s) is False
    source = "{% if is_anniversary(customer.birthday) %}yes{% else %}no{% endif %}"
    assert compile_template(source)(s) == "no"


@pytest.mark.parametrize(
    "offset",
    [
        "1h",
        "7",
        "d",
        "-d",
        "7D",
        "1W",
        "1.5d",
        " 7d",
        "7d ",
        "7d\n",
        "--7d",
        "+-7d",
        "7 d",
        "1w2d",
        "P7D",
        "",
        "\u0663d",  # a non-ASCII digit
        "9" * 5000 + "d",
        None,
        7,
        -7,
        7.0,
        True,
        [],
        ["-7d"],
    ],
)
def test_bad_offsets_are_false(offset: Any) -> None:
    assert anniversary(date(1990, 5, 12), offset) is False
    assert anniversary(date(1990, 5, 19), offset) is False


def test_offsets_past_the_calendar_are_false_not_errors() -> None:
    assert anniversary(date(1990, 5, 12), "99999999d") is False
    assert anniversary(date(1990, 5, 12), "-99999999d") is False
    assert anniversary(date(1990, 5, 12), "3000000w") is False
    # a near-boundary now still works
    assert anniversary(date(1990, 12, 31), "-1d", now=datetime(9999, 12, 30, tzinfo=UTC)) is True
    assert anniversary(date(1990, 1, 1), "-1d", now=datetime(9999, 12, 31, tzinfo=UTC)) is False
