"""Time for postflow: durations, instants, local wall clocks, quiet hours and cron ticks.

Every component that schedules anything (validator, engine, simulator, daemon, test runner)
goes through these functions, so that `simulate`, `test` and `run` agree to the microsecond on
when a timer is due. Times are integers (epoch microseconds, UTC) because integers compare,
hash and serialise exactly, unlike floats or aware datetimes from different zones. Everything
here is pure: no clock reads and no I/O beyond loading time-zone data, so the engine stays
deterministic under a virtual clock.

Wall-clock rules (journeys.md, section 2) are applied in one place, `resolve_local`: a local
time inside a DST gap moves forward by the gap, an ambiguous one takes its first occurrence,
once. Quiet hours, `wait.at` and cron ticks are all built on it, instead of on whatever a cron
library does at DST changes.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from functools import lru_cache
from typing import TypeAlias
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

US_PER_SECOND = 1_000_000
_UNITS_US = {
    "w": 7 * 86_400 * US_PER_SECOND,
    "d": 86_400 * US_PER_SECOND,
    "h": 3_600 * US_PER_SECOND,
    "m": 60 * US_PER_SECOND,
    "s": US_PER_SECOND,
}
# Past this a timer would land beyond what datetime can print; no journey means it.
_MAX_DURATION_US = 36_525 * _UNITS_US["d"]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
# Accepted instants: far enough from datetime's limits that any wait, window or horizon
# computed from them (durations are capped at about 100 years) stays printable.
MIN_INSTANT = (datetime(1000, 1, 1, tzinfo=UTC) - _EPOCH) // timedelta(microseconds=1)
MAX_INSTANT = (datetime(9000, 1, 1, tzinfo=UTC) - _EPOCH) // timedelta(microseconds=1) - 1
_ONE_US = timedelta(microseconds=1)

ZoneLike: TypeAlias = tzinfo | str
"""A zone object, or an IANA name that `load_zone` resolves (and caches)."""


class DurationError(ValueError):
    """A duration, time of day, timestamp, zone or cron written in a way postflow cannot use.

    Its message is a complete phrase naming the bad value and how to write it, so the
    validator can print it as is after ``FILE:LINE:COL: error:``.
    """


def _q(value: object) -> str:
    """Quote a user's value the same way in every message, whatever YAML turned it into."""
    return repr(value if isinstance(value, str) else str(value))


# --- durations ---------------------------------------------------------------------------

_DURATION_HINT = "use 45s, 30m, 12h, 3d, 2w, sums like 1d12h, or ISO 8601 like P3D or PT12H"
_COMPACT = re.compile(r"(?:([0-9]+)w)?(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?")
_ISO = re.compile(
    r"P(?:([0-9]+)W)?(?:([0-9]+)D)?(?:T(?=[0-9])(?:([0-9]+)H)?(?:([0-9]+)M)?(?:([0-9]+)S)?)?"
)
_UNORDERED = re.compile(r"(?:[0-9]+[wdhms])+")
_CALENDAR_UNITS = re.compile(r"[0-9]+(?:y|mo|years?|months?)", re.IGNORECASE)


def parse_duration(text: str) -> int:
    """Read a duration as elapsed microseconds.

    Only fixed-length units are allowed because a duration is elapsed time (``1d`` is 24 h
    even across a DST change); aligning to the wall clock is `wait.at`'s job.
    """
    if not isinstance(text, str):
        if isinstance(text, int) and not isinstance(text, bool):
            raise DurationError(f"bad duration {_q(text)}: a number needs a unit, e.g. {text}s")
        raise DurationError(f"bad duration {_q(text)}: {_DURATION_HINT}")
    iso = text.startswith("P")
    match = (_ISO if iso else _COMPACT).fullmatch(text)
    if match is None or not any(match.groups()):
        raise DurationError(f"bad duration {_q(text)}: {_why_bad_duration(text, iso)}")
    us = sum(int(n) * _UNITS_US[u] for n, u in zip(match.groups(), "wdhms", strict=True) if n)
    if us > _MAX_DURATION_US:
        raise DurationError(f"bad duration {_q(text)}: longer than 36525d (about 100 years)")
    return us


_UNIT_WORDS = re.compile(
    r"([0-9]+)\s*(weeks?|days?|hours?|hrs?|minutes?|mins?|seconds?|secs?)", re.IGNORECASE
)
_UNIT_LETTER = {
    "week": "w",
    "day": "d",
    "hour": "h",
    "hr": "h",
    "minute": "m",
    "min": "m",
    "second": "s",
    "sec": "s",
}


def _why_bad_duration(text: str, iso: bool) -> str:
    """Pick the hint that fixes this particular mistake, not just the grammar."""
    calendar = (iso and re.search("[YM]", text.split("T")[0])) or _CALENDAR_UNITS.fullmatch(text)
    if calendar:
        return "years and months have no fixed length; use days or weeks (e.g. 30d, P4W)"
    if text.isdigit():
        return f"a number needs a unit, e.g. {text}s or {text}m"
    if text.startswith("-"):
        return "durations cannot be negative"
    words = _UNIT_WORDS.fullmatch(text.strip())
    if words:
        number, unit = words.groups()
        return f"write {number}{_UNIT_LETTER[unit.rstrip('s').lower()]}"
    if text != "".join(text.split()):
        return "remove the spaces, e.g. 1d12h"
    if "." in text or "," in text:
        return "use whole numbers of each unit, e.g. 1h30m rather than 1.5h"
    if _UNORDERED.fullmatch(text):
        return "units go from largest to smallest (w, d, h, m, s), each once, e.g. 1d12h"
    return _DURATION_HINT


def format_duration(us: int) -> str:
    """Write microseconds in the compact spelling, largest units first (``1w3d``, ``0s``).

    Used in messages and diagrams, so it must read the way users write durations; whole
    non-negative seconds parse back to the same value. Sub-second rests print as a decimal
    (``1.5s``) and negatives with a leading ``-``, for display only.
    """
    if us < 0:
        return "-" + format_duration(-us)
    parts = []
    rest = us
    for unit, size in _UNITS_US.items():
        if unit == "s":
            break
        count, rest = divmod(rest, size)
        if count:
            parts.append(f"{count}{unit}")
    seconds, frac = divmod(rest, US_PER_SECOND)
    if frac:
        parts.append(f"{seconds}.{frac:06d}".rstrip("0") + "s")
    elif seconds or not parts:
        parts.append(f"{seconds}s")
    return "".join(parts)


# --- times of day and zones ----------------------------------------------------------------

_TIME_OF_DAY = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])(?::([0-5][0-9]))?")


def parse_time_of_day(text: str) -> time:
    """Read a 24-hour wall-clock time such as ``21:00`` (quiet hours, `wait.at`)."""
    if not isinstance(text, str):
        # PyYAML reads an unquoted 10:00 as the base-60 integer 600.
        raise DurationError(
            f'bad time of day {_q(text)}: use HH:MM, 24-hour, quoted ("10:00"), '
            "since YAML reads an unquoted 10:00 as the number 600"
        )
    match = _TIME_OF_DAY.fullmatch(text)
    if match is None:
        raise DurationError(f"bad time of day {_q(text)}: use HH:MM, 24-hour")
    hour, minute, second = match.groups()
    return time(int(hour), int(minute), int(second or 0))


_ZONE_NAME = re.compile(r"[A-Za-z0-9_+-]+(?:/[A-Za-z0-9_+-]+)*")


@lru_cache(maxsize=512)
def load_zone(name: str) -> ZoneInfo:
    """Load an IANA zone by name, refusing names that would depend on the host's setup.

    ``localtime``, paths and similar would make the same journey behave differently on
    different machines, so only plain IANA keys are accepted.
    """
    bad = DurationError(f"unknown time zone {_q(name)} (use an IANA name such as America/New_York)")
    if not isinstance(name, str) or not _ZONE_NAME.fullmatch(name) or name == "localtime":
        raise bad
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise bad from None


def _zone(zone: ZoneLike) -> tzinfo:
    return load_zone(zone) if isinstance(zone, str) else zone


# --- instants --------------------------------------------------------------------------------

_INSTANT = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:[.,]([0-9]{1,9}))?)?"
    r"(Z|[+-][0-9]{2}:?[0-9]{2})?"
)
_INSTANT_HINT = "use ISO 8601 with a UTC offset, like 2027-01-01T10:00:00Z or ...+01:00"


def parse_instant(text: str) -> int:
    """Read a timestamp that names one instant; naive ones are refused, not guessed.

    A timestamp without an offset means different instants in different zones, and
    guessing would silently move a customer's events by hours.
    """
    if not isinstance(text, str):
        raise DurationError(f"bad timestamp {_q(text)}: quote it; {_INSTANT_HINT}")
    match = _INSTANT.fullmatch(text)
    if match is None:
        if re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", text):
            raise DurationError(f"timestamp {_q(text)} has no time of day (write {text}T00:00:00Z)")
        raise DurationError(f"bad timestamp {_q(text)}: {_INSTANT_HINT}")
    year, month, day, hour, minute, second, frac, offset = match.groups()
    if offset is None:
        raise DurationError(f"timestamp {_q(text)} has no UTC offset (add Z or +01:00)")
    try:
        if offset == "Z":
            tz = UTC
        else:
            sign = -1 if offset[0] == "-" else 1
            digits = offset[1:].replace(":", "")
            if int(digits[2:]) > 59:
                raise ValueError("UTC offset minutes must be 00..59")
            delta = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
            tz = timezone(sign * delta)
        micro = int((frac or "0").ljust(9, "0")[:6])  # nanoseconds are truncated
        dt = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second or 0), micro, tz
        )
        us = from_datetime(dt)
        if not MIN_INSTANT <= us <= MAX_INSTANT:
            raise ValueError("years 1000 to 8999 only (timers and windows must stay printable)")
        return us
    except (ValueError, OverflowError) as exc:
        raise DurationError(f"bad timestamp {_q(text)}: {exc}") from None


@lru_cache(maxsize=8192)
def format_instant(us: int) -> str:
    """Print an instant the one way records show it: UTC, ``Z``, microseconds only if any.

    Cached, and built from a cached date prefix plus integer arithmetic for the time of day:
    every record and every event view prints one, and most instants are distinct.
    """
    seconds, micro = divmod(us, US_PER_SECOND)
    days, second_of_day = divmod(seconds, 86_400)
    hours, rest = divmod(second_of_day, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{_day_prefix(days)}{hours:02d}:{minutes:02d}:{secs:02d}"
    if micro:
        return f"{text}.{micro:06d}Z"
    return text + "Z"


@lru_cache(maxsize=4096)
def _day_prefix(days: int) -> str:
    """``YYYY-MM-DDT`` of a day counted from the epoch (years 1 to 9999; beyond: ValueError)."""
    day = date.fromordinal(_EPOCH_ORDINAL + days)
    return f"{day.year:04d}-{day.month:02d}-{day.day:02d}T"


def to_datetime(us: int) -> datetime:
    """Give an aware UTC datetime, for code that needs calendar fields."""
    return _EPOCH + timedelta(microseconds=us)


def from_datetime(dt: datetime) -> int:
    """Turn an aware datetime into epoch microseconds, exactly (no float rounding).

    Naive datetimes are refused: they do not name an instant.
    """
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"datetime {dt.isoformat()} is naive; give it a tzinfo")
    return (dt - _EPOCH) // _ONE_US


def local_datetime(us: int, zone: ZoneLike) -> datetime:
    """Show an instant on the wall clock of `zone` (aware, with the right `fold`)."""
    return to_datetime(us).astimezone(_zone(zone))


def resolve_local(d: date, t: time, zone: ZoneLike) -> int:
    """Find the instant of wall time `d` `t` in `zone`, the one way the contract allows.

    ``fold=0`` is exactly the rule: in a gap zoneinfo uses the offset from before the change,
    which moves the time forward by the gap (02:30 -> 03:30); in a repeated hour it picks the
    first occurrence.
    """
    return _resolve_local(d, t, _zone(zone))


@lru_cache(maxsize=8192)
def _resolve_local(d: date, t: time, tz: tzinfo) -> int:
    # Cached: customers of one zone ask for the same few wall times each day.
    naive = datetime.combine(d, t.replace(tzinfo=None, fold=0))
    return from_datetime(naive.replace(tzinfo=tz))


def next_local_at(us: int, t: time, zone: ZoneLike) -> int:
    """Find the first local `t` at or after `us` (`wait.at`).

    Only first occurrences count, so a moment inside the second pass of a repeated hour,
    after `t`'s first occurrence, waits for the next day: `t` happens once per day. The
    search starts a day early because a gap across midnight can move yesterday's `t` into
    today.
    """
    tz = _zone(zone)
    day = local_datetime(us, tz).date() - timedelta(days=1)
    candidate = resolve_local(day, t, tz)
    while candidate < us:
        day += timedelta(days=1)
        candidate = resolve_local(day, t, tz)
    return candidate


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
"""Day names as journeys write them, in :meth:`date.weekday` order."""


def next_local_at_on(us: int, t: time, zone: ZoneLike, days: frozenset[int]) -> int:
    """The first local ``t`` at or after ``us`` on a local day in ``days`` (weekday numbers,
    Monday 0): ``wait: {for, at, days}``. Same first-occurrence rule as :func:`next_local_at`."""
    tz = _zone(zone)
    day = local_datetime(us, tz).date() - timedelta(days=1)
    for _ in range(16):
        if day.weekday() in days:
            candidate = resolve_local(day, t, tz)
            if candidate >= us:
                return candidate
        day += timedelta(days=1)
    raise ValueError("no listed day within two weeks")  # pragma: no cover - days is non-empty


def window_release(
    us: int, start: time, end: time, days: frozenset[int], zone: ZoneLike
) -> int | None:
    """When a message due at ``us`` may go out under a send window, or None when the window
    is open at ``us``. The window is open on each listed local day during ``[start, end)``;
    one with ``end < start`` runs past midnight and belongs to the day it opens."""
    if start == end:
        raise ValueError("a send window needs start != end")
    tz = _zone(zone)
    wraps = start > end
    today = local_datetime(us, tz).date()
    for back in (1, 0):
        day = today - timedelta(days=back)
        if day.weekday() in days:
            opens = resolve_local(day, start, tz)
            closes = resolve_local(day + timedelta(days=1 if wraps else 0), end, tz)
            if opens <= us < closes:
                return None
    day = today - timedelta(days=1)
    for _ in range(16):
        if day.weekday() in days:
            opens = resolve_local(day, start, tz)
            if opens > us:
                return opens
        day += timedelta(days=1)
    raise ValueError("no listed day within two weeks")  # pragma: no cover


def quiet_release(us: int, start: time, end: time, zone: ZoneLike) -> int | None:
    """Return when a message due at `us` may go out, or None if it is not in quiet hours.

    Each night's window is the instants from `resolve_local(start)` up to `resolve_local(end)`
    (the next day's `end` when the window wraps midnight), so DST gaps and repeated hours are
    handled by the same rule as `wait.at`: a window ending at an ambiguous time ends at its
    first occurrence, and a message in the repeated hour after that is not held again for a
    day. `start` is inside the window, `end` is not.
    """
    if start == end:
        raise ValueError("quiet hours need start != end")
    tz = _zone(zone)
    release = None
    moment = us
    for _ in range(3):  # windows only overlap (and chain) around odd DST changes
        end_us = _window_end(moment, start, end, tz)
        if end_us is None:
            break
        release = moment = end_us
    return release


def _window_end(us: int, start: time, end: time, tz: tzinfo) -> int | None:
    today = local_datetime(us, tz).date()
    ends = [
        closes for opens, closes in _windows_near(today, start, end, tz) if opens <= us < closes
    ]
    return max(ends, default=None)


@lru_cache(maxsize=4096)
def _windows_near(today: date, start: time, end: time, tz: tzinfo) -> tuple[tuple[int, int], ...]:
    """The windows that opened two days before ``today`` up to the one opening tomorrow, as
    (opens, closes) instants. Cached: every held or checked message on a day in a zone asks
    for the same four windows, and resolving wall times is the costly part."""
    wraps = start > end
    windows = []
    for back in (2, 1, 0, -1):
        day = today - timedelta(days=back)
        opens = resolve_local(day, start, tz)
        closes = resolve_local(day + timedelta(days=1 if wraps else 0), end, tz)
        windows.append((opens, closes))
    return tuple(windows)


# --- cron --------------------------------------------------------------------------------------

_CRON_FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")
_CRON_HINT = "5 fields: minute hour day-of-month month day-of-week"
_MONTHS = "jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec"
_DAYS = "sun|mon|tue|wed|thu|fri|sat"


def _field_pattern(names: str | None) -> re.Pattern[str]:
    value = f"(?:[0-9]+|{names})" if names else "[0-9]+"
    item = rf"(?:\*|{value}(?:-{value})?)(?:/[0-9]+)?"
    return re.compile(rf"{item}(?:,{item})*", re.IGNORECASE)


# Vixie syntax only: cronsim also takes L, LW and # (Quartz-style), which Vixie cron rejects.
_FIELD_PATTERNS = tuple(_field_pattern(n) for n in (None, None, None, _MONTHS, _DAYS))


@dataclass(frozen=True)
class Cron:
    """A checked 5-field cron expression: parse once, iterate as often as needed."""

    expr: str

    def __str__(self) -> str:
        return self.expr


def parse_cron(expr: str) -> Cron:
    """Check a cron expression up front, so a bad schedule fails validation, not at a tick."""
    if not isinstance(expr, str):
        raise DurationError(f"bad cron {_q(expr)}: write it as a quoted string ({_CRON_HINT})")
    fields = expr.split()
    if len(fields) != 5:
        raise DurationError(
            f"bad cron {_q(expr)}: needs exactly {_CRON_HINT}, no nicknames or seconds"
        )
    for name, pattern, field in zip(_CRON_FIELDS, _FIELD_PATTERNS, fields, strict=True):
        if not pattern.fullmatch(field):
            raise DurationError(f"bad cron {_q(expr)}: bad {name} ({_CRON_HINT})")
    normalised = " ".join(fields)
    try:
        CronSim(normalised, datetime(2000, 1, 1))
    except CronSimError as exc:  # out-of-range values, reversed ranges, zero steps
        what = str(exc).lower()
        what = what if what.startswith("bad ") else "bad expression"
        raise DurationError(f"bad cron {_q(expr)}: {what} ({_CRON_HINT})") from None
    return Cron(normalised)


def next_cron_tick(cron: Cron, zone: ZoneLike, after_us: int) -> int | None:
    """The first tick strictly after ``after_us`` (within a year and a day), cached: every
    customer of a zone asks for the same next tick."""
    return _next_cron_tick(cron, _zone(zone), after_us)


@lru_cache(maxsize=16384)
def _next_cron_tick(cron: Cron, tz: tzinfo, after_us: int) -> int | None:
    return next(cron_ticks(cron, tz, after_us + 1, after_us + 367 * 86_400 * US_PER_SECOND), None)


def cron_ticks(cron: Cron | str, zone: ZoneLike, start_us: int, end_us: int) -> Iterator[int]:
    """Yield every tick in ``[start_us, end_us]``, lazily and strictly increasing.

    cronsim walks naive wall-clock times (so it never applies its own DST fixes) and each is
    resolved with `resolve_local`. That mapping is monotonic except inside gaps, where it
    pushes a tick forward past later wall times, so ticks wait in a heap until no later wall
    time can resolve before them. Ticks that land on the same instant fire once.
    """
    spec = parse_cron(cron) if isinstance(cron, str) else cron
    tz = _zone(zone)
    if end_us < start_us:
        return
    # A gap in the last day can push a wall time from before `start_us` to after it.
    recent_offsets = {
        local_datetime(start_us - h * 3_600 * US_PER_SECOND, tz).utcoffset() for h in range(26)
    }
    lookback = timedelta(days=2) if len(recent_offsets) > 1 else timedelta(0)
    first = local_datetime(start_us, tz).replace(tzinfo=None) - lookback - timedelta(seconds=1)
    pending: list[int] = []
    last: int | None = None
    for wall in CronSim(spec.expr, first):
        aware = wall.replace(tzinfo=tz)
        instant = from_datetime(aware)
        heapq.heappush(pending, instant)
        # Every later wall time resolves after this: the wall time read with the offset that
        # is actually in force at `instant` (lower than `instant` only inside a gap).
        offset = local_datetime(instant, tz).utcoffset() or timedelta(0)
        watermark = from_datetime(wall.replace(tzinfo=timezone(offset)))
        while pending and pending[0] <= watermark:
            tick = heapq.heappop(pending)
            if start_us <= tick <= end_us and (last is None or tick > last):
                last = tick
                yield tick
        if watermark >= end_us:
            return
    for tick in sorted(pending):  # cronsim gave up (no match for 50 years)
        if start_us <= tick <= end_us and (last is None or tick > last):
            last = tick
            yield tick
