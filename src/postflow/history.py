"""Event history in expressions (§9): ``count_events``, ``last_event_of``, ``purchased``.

The engine is given each customer's applied events (type, effective ``at``, data) within
``history.keep`` and appends every event it applies, backfilled ones included; expressions
read that list from the scope (``_history``). Nothing here does I/O: a store loads the
history once per claimed batch, and journeys that never call these functions are given none.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from jinja2 import pass_context
from jinja2.runtime import Context, Undefined

from postflow import durations

Entry = tuple[str, int, dict[str, Any]]
"""One applied event: (type, effective at in epoch microseconds, data)."""

NAMES = ("count_events", "last_event_of", "purchased")
_CALLS = re.compile(r"\b(?:count_events|last_event_of|purchased)\s*\(")
DEFAULT_KEEP = 400 * 86_400_000_000


def uses_history(text: str) -> bool:
    """Whether journey source text calls a history function (so the engine needs history)."""
    return _CALLS.search(text) is not None


def _entries(context: Context) -> list[Entry]:
    found = context.get("_history")
    return found if isinstance(found, list) else []


def _now_us(context: Context) -> int:
    now = context.get("now")
    if not isinstance(now, datetime) or now.tzinfo is None:
        raise TypeError("'now' is not an aware datetime in this scope")
    return durations.from_datetime(now)


def _keep(context: Context) -> int:
    helpers = context.get("_helpers")
    return int(getattr(helpers, "history_keep", DEFAULT_KEEP) or DEFAULT_KEEP)


def _window(context: Context, within: Any, since: Any) -> tuple[int, int, int | None]:
    """(exclusive floor, now, inclusive since) in microseconds."""
    now = _now_us(context)
    floor = now - _keep(context)
    if within is not None and not isinstance(within, Undefined):
        floor = max(floor, now - durations.parse_duration(str(within)))
    start = None
    if since is not None and not isinstance(since, Undefined):
        if isinstance(since, datetime):
            if since.tzinfo is None:
                raise ValueError("since: the datetime has no time zone")
            start = durations.from_datetime(since)
        else:
            start = durations.parse_instant(str(since))
    return floor, now, start


def _holds(data: Mapping[str, Any], where: Any) -> bool:
    if where is None or isinstance(where, Undefined):
        return True
    if not isinstance(where, Mapping):
        raise TypeError("where must be a mapping, like where={'order_id': 'o_1'}")
    return all(key in data and data[key] == value for key, value in where.items())


def _matching(context: Context, kind: Any, within: Any, since: Any, where: Any) -> list[Entry]:
    floor, now, start = _window(context, within, since)
    return [
        entry
        for entry in _entries(context)
        if entry[0] == kind
        and floor < entry[1] <= now
        and (start is None or entry[1] >= start)
        and _holds(entry[2], where)
    ]


@pass_context
def count_events(
    context: Context, type: Any, within: Any = None, since: Any = None, where: Any = None
) -> int:
    """The customer's events of ``type`` with ``at`` in ``(now − within, now]``, ``at ≥
    since``, whose data holds every key/value of ``where``."""
    return len(_matching(context, type, within, since, where))


@pass_context
def last_event_of(context: Context, type: Any, where: Any = None) -> dict[str, Any] | None:
    """The newest such event (of equal ``at``, the last applied) as ``.type``, ``.at``,
    ``.data``; none when there is none."""
    found = _matching(context, type, None, None, where)
    if not found:
        return None
    newest = max(range(len(found)), key=lambda i: (found[i][1], i))
    kind, at, data = found[newest]
    return {"type": kind, "at": durations.format_instant(at), "data": data}


@pass_context
def purchased(
    context: Context, sku: Any = None, category: Any = None, within: Any = None, since: Any = None
) -> bool:
    """A purchase event in the window with an item matching every criterion given (``sku``
    and ``category`` together: one item must have both); neither: any purchase."""
    helpers = context.get("_helpers")
    purchase = getattr(helpers, "purchase_event", "order_placed")
    for _, _, data in _matching(context, purchase, within, since, None):
        if sku is None and category is None:
            return True
        items = data.get("items")
        if not isinstance(items, list):
            continue
        for item in items:
            if not isinstance(item, Mapping):
                continue
            if sku is not None and item.get("sku") != sku:
                continue
            if category is not None and item.get("category") != category:
                continue
            return True
    return False
