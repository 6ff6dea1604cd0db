"""Events: validation, normalisation and reading JSON Lines.

Every event enters through :func:`parse_event`, whatever its source (a JSONL file, a test
case, the CLI, HTTP later), so a bad event is rejected the same way everywhere, with a message
naming the field, and is never half-applied. The hot path checks with a compiled validator
(fastjsonschema); only a rejected event pays for jsonschema's detailed explanation.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fastjsonschema
import orjson

from postflow import durations, loader
from postflow.problems import Problem, ProblemsError

SUPPRESSED = "address_suppressed"
UNSUPPRESSED = "address_unsuppressed"


class EventError(ValueError):
    """A rejected event. ``field`` is the dotted path of the offending field, when known."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


@dataclass(slots=True)
class Event:
    """A validated event. ``at`` is epoch microseconds; ``seq`` is the ingestion order (ties at
    one instant go in this order); ``depth`` counts chained ``emit``s."""

    type: str
    customer_id: str
    at: int
    id: str | None = None
    customer: dict[str, Any] | None = None
    data: dict[str, Any] = field(default_factory=dict)
    seq: int = 0
    depth: int = 0
    _view: dict[str, Any] | None = None

    def view(self) -> dict[str, Any]:
        """The event as expressions see it (``trigger``, ``event``, ``last_event``): plain JSON,
        ``at`` as an ISO string, so it can be stored with an instance."""
        if self._view is None:
            view: dict[str, Any] = {
                "id": self.id,
                "type": self.type,
                "customer_id": self.customer_id,
                "at": durations.format_instant(self.at),
                "data": self.data,
            }
            if self.customer is not None:
                view["customer"] = self.customer
            self._view = view
        return self._view


@functools.cache
def _fast_validator() -> Any:
    return fastjsonschema.compile(loader.load_schema("event"))


def parse_event(obj: Any, *, default_at: int | None = None) -> Event:
    """Validate one decoded JSON value as an event. ``default_at`` fills a missing ``at``
    (ingestion time); without it ``at`` is required."""
    try:
        _fast_validator()(obj)
    except fastjsonschema.JsonSchemaException:
        explained = loader.explain(obj, "event")
        if explained:
            path, message = explained[0]
            raise EventError(message, ".".join(str(p) for p in path) or None) from None
        raise EventError("not a valid event") from None
    if "at" in obj:
        try:
            at = durations.parse_instant(obj["at"])
        except durations.DurationError as exc:
            raise EventError(str(exc), "at") from None
    elif default_at is not None:
        at = default_at
    else:
        raise EventError("missing required key 'at' (a timestamp with a UTC offset)", "at")
    customer = obj.get("customer")
    if customer is not None and customer.get("timezone") is not None:
        try:
            durations.load_zone(customer["timezone"])
        except durations.DurationError as exc:
            raise EventError(str(exc), "customer.timezone") from None
    data = obj.get("data") or {}
    if obj["type"] in (SUPPRESSED, UNSUPPRESSED):
        address = data.get("address")
        if not isinstance(address, str) or not address.strip():
            raise EventError(
                f"{obj['type']} needs data.address (an email or a phone)", "data.address"
            )
    return Event(
        type=obj["type"],
        customer_id=obj["customer_id"],
        at=at,
        id=obj.get("id"),
        customer=dict(customer) if customer is not None else None,
        data=data,
    )


def iter_jsonl(text: str, path: str, problems: list[Problem]) -> Iterator[tuple[int, str, Any]]:
    """(line number, line, decoded value) for each non-blank line. A line that is not JSON is
    reported in ``problems`` (file:line:col) and skipped, so every bad line is found in one
    run."""
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            yield number, line, orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            problems.append(
                Problem(path, number, exc.pos + 1, "error", f"not valid JSON: {exc.msg}")
            )


def field_column(line: str, field: str | None) -> int:
    """Best-effort 1-based column of a dotted field's value in one JSON line (its last key's
    value, ``at`` in ``{"type": ..., "at": "2027-..."}``); 1 when it is not there."""
    if not field:
        return 1
    found = re.search(rf'"{re.escape(field.split(".")[-1])}"\s*:\s*', line)
    return found.end() + 1 if found else 1


def read_events(
    path: str | Path, *, default_at: int | None = None, text: str | None = None
) -> list[Event]:
    """Read a JSON Lines file of events. Every bad line is reported (file:line), and nothing is
    returned unless all lines are good: a file is applied whole or not at all."""
    name = str(path)
    if text is None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ProblemsError([Problem(name, 1, 1, "error", "events file not found")]) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ProblemsError(
                [Problem(name, 1, 1, "error", f"cannot read events: {exc}")]
            ) from None
    events: list[Event] = []
    problems: list[Problem] = []
    for number, line, obj in iter_jsonl(text, name, problems):
        try:
            events.append(parse_event(obj, default_at=default_at))
        except EventError as exc:
            where = f"{exc.field}: " if exc.field and exc.field not in exc.message else ""
            col = field_column(line, exc.field)
            problems.append(Problem(name, number, col, "error", f"bad event: {where}{exc.message}"))
    if problems:
        raise ProblemsError(problems)
    return events
