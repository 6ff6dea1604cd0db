"""Behaviour of postflow.durations that a journey author would notice: spellings accepted and
refused (with the message they read), instants, wall-clock alignment, quiet hours and cron
ticks around real DST changes (real tzdata, no mocks)."""

from __future__ import annotations

import itertools
import sys
from datetime import UTC, date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postflow import durations
from postflow.durations import (
    US_PER_SECOND,
    Cron,
    DurationError,
    cron_ticks,
    format_duration,
    format_instant,
    from_datetime,
    load_zone,
    local_datetime,
    next_local_at,
    parse_cron,
    parse_duration,
    parse_instant,
    parse_time_of_day,
    quiet_release,
    resolve_local,
    to_datetime,
)

S = US_PER_SECOND
H = 3_600 * S
D = 24 * H
NY = "America/New_York"
CHICAGO = "America/Chicago"


def at(text: str) -> int:
    return parse_instant(text)


def ticks(expr: str, zone: str, start: str, end: str) -> list[str]:
    return [format_instant(t) for t in cron_ticks(expr, zone, at(start), at(end))]


# --- durations ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0s", 0),
        ("45s", 45),
        ("30m", 1_800),
        ("12h", 43_200),
        ("3d", 259_200),
        ("2w", 1_209_600),
        ("1d12h", 129_600),
        ("1w2d3h4m5s", 7 * 86_400 + 2 * 86_400 + 3 * 3_600 + 4 * 60 + 5),
        ("90m", 5_400),
        ("P3D", 259_200),
        ("PT12H", 43_200),
        ("P1DT12H", 129_600),
        ("P2W", 1_209_600),
        ("PT30M", 1_800),
        ("PT45S", 45),
        ("P0D", 0),
        ("PT1H30M", 5_400),
    ],
)
def test_every_duration_spelling(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds * S


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ("3x", "use 45s, 30m, 12h, 3d, 2w, sums like 1d12h, or ISO 8601 like P3D or PT12H"),
        ("", "use 45s, 30m"),
        ("-1d", "cannot be negative"),
        ("30", "a number needs a unit"),
        ("1.5h", "whole numbers"),
        ("PT1.5H", "whole numbers"),
        (" 3d", "remove the spaces"),
        ("1d 12h", "remove the spaces"),
        ("12h1d", "largest to smallest"),
        ("1d1d", "largest to smallest"),
        ("P1Y", "years and months have no fixed length"),
        ("P1M", "years and months have no fixed length"),
        ("P1Y2M3D", "years and months have no fixed length"),
        ("1y", "years and months have no fixed length"),
        ("P", "use 45s"),
        ("PT", "use 45s"),
        ("P1DT", "use 45s"),
        ("3D", "use 45s"),
        ("1000000w", "about 100 years"),
    ],
)
def test_bad_durations_say_how_to_write_them(text: str, hint: str) -> None:
    with pytest.raises(DurationError) as err:
        parse_duration(text)
    assert str(err.value).startswith(f"bad duration {text!r}: ")
    assert hint in str(err.value)


def test_a_yaml_number_is_not_a_duration() -> None:
    with pytest.raises(
        DurationError, match=r"bad duration '30': a number needs a unit, e\.g\. 30s"
    ):
        parse_duration(30)  # type: ignore[arg-type]


def test_a_day_is_24_hours_elapsed_across_spring_forward() -> None:
    noon_before = at("2027-03-13T12:00:00-05:00")  # EST, the day before the change
    later = noon_before + parse_duration("1d")
    assert later - noon_before == 86_400 * S
    assert local_datetime(later, NY).time() == time(13, 0)  # the wall clock moved an hour


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (45, "45s"), (90, "1m30s"), (129_600, "1d12h"), (14 * 86_400, "2w"),
     (10 * 86_400, "1w3d"), (86_401, "1d1s")],
)  # fmt: skip
def test_format_duration_is_compact(seconds: int, text: str) -> None:
    assert format_duration(seconds * S) == text


def test_format_duration_shows_fractions_and_signs_for_messages() -> None:
    assert format_duration(1_500_000) == "1.5s"
    assert format_duration(-D) == "-1d"


@given(st.integers(min_value=0, max_value=36_525 * 86_400))
def test_formatted_durations_parse_back(seconds: int) -> None:
    assert parse_duration(format_duration(seconds * S)) == seconds * S


# --- times of day and zones ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [("00:00", time(0)), ("10:00", time(10)), ("21:30", time(21, 30)),
     ("23:59:59", time(23, 59, 59))],
)  # fmt: skip
def test_time_of_day(text: str, expected: time) -> None:
    assert parse_time_of_day(text) == expected


@pytest.mark.parametrize("text", ["25:00", "24:00", "9:00", "10:60", "10:00:60", "10h", " 10:00"])
def test_bad_time_of_day(text: str) -> None:
    with pytest.raises(DurationError, match=rf"^bad time of day '{text}': use HH:MM, 24-hour$"):
        parse_time_of_day(text)


def test_unquoted_yaml_time_gets_a_hint() -> None:
    with pytest.raises(DurationError, match="YAML reads an unquoted 10:00 as the number 600"):
        parse_time_of_day(600)  # type: ignore[arg-type]


def test_zones_load_once() -> None:
    assert load_zone(NY) is load_zone(NY)
    assert load_zone("UTC").key == "UTC"


@pytest.mark.parametrize(
    "name", ["Mars/Base", "", "localtime", "/etc/localtime", "../etc/passwd", "America",
             "zone.tab", "america/new_york", "America/New_York "],
)  # fmt: skip
def test_unknown_zones(name: str) -> None:
    expected = f"unknown time zone {name!r} (use an IANA name such as America/New_York)"
    with pytest.raises(DurationError) as err:
        load_zone(name)
    assert str(err.value) == expected


# --- instants ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "utc"),
    [
        ("2027-01-01T10:00:00Z", "2027-01-01T10:00:00Z"),
        ("2027-01-01T10:00Z", "2027-01-01T10:00:00Z"),
        ("2027-01-01T10:00:00+05:30", "2027-01-01T04:30:00Z"),
        ("2027-01-01T10:00:00+0530", "2027-01-01T04:30:00Z"),
        ("2027-01-01T01:00:00-08:00", "2027-01-01T09:00:00Z"),
        ("2027-01-01T10:00:00.5Z", "2027-01-01T10:00:00.500000Z"),
        ("2027-01-01T10:00:00.000001+00:00", "2027-01-01T10:00:00.000001Z"),
        ("2027-01-01T10:00:00.123456789Z", "2027-01-01T10:00:00.123456Z"),
    ],
)
def test_instants_name_one_moment(text: str, utc: str) -> None:
    assert format_instant(parse_instant(text)) == utc


@given(st.integers(min_value=durations.MIN_INSTANT, max_value=durations.MAX_INSTANT))
def test_format_and_parse_instant_round_trip(us: int) -> None:
    assert parse_instant(format_instant(us)) == us


def test_format_instant_shape() -> None:
    assert format_instant(0) == "1970-01-01T00:00:00Z"
    assert format_instant(-1) == "1969-12-31T23:59:59.999999Z"
    assert format_instant(at("2027-03-01T14:00:00Z") + 7) == "2027-03-01T14:00:00.000007Z"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "2027-01-01T10:00:00",
            "timestamp '2027-01-01T10:00:00' has no UTC offset (add Z or +01:00)",
        ),
        ("2027-01-01", "timestamp '2027-01-01' has no time of day (write 2027-01-01T00:00:00Z)"),
        ("2027-01-01 10:00:00Z", "bad timestamp '2027-01-01 10:00:00Z': use ISO 8601"),
        ("2027-13-01T10:00:00Z", "bad timestamp '2027-13-01T10:00:00Z': month must be in 1..12"),
        ("2027-02-30T10:00:00Z", "day is out of range"),
        ("2027-01-01T10:00:00+05:99", "offset minutes"),
        ("0001-01-01T00:00:00+01:00", "bad timestamp"),
        ("yesterday", "bad timestamp 'yesterday'"),
    ],
)
def test_bad_timestamps(text: str, message: str) -> None:
    with pytest.raises(DurationError) as err:
        parse_instant(text)
    assert message in str(err.value)


def test_datetimes_convert_exactly() -> None:
    us = at("2027-03-01T14:00:00.000001Z")
    assert to_datetime(us) == datetime(2027, 3, 1, 14, 0, 0, 1, tzinfo=UTC)
    assert to_datetime(us).utcoffset() == timedelta(0)
    kolkata = datetime(2027, 3, 1, 19, 30, 0, 1, tzinfo=ZoneInfo("Asia/Kolkata"))
    assert from_datetime(kolkata) == us
    assert (
        from_datetime(datetime(2027, 3, 1, 9, 0, 0, 1, tzinfo=timezone(-timedelta(hours=5)))) == us
    )
    with pytest.raises(ValueError, match="naive"):
        from_datetime(datetime(2027, 3, 1, 14))
    assert local_datetime(us, NY).replace(tzinfo=None) == datetime(2027, 3, 1, 9, 0, 0, 1)


# --- local wall clock ------------------------------------------------------------------------


def test_resolve_local_moves_gap_times_forward_and_takes_first_occurrence() -> None:
    assert format_instant(resolve_local(date(2027, 3, 14), time(2, 30), CHICAGO)) == (
        "2027-03-14T08:30:00Z"  # 03:30 CDT
    )
    assert format_instant(resolve_local(date(2027, 11, 7), time(1, 30), CHICAGO)) == (
        "2027-11-07T06:30:00Z"  # 01:30 CDT, not 01:30 CST
    )
    assert format_instant(resolve_local(date(2027, 7, 1), time(9), load_zone(CHICAGO))) == (
        "2027-07-01T14:00:00Z"
    )


@pytest.mark.parametrize(
    ("moment", "at_time", "zone", "expected"),
    [
        # 2027-03-01T14:00Z + 1d is 09:00 EST on Mar 2: wait for 10:00 that day
        ("2027-03-02T14:00:00Z", "10:00", NY, "2027-03-02T15:00:00Z"),
        ("2027-03-02T15:00:00Z", "10:00", NY, "2027-03-02T15:00:00Z"),  # exactly at: now
        ("2027-03-02T15:00:01Z", "10:00", NY, "2027-03-03T15:00:00Z"),
        ("2027-03-02T15:00:00.000001Z", "10:00", NY, "2027-03-03T15:00:00Z"),
        ("2027-01-10T03:00:00Z", "10:00", "Asia/Kolkata", "2027-01-10T04:30:00Z"),
        ("2027-01-10T05:00:00Z", "10:00", "Asia/Kolkata", "2027-01-11T04:30:00Z"),
        ("2027-03-14T06:00:00Z", "02:30", CHICAGO, "2027-03-14T08:30:00Z"),  # gap: 03:30 CDT
        ("2027-11-07T05:00:00Z", "01:30", CHICAGO, "2027-11-07T06:30:00Z"),  # first 01:30
        ("2027-11-07T07:15:00Z", "01:30", CHICAGO, "2027-11-08T07:30:00Z"),  # once a day
        ("2027-03-13T16:00:00Z", "10:00", NY, "2027-03-14T14:00:00Z"),  # after spring-forward
    ],
)
def test_next_local_at(moment: str, at_time: str, zone: str, expected: str) -> None:
    result = next_local_at(at(moment), parse_time_of_day(at_time), zone)
    assert format_instant(result) == expected


def test_wait_for_then_at_lands_on_next_days_wall_clock() -> None:
    due = at("2027-03-01T14:00:00Z") + parse_duration("1d")
    assert format_instant(next_local_at(due, time(10), NY)) == "2027-03-02T15:00:00Z"


# --- quiet hours ---------------------------------------------------------------------------

NIGHT = (time(21), time(9))


def test_quiet_hours_release_at_local_end_across_fall_back() -> None:
    held = at("2027-11-07T03:00:00Z")  # 22:00 CDT on Nov 6
    assert format_instant(quiet_release(held, *NIGHT, CHICAGO) or 0) == "2027-11-07T15:00:00Z"


def test_quiet_hours_start_is_inside_and_end_is_outside() -> None:
    start = at("2027-07-01T02:00:00Z")  # 21:00 CDT on Jun 30
    assert quiet_release(start, *NIGHT, CHICAGO) == at("2027-07-01T14:00:00Z")
    assert quiet_release(start - 1, *NIGHT, CHICAGO) is None
    assert quiet_release(at("2027-07-01T14:00:00Z"), *NIGHT, CHICAGO) is None
    assert quiet_release(at("2027-07-01T13:59:59Z"), *NIGHT, CHICAGO) == at("2027-07-01T14:00:00Z")


def test_quiet_hours_after_midnight_release_the_same_morning() -> None:
    assert quiet_release(at("2027-07-01T07:00:00Z"), *NIGHT, CHICAGO) == at("2027-07-01T14:00:00Z")
    assert quiet_release(at("2027-07-01T18:00:00Z"), *NIGHT, CHICAGO) is None


def test_non_wrapping_window() -> None:
    lunch = (time(13), time(14))
    assert quiet_release(at("2027-07-01T18:30:00Z"), *lunch, CHICAGO) == at("2027-07-01T19:00:00Z")
    assert quiet_release(at("2027-07-01T19:00:00Z"), *lunch, CHICAGO) is None
    assert quiet_release(at("2027-07-01T17:59:00Z"), *lunch, CHICAGO) is None
    assert quiet_release(at("2027-07-01T13:30:00Z"), *lunch, "UTC") == at("2027-07-01T14:00:00Z")


def test_window_ending_at_an_ambiguous_time_ends_at_its_first_occurrence() -> None:
    window = (time(21), time(1, 30))
    assert quiet_release(at("2027-11-07T05:00:00Z"), *window, CHICAGO) == at("2027-11-07T06:30:00Z")
    # 01:15 CST, after the window already ended at 01:30 CDT: not held for another day
    assert quiet_release(at("2027-11-07T07:15:00Z"), *window, CHICAGO) is None


def test_window_starting_in_a_gap_starts_after_the_gap() -> None:
    window = (time(2, 30), time(5))  # 02:30 does not exist on 2027-03-14: it starts 03:30 CDT
    assert quiet_release(at("2027-03-14T08:10:00Z"), *window, CHICAGO) is None
    assert quiet_release(at("2027-03-14T08:40:00Z"), *window, CHICAGO) == at("2027-03-14T10:00:00Z")


def test_empty_window_is_refused() -> None:
    with pytest.raises(ValueError):
        quiet_release(0, time(9), time(9), CHICAGO)


# --- cron ----------------------------------------------------------------------------------


def test_vixie_day_of_month_or_day_of_week() -> None:
    got = ticks("0 10 1-7 * 0", NY, "2027-03-01T00:00:00Z", "2027-04-05T00:00:00Z")
    assert got == [
        *(f"2027-03-0{d}T15:00:00Z" for d in range(1, 8)),  # Mar 1..7, EST
        "2027-03-14T14:00:00Z",  # Sunday, EDT
        "2027-03-21T14:00:00Z",
        "2027-03-28T14:00:00Z",
        "2027-04-01T14:00:00Z",
        "2027-04-02T14:00:00Z",
        "2027-04-03T14:00:00Z",
        "2027-04-04T14:00:00Z",  # both a 1-7 day and a Sunday: once
    ]


def test_a_starred_day_field_means_and() -> None:
    got = ticks("0 10 */2 * 1", "UTC", "2027-03-01T00:00:00Z", "2027-04-01T00:00:00Z")
    assert got == ["2027-03-01T10:00:00Z", "2027-03-15T10:00:00Z", "2027-03-29T10:00:00Z"]


def test_seven_is_sunday_too() -> None:
    window = ("2027-01-01T00:00:00Z", "2027-12-31T23:59:59Z")
    sundays = ticks("0 9 * * 7", NY, *window)
    assert sundays == ticks("0 9 * * 0", NY, *window) == ticks("0 9 * * sun", NY, *window)
    assert len(sundays) == 52
    assert all(to_datetime(at(t)).weekday() == 6 for t in sundays)


def test_cron_tick_in_spring_forward_gap_fires_once_after_it() -> None:
    got = ticks("30 2 * * *", NY, "2027-03-13T00:00:00Z", "2027-03-16T00:00:00Z")
    assert got == ["2027-03-13T07:30:00Z", "2027-03-14T07:30:00Z", "2027-03-15T06:30:00Z"]
    assert local_datetime(at(got[1]), NY).time() == time(3, 30)


def test_cron_tick_in_repeated_hour_fires_once_at_first_occurrence() -> None:
    got = ticks("30 1 * * *", CHICAGO, "2027-11-06T00:00:00Z", "2027-11-09T00:00:00Z")
    assert got == ["2027-11-06T06:30:00Z", "2027-11-07T06:30:00Z", "2027-11-08T07:30:00Z"]


def test_cron_ticks_landing_on_one_instant_fire_once_in_order() -> None:
    assert ticks("30 2,3 * * *", NY, "2027-03-14T00:00:00Z", "2027-03-15T00:00:00Z") == [
        "2027-03-14T07:30:00Z"
    ]
    # 02:10 -> 03:10 EDT comes after the real 03:10 in wall order, not in time
    assert ticks("10,30 2,3 * * *", NY, "2027-03-14T00:00:00Z", "2027-03-15T00:00:00Z") == [
        "2027-03-14T07:10:00Z",
        "2027-03-14T07:30:00Z",
    ]


def test_cron_gap_tick_just_after_start_is_not_lost() -> None:
    assert ticks("30 2 * * *", NY, "2027-03-14T07:15:00Z", "2027-03-14T07:45:00Z") == [
        "2027-03-14T07:30:00Z"
    ]


def test_cron_bounds_are_inclusive() -> None:
    assert ticks("0 9 * * *", "UTC", "2027-01-01T09:00:00Z", "2027-01-03T09:00:00Z") == [
        "2027-01-01T09:00:00Z",
        "2027-01-02T09:00:00Z",
        "2027-01-03T09:00:00Z",
    ]
    assert ticks("0 9 * * *", "UTC", "2027-01-01T09:00:00.000001Z", "2027-01-02T08:59:59Z") == []
    assert ticks("0 9 * * *", "UTC", "2027-01-03T00:00:00Z", "2027-01-01T00:00:00Z") == []


END_OF_TIME = "8999-01-01T00:00:00Z"


class _OverBudget(Exception):
    pass


def first_ticks_within_budget(expr: str, zone: str, start: str, n: int = 3) -> list[str]:
    """The first ``n`` ticks from ``start`` to the year 8999, computed under a budget of
    100,000 Python trace events (calls and lines, in postflow and in cronsim alike). This
    bounds the work itself, not the time it takes on this machine: the cases below need
    1,200 to 6,000 events today; building every tick up front, or scanning minute by minute
    between yearly ticks (525,600 candidates a year), runs out of budget and fails the test."""
    budget = 100_000

    def tracer(frame: object, event: str, arg: object) -> object:
        nonlocal budget
        budget -= 1
        if budget < 0:
            raise _OverBudget
        return tracer

    previous = sys.gettrace()
    sys.settrace(tracer)  # type: ignore[arg-type]
    try:
        first = list(itertools.islice(cron_ticks(expr, zone, at(start), at(END_OF_TIME)), n))
    except _OverBudget:
        pytest.fail(f"more than 100,000 trace events for the first {n} ticks of {expr!r}")
    finally:
        sys.settrace(previous)
    return [format_instant(t) for t in first]


def test_cron_ticks_are_lazy_and_skip_ahead() -> None:
    assert first_ticks_within_budget("* * * * *", "UTC", "1970-01-01T00:00:00Z") == [
        "1970-01-01T00:00:00Z",
        "1970-01-01T00:01:00Z",
        "1970-01-01T00:02:00Z",
    ]
    assert first_ticks_within_budget("0 9 1 1 *", "UTC", "1970-01-01T00:00:00Z") == [
        "1970-01-01T09:00:00Z",
        "1971-01-01T09:00:00Z",
        "1972-01-01T09:00:00Z",
    ]
    # four years apart, from a start just after a DST change (the look-back path)
    assert first_ticks_within_budget("30 2 29 2 *", NY, "2027-03-14T12:00:00Z") == [
        "2028-02-29T07:30:00Z",
        "2032-02-29T07:30:00Z",
        "2036-02-29T07:30:00Z",
    ]


def test_parse_cron_once_iterate_many() -> None:
    cron = parse_cron("0  9 * *   mon-fri")
    assert cron == Cron("0 9 * * mon-fri")
    assert str(cron) == "0 9 * * mon-fri"
    window = (at("2027-03-01T00:00:00Z"), at("2027-03-08T00:00:00Z"))
    assert list(cron_ticks(cron, NY, *window)) == list(cron_ticks(cron, NY, *window))
    assert len(list(cron_ticks(cron, load_zone(NY), *window))) == 5


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("61 * * * *", "bad cron '61 * * * *': bad minute (5 fields: minute hour day-of-month "
                       "month day-of-week)"),
        ("0 24 * * *", "bad hour"),
        ("0 0 0 * *", "bad day-of-month"),
        ("0 0 31 2 *", "bad day-of-month"),
        ("0 0 * 13 *", "bad month"),
        ("0 0 * * 8", "bad day-of-week"),
        ("0 5-1 * * *", "bad hour"),
        ("*/0 * * * *", "bad minute"),
        ("0 0 L * *", "bad day-of-month"),
        ("0 0 * * 1#2", "bad day-of-week"),
        ("0 0 * * 5L", "bad day-of-week"),
        ("@daily", "needs exactly 5 fields"),
        ("0 0 9 * * *", "needs exactly 5 fields"),
        ("0 9 * *", "needs exactly 5 fields"),
        ("", "needs exactly 5 fields"),
    ],
)  # fmt: skip
def test_bad_cron(expr: str, message: str) -> None:
    with pytest.raises(DurationError) as err:
        parse_cron(expr)
    assert str(err.value).startswith(f"bad cron {expr!r}: ")
    assert message in str(err.value)


ZONES = st.sampled_from([NY, CHICAGO, "Europe/Berlin", "Australia/Lord_Howe", "Asia/Kolkata"])
DST_SEASON = st.integers(min_value=at("2027-03-01T00:00:00Z"), max_value=at("2027-11-30T00:00:00Z"))


@settings(deadline=None)  # real work: up to 720 ticks across DST changes per example
@given(ZONES, DST_SEASON, st.sampled_from(["*/20 * * * *", "30 1,2,3 * * *", "0 2 * * 0"]))
def test_cron_ticks_increase_and_stay_in_bounds(zone: str, start: int, expr: str) -> None:
    end = start + 10 * D
    got = list(cron_ticks(expr, zone, start, end))
    assert all(start <= t <= end for t in got)
    assert all(a < b for a, b in itertools.pairwise(got))


@given(ZONES, DST_SEASON, st.sampled_from([time(0, 30), time(2, 30), time(10)]))
def test_next_local_at_is_soon_and_never_early(zone: str, us: int, when: time) -> None:
    result = next_local_at(us, when, zone)
    assert us <= result < us + 2 * D
    assert result == resolve_local(local_datetime(result, zone).date(), when, zone) or (
        result == resolve_local(local_datetime(result, zone).date() - timedelta(days=1), when, zone)
    )
