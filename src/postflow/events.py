"""Events: validation, normalisation and reading JSON Lines.

Every event enters through :func:`parse_event`, whatever its source (a JSONL file, a test
case, the CLI, HTTP later), so a bad event is rejected the same way everywhere, with a message
naming the field, and is never half-applied. The hot path checks with a compiled validator
(fastjsonschema); only a rejected event pays for jsonschema's detailed explanation.

JSON text gets the checks JSON parsers skip: a key written twice in one object (orjson keeps
the last one silently; YAML files reject it), strings holding NUL (PostgreSQL ``jsonb`` cannot
store them), and files that are not UTF-8. Each check is a cheap test on every line that only
pays for the exact, located answer on a line that could fail it, because ingestion must keep
up with tens of thousands of events a second.
"""

from __future__ import annotations

import codecs
import functools
import gc
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fastjsonschema
import orjson

from postflow import durations, loader
from postflow.problems import Problem, ProblemsError

SUPPRESSED = "address_suppressed"
UNSUPPRESSED = "address_unsuppressed"
RESERVED_TYPES = frozenset(
    {
        SUPPRESSED,
        UNSUPPRESSED,
        "email_delivered",
        "email_opened",
        "email_clicked",
        "email_bounced",
        "sms_received",
    }
)
"""Event types postflow raises itself (contract §1): a journey cannot ``emit`` them."""
BOM = "\ufeff"
NUL_MESSAGE = "contains a NUL character (\\u0000), which cannot be stored: remove it"


class EventError(ValueError):
    """A rejected event. ``field`` is the dotted path of the offending field, when known."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


@dataclass(slots=True)
class Event:
    """A validated event. ``at`` is epoch microseconds; ``seq`` is the ingestion order (ties at
    one instant go in this order); ``depth`` counts chained ``emit``s. A ``backfill`` event
    (``ingest --backfill``: history import) updates the profile and purchase facts only."""

    type: str
    customer_id: str
    at: int
    id: str | None = None
    customer: dict[str, Any] | None = None
    data: dict[str, Any] = field(default_factory=dict)
    seq: int = 0
    depth: int = 0
    backfill: bool = False
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


def parse_event(obj: Any, *, default_at: int | None = None, source: str | None = None) -> Event:
    """Validate one decoded JSON value as an event. ``default_at`` fills a missing ``at``
    (ingestion time); without it ``at`` is required. ``source`` is the JSON text the value was
    decoded from, when the caller has it: a NUL character needs a ``\\u0000`` escape there, so
    a text without one spares the search through the value. NULs are looked for first, so no
    message ever prints one."""
    if isinstance(obj, dict) and (source is None or "\\u0000" in source) and _may_hold_nul(obj):
        nul = nul_field(obj)
        if nul is not None:
            raise EventError(nul[1], nul[0])
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
    return _build(obj, at)


def _build(obj: dict[str, Any], at: int) -> Event:
    customer = obj.get("customer")
    return Event(
        type=obj["type"],
        customer_id=obj["customer_id"],
        at=at,
        id=obj.get("id"),
        customer=dict(customer) if customer is not None else None,
        data=obj.get("data") or {},
    )


def parse_accepted(obj: dict[str, Any]) -> Event:
    """An event from a value :func:`parse_event` already accepted (the same line of an
    unchanged file, read again): no validation, so a second pass over a big file costs little.
    Never give it anything else."""
    return _build(obj, durations.parse_instant(obj["at"]))


def _may_hold_nul(value: Any) -> bool:
    """Cheap test: orjson writes a NUL as ``\\u0000``, so a value whose JSON lacks that escape
    holds none. A value orjson cannot write (nested too deep, a YAML key that is not a
    string) may hold one."""
    try:
        return b"\\u0000" in orjson.dumps(value)
    except orjson.JSONEncodeError:
        return True


def nul_field(value: Any) -> tuple[str | None, str] | None:
    """(dotted field, message) for the first string, key or value at any depth, that holds a
    NUL character; None when there is none. Iterative: depth costs no stack."""
    todo: list[tuple[tuple[str, ...], Any, bool]] = [((), value, False)]
    while todo:
        path, item, is_key = todo.pop()
        if isinstance(item, str):
            if "\0" in item:
                return ".".join(path) or None, f"the key {NUL_MESSAGE}" if is_key else NUL_MESSAGE
        elif isinstance(item, dict):
            for key, child in reversed(item.items()):
                here = (*path, str(key).replace("\0", "\\u0000"))
                todo.append((here, child, False))
                todo.append((here, key, True))  # popped first: a key before its value
        elif isinstance(item, list):
            todo.extend(
                ((*path, str(i)), child, False) for i, child in reversed(list(enumerate(item)))
            )
    return None


# -- JSON text -------------------------------------------------------------------------------

_JSON_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[{}\[\],]')
"""Strings and the punctuation that decides whether a string is a key (numbers, literals and
colons are skipped: they never open, close or separate anything)."""


def may_repeat_keys(text: str, value: Any) -> bool:
    """Cheap test whether the JSON ``text`` (which decoded to ``value``) writes a key twice in
    one object. Every key has one structural colon and a string keeps its colons whatever
    escapes it holds (bar ``\\u003a``), so the text has exactly as many colons as the value
    written compactly, unless a repeated key (and its value) was dropped in decoding."""
    try:
        compact = orjson.dumps(value)
    except orjson.JSONEncodeError:  # nested deeper than orjson writes: ask the exact scan
        return True
    return text.count(":") != compact.count(b":") or "\\u003" in text


def repeated_keys(text: str) -> list[tuple[int, int, str]]:
    """Every key written a second time in one object of the valid JSON ``text``: (index of the
    second occurrence, index of the first, dotted path such as ``data.order_id``). Keys are
    compared decoded (``"a"`` and ``"\\u0061"`` are one key), as a JSON parser sees them."""
    found: list[tuple[int, int, str]] = []
    # One frame per open container: its name in its parent, its keys (None: an array), and
    # the key or index now being read.
    stack: list[tuple[str, dict[str, int] | None, list[str]]] = []
    expect_key = False
    for match in _JSON_TOKEN.finditer(text):
        token = match.group()
        char = token[0]
        if char == '"':
            if expect_key:
                frame = stack[-1]
                keys = frame[1]
                assert keys is not None
                key = json.loads(token)
                if key in keys:
                    path = ".".join([f[0] for f in stack[1:]] + [key])
                    found.append((match.start(), keys[key], path))
                else:
                    keys[key] = match.start()
                frame[2][0] = key
                expect_key = False
        elif char in "{[":
            name = stack[-1][2][0] if stack else ""
            stack.append((name, {} if char == "{" else None, ["0"]))
            expect_key = char == "{"
        elif char in "}]":
            stack.pop()
            expect_key = False
        elif stack[-1][1] is not None:  # a comma in an object: a key comes next
            expect_key = True
        else:  # a comma in an array
            current = stack[-1][2]
            current[0] = str(int(current[0]) + 1)
    return found


def _wide_encoding(raw: bytes) -> str | None:
    """'UTF-16 (...)' or 'UTF-32 (...)' when the bytes say so, else None."""
    if raw.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        return "UTF-32 (it starts with a UTF-32 byte order mark)"
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "UTF-16 (it starts with a UTF-16 byte order mark)"
    sample = raw[:512]

    def mostly_nul(part: bytes) -> bool:
        return len(part) >= 2 and part.count(0) >= 0.9 * len(part)

    if sum(mostly_nul(sample[i::4]) for i in range(4)) >= 3:
        return "UTF-32 (every character has three NUL bytes)"
    if mostly_nul(sample[0::2]) or mostly_nul(sample[1::2]):
        return "UTF-16 (every other byte is NUL)"
    return None


def file_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """The numbered lines of an events file, read as a stream: a big file is never held whole
    in memory. A UTF-8 byte order mark at the start is dropped (Windows editors write one;
    YAML files accept it); bytes that are not UTF-8, and NUL bytes, are an error at their line
    and column; a UTF-16 or UTF-32 file is named so. Lines end at ``\n``, ``\r\n`` or ``\r``.
    Raises
    FileNotFoundError, and ProblemsError for a file that cannot be read or is not UTF-8."""
    name = str(path)
    try:
        handle = Path(path).open("rb")
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise ProblemsError(
            [Problem(name, 1, 1, "error", f"cannot read events: {exc.strerror or exc}")]
        ) from None
    with handle:
        try:
            head = handle.peek(512)[:512]
            wide = _wide_encoding(head)
            if wide:
                raise ProblemsError([_wide_problem(name, head, wide)])
            number = 0
            for raw in handle:
                if number == 0 and raw.startswith(codecs.BOM_UTF8):
                    raw = raw[len(codecs.BOM_UTF8) :]
                if raw.endswith(b"\n"):
                    raw = raw[:-1]
                if raw.endswith(b"\r"):
                    raw = raw[:-1]
                nul = raw.find(b"\0")
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    bad = exc.start if nul < 0 else min(nul, exc.start)
                    raise ProblemsError([_bad_byte(name, number + 1, raw, bad)]) from None
                if nul >= 0:
                    raise ProblemsError([_bad_byte(name, number + 1, raw, nul)])
                if "\r" in line:  # a raw CR is never inside a JSON string: it ends a line
                    for part in line.split("\r"):
                        number += 1
                        yield number, part
                else:
                    number += 1
                    yield number, line
        except OSError as exc:
            raise ProblemsError(
                [Problem(name, 1, 1, "error", f"cannot read events: {exc.strerror or exc}")]
            ) from None


def _wide_problem(path: str, head: bytes, wide: str) -> Problem:
    """Where a UTF-16/32 file goes wrong as UTF-8: its first byte that is not UTF-8 text (a
    NUL, or an invalid sequence)."""
    if head.startswith(codecs.BOM_UTF8):
        head = head[len(codecs.BOM_UTF8) :]
    bad = head.find(b"\0")
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = exc.start if bad < 0 else min(bad, exc.start)
    bad = max(bad, 0)
    line = head.count(b"\n", 0, bad) + 1
    start = head.rfind(b"\n", 0, bad) + 1
    col = len(head[start:bad].decode("utf-8", errors="replace")) + 1
    message = f"not UTF-8: the file looks like {wide}: save it as UTF-8"
    return Problem(path, line, col, "error", message)


def _bad_byte(path: str, line: int, raw: bytes, bad: int) -> Problem:
    col = len(raw[:bad].decode("utf-8", errors="replace")) + 1
    if raw[bad] == 0:
        message = "not UTF-8 text: a NUL byte (0x00): save the file as UTF-8 text"
    else:
        message = f"not UTF-8 (byte 0x{raw[bad]:02x}): save the file as UTF-8"
    return Problem(path, line, col, "error", message)


def _text_lines(text: str) -> Iterator[tuple[int, str]]:
    if text.startswith(BOM):
        text = text[1:]
    if "\r" in text:  # a raw CR is never inside a JSON string
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return enumerate(text.split("\n"), 1)


def iter_jsonl(
    source: str | Iterable[tuple[int, str]], path: str, problems: list[Problem]
) -> Iterator[tuple[int, str, Any]]:
    """(line number, line, decoded value) for each non-blank line of ``source`` (a file's
    text, or numbered lines as :func:`file_lines` reads them). A line that is not JSON, or
    writes a key twice in one object, is reported in ``problems`` (file:line:col) and skipped,
    so every bad line is found in one run. Lines end at ``\n``, ``\r\n`` or ``\r`` (as
    when Python reads text files), not at U+2028 and friends: JSON strings may hold those."""
    lines = _text_lines(source) if isinstance(source, str) else source
    for number, line in lines:
        if not line or line.isspace():
            continue
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            message = f"not valid JSON: {exc.msg}"
            if line.startswith(BOM):
                message = "a byte order mark (U+FEFF) belongs only at the start of the file"
            problems.append(Problem(path, number, exc.pos + 1, "error", message))
            continue
        if may_repeat_keys(line, value):
            repeated = repeated_keys(line)
            if repeated:
                problems.extend(
                    Problem(
                        path,
                        number,
                        second + 1,
                        "error",
                        f"duplicate key '{name}' (first at column {first + 1})",
                    )
                    for second, first, name in repeated
                )
                continue
        yield number, line, value


def field_column(line: str, field: str | None) -> int:
    """Best-effort 1-based column of a dotted field's value in one JSON line (its last key's
    value, ``at`` in ``{"type": ..., "at": "2027-..."}``); 1 when it is not there."""
    if not field:
        return 1
    found = re.search(rf'"{re.escape(field.split(".")[-1])}"\s*:\s*', line)
    return found.end() + 1 if found else 1


def scan_events(
    path: str | Path,
    problems: list[Problem],
    *,
    default_at: int | None = None,
    text: str | None = None,
) -> Iterator[tuple[int, Event]]:
    """(line number, event) for every good line of a JSON Lines file, read as a stream; every
    bad line is added to ``problems`` (file:line:col) and skipped. Raises ProblemsError for a
    file that is missing or not UTF-8 text (with its location)."""
    name = str(path)
    try:
        lines = file_lines(path) if text is None else text
        for number, line, obj in iter_jsonl(lines, name, problems):
            try:
                yield number, parse_event(obj, default_at=default_at, source=line)
            except EventError as exc:
                where = f"{exc.field}: " if exc.field and exc.field not in exc.message else ""
                col = field_column(line, exc.field)
                message = f"bad event: {where}{exc.message}"
                problems.append(Problem(name, number, col, "error", message))
    except FileNotFoundError:
        raise ProblemsError([Problem(name, 1, 1, "error", "events file not found")]) from None


def read_events(
    path: str | Path, *, default_at: int | None = None, text: str | None = None
) -> list[Event]:
    """Read a JSON Lines file of events. Every bad line is reported (file:line:col), and
    nothing is returned unless all lines are good: a file is applied whole or not at all."""
    problems: list[Problem] = []
    # Every event read stays alive, so the cyclic collector's passes over the growing heap
    # find nothing to free; pausing it makes a big file read ~20% faster. Reference counting
    # still frees every temporary value at once.
    collecting = gc.isenabled()
    gc.disable()
    try:
        found = [
            event for _, event in scan_events(path, problems, default_at=default_at, text=text)
        ]
    finally:
        if collecting:
            gc.enable()
    if problems:
        raise ProblemsError(problems)
    return found
