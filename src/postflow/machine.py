"""Compile a validated journey document into an immutable :class:`Machine`.

A journey is compiled once: expressions and templates are parsed here, so ``validate`` finds
their errors and the engine's hot path never parses anything. Compilation also resolves every
step's successor, so the engine only follows ids. The machine's ``version`` is a content hash
over the journey and the template files it uses: customers in flight stay pinned to the exact
texts they entered with.

The compiler collects located :class:`~postflow.problems.Problem` objects instead of raising,
so one ``validate`` run reports every mistake in a file.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from postflow import durations, expressions, history
from postflow.loader import Document
from postflow.problems import Problem

CANNOT_COMPILE = "cannot compile journey"
END = "end"
"""Reserved step id: complete the instance now."""

STEP_KINDS = (
    "wait",
    "wait_for",
    "wait_until",
    "branch",
    "split",
    "email",
    "sms",
    "webhook",
    "set",
    "emit",
    "goto",
)
MESSAGE_KINDS = ("email", "sms")

# The keys this compiler reads, place by place. A test checks that they are exactly the keys
# the bundled JSON Schema allows, so schema and compiler can never drift apart.
JOURNEY_KEYS = frozenset(
    {
        *("id", "name", "description", "trigger", "filter", "entry", "exit", "goal", "tags"),
        *("settings", "steps"),
    }
)
TRIGGER_KEYS = frozenset({"event", "if", "schedule", "timezone", "audience"})
ENTRY_KEYS = frozenset({"key", "reentry", "cooldown"})
EXIT_KEYS = frozenset({"event", "if"})
GOAL_KEYS = frozenset({"event", "if", "within"})
SETTINGS_KEYS = frozenset({"quiet_hours", "send_window"})
QUIET_HOURS_KEYS = frozenset({"start", "end", "channels"})
STEP_KEYS = frozenset({"id", "next", *STEP_KINDS})
WAIT_KEYS = frozenset({"for", "at", "until", "days"})
WAIT_FOR_KEYS = frozenset({"event", "events", "since", "timeout", "on_timeout", "if"})
WAIT_UNTIL_KEYS = frozenset({"if", "timeout", "on_timeout", "check_every"})
MIN_CHECK_EVERY = 3_600_000_000
BRANCH_KEYS = frozenset({"if", "goto"})
SPLIT_KEYS = frozenset({"weight", "goto", "name"})
EMAIL_KEYS = frozenset(
    {
        *("subject", "template", "body", "sendgrid_template_id", "to", "data"),
        *("transactional", "frequency_cap", "on_skip"),
    }
)
SMS_KEYS = frozenset({"body", "template", "to", "transactional", "frequency_cap", "on_skip"})
WEBHOOK_KEYS = frozenset({"url", "method", "json", "headers"})
EMIT_KEYS = frozenset({"event", "data"})


@dataclass(frozen=True)
class SendWindow:
    """Local days (weekday numbers, Monday 0) and hours ``[start, end)`` when messages on
    ``channels`` may go out (§9); outside it they are held, like quiet hours."""

    days: frozenset[int]
    start: time
    end: time
    channels: frozenset[str]


@dataclass(frozen=True)
class QuietHours:
    """A daily window, in the customer's local time, during which some channels hold messages."""

    start: time
    end: time
    channels: frozenset[str]


@dataclass(frozen=True)
class Trigger:
    event: str | None = None
    condition: expressions.Condition | None = None
    schedule: durations.Cron | None = None
    zone: ZoneInfo | None = None
    audience: expressions.Condition | None = None
    local: bool = False  # timezone: customer — the cron read in each customer's own zone (§9)


@dataclass(frozen=True)
class Entry:
    key: expressions.Value | None = None
    reentry: str = "after_exit"
    cooldown: int | None = None


@dataclass(frozen=True)
class Exit:
    event: str
    condition: expressions.Condition | None = None


@dataclass(frozen=True)
class Goal:
    event: str
    condition: expressions.Condition | None = None
    within: int | None = None


@dataclass(frozen=True)
class Step:
    """One compiled step. ``next`` is already resolved: an explicit ``next``, else the following
    step, else :data:`END`. Only the fields of the step's ``kind`` are set."""

    id: str
    kind: str
    next: str
    # wait
    duration: int = 0
    at: time | None = None
    days: frozenset[int] | None = None  # wait.days: weekday numbers, Monday 0
    until: expressions.Value | None = None
    # wait_for (and wait_until: condition, timeout, on_timeout, check_every)
    event: str | None = None
    timeout: int = 0
    on_timeout: str | None = None
    condition: expressions.Condition | None = None
    # wait_for events: (event type, condition or None, goto); since "step" | "entry"
    alternatives: tuple[tuple[str, expressions.Condition | None, str], ...] = ()
    since: str = "step"
    check_every: int | None = None
    # branch: (condition or None, goto); split: (weight, goto, name)
    branches: tuple[tuple[expressions.Condition | None, str], ...] = ()
    splits: tuple[tuple[float, str, str], ...] = ()
    # messages
    subject: expressions.Template | None = None
    html: expressions.Template | None = None
    text: expressions.Template | None = None
    sendgrid_template_id: str | None = None
    to: expressions.Template | None = None
    data: Any = None  # compiled template tree (email.data, emit data values are Values)
    transactional: bool = False
    frequency_cap: bool = True  # False: skips every cap check (still counted)
    on_skip: str | None = None  # where to go when the message is not sent
    tags: tuple[str, ...] = ()  # the journey's tags, for caps by tag
    # webhook
    url: expressions.Template | None = None
    method: str = "POST"
    json_body: Any = None
    headers: tuple[tuple[str, expressions.Template], ...] = ()
    # set: (target "customer" | "vars", name, Value or literal)
    assignments: tuple[tuple[str, str, Any], ...] = ()
    # emit: event type in `event`, values in `emit_data`
    emit_data: tuple[tuple[str, Any], ...] = ()
    # goto
    goto: str | None = None


@dataclass(frozen=True)
class Machine:
    """A compiled journey: immutable, hashable by ``(id, version)``."""

    id: str
    version: str
    path: str
    name: str | None
    trigger: Trigger
    entry: Entry
    exits: tuple[Exit, ...]
    goal: Goal | None
    quiet_hours: QuietHours | None | bool  # True: use the configured default; False: none
    steps: Mapping[str, Step]
    first: str
    order: tuple[str, ...] = field(default=())
    tags: tuple[str, ...] = ()
    filter: expressions.Condition | None = None  # §9: re-checked at entry and each message
    send_window: SendWindow | None | bool = True  # True: the configured default; False: none
    since_types: frozenset[str] = frozenset()  # event types a `since: entry` wait_for may want
    uses_history: bool = False  # calls count_events / last_event_of / purchased
    # What the version hash covers, kept so the daemon can store this exact version in its
    # database and compile it again after the file changed (instances stay pinned to it).
    data: Any = field(default=None, compare=False, repr=False)
    templates: tuple[tuple[str, str], ...] = field(default=(), compare=False, repr=False)

    def send_window_for(self, default: SendWindow | None) -> SendWindow | None:
        if self.send_window is True:
            return default
        if self.send_window is False:
            return None
        return self.send_window  # type: ignore[return-value]

    def quiet_hours_for(self, default: QuietHours | None) -> QuietHours | None:
        if self.quiet_hours is True:
            return default
        if self.quiet_hours is False:
            return None
        return self.quiet_hours  # type: ignore[return-value]


class Compiler:
    """Turns one schema-valid journey :class:`Document` into a :class:`Machine`, collecting
    problems (bad expressions, templates, durations, zones, cron, references) on the way."""

    def __init__(self, doc: Document, templates_dir: Path) -> None:
        self.doc = doc
        self.templates_dir = templates_dir
        self.problems: list[Problem] = []
        self.template_files: dict[str, str] = {}
        self.tags: tuple[str, ...] = ()

    # -- helpers -------------------------------------------------------------------------
    def error(self, path: tuple[str | int, ...], message: str, *, at_key: bool = False) -> None:
        self.problems.append(self.doc.problem(path, message, at_key=at_key))

    def _expr_error(
        self,
        path: tuple[str | int, ...],
        exc: expressions.ExpressionSyntaxError,
        what: str = "expression",
    ) -> None:
        _, col = self.doc.where(path)
        line = self.doc.text_line(path, max(getattr(exc, "line", 1), 1))
        text = exc.message
        if what == "expression":  # Jinja parses an expression as a tiny template
            text = re.sub(r"^unexpected '?end of template'?", "the expression ends too early", text)
        message = f"{what} syntax error: {text}"
        self.problems.append(Problem(self.doc.path, line, col, "error", message))

    def _braced(self, path: tuple[str | int, ...], source: Any) -> bool:
        """``if: "{{ x }}"``: a common slip (conditions and values are expressions already);
        Jinja's own message for it ("expected token ':'") helps nobody."""
        if isinstance(source, str) and source.strip().startswith("{{"):
            self.error(
                path, "conditions, keys and values are expressions: write them without {{ }}"
            )
            return True
        return False

    def _check_names(
        self,
        path: tuple[str | int, ...],
        source: str,
        compiled: expressions.Condition | expressions.Value | expressions.Template,
        *,
        literal: bool = False,
    ) -> None:
        """Warn about names that are never in scope (``custmer``): the condition would be always
        false, the message always a render error. A warning, not an error: a template may
        mean to fail, or guard the name with ``is defined``. With ``literal`` (a ``set``,
        ``emit`` or ``entry.key`` value), a value that is one bare unknown name (``WELCOME10``)
        was almost surely meant as text: its one warning says how to quote it."""
        template = isinstance(compiled, expressions.Template)
        allowed = TEMPLATE_NAMES if template else expressions.SCOPE_NAMES
        bare = source.strip()
        unknown = expressions.free_names(compiled) - allowed
        if literal and unknown == {bare}:
            self.problems.append(
                self.doc.problem(path, _unknown_name(bare, bare=True), severity="warning")
            )
            return
        for name in sorted(unknown):
            line, col = _first_use(source, name)
            _, value_col = self.doc.where(path)
            self.problems.append(
                Problem(
                    self.doc.path,
                    self.doc.text_line(path, line),
                    value_col,
                    "warning",
                    _unknown_name(name),
                )
            )

    def condition(self, path: tuple[str | int, ...], source: Any) -> expressions.Condition | None:
        if source is None:
            return None
        if self._braced(path, source):
            return None
        try:
            compiled = expressions.compile_condition(str(source))
        except expressions.ExpressionSyntaxError as exc:
            self._expr_error(path, exc)
            return None
        self._check_names(path, str(source), compiled)
        return compiled

    def value(self, path: tuple[str | int, ...], source: Any, *, literal: bool = True) -> Any:
        """A value: a string is an expression; numbers, booleans and null are literals.
        ``literal``: a bare word here is likely meant as text (``set``, ``emit``, ``entry.key``
        values; not ``wait.until``), see :meth:`_check_names`."""
        if not isinstance(source, str):
            return _Literal(source)
        if self._braced(path, source):
            return _Literal(None)
        try:
            compiled = expressions.compile_value(source)
        except expressions.ExpressionSyntaxError as exc:
            self._expr_error(path, exc)
            return _Literal(None)
        self._check_names(path, source, compiled, literal=literal)
        return compiled

    def template(
        self, path: tuple[str | int, ...], source: Any, *, autoescape: bool = False
    ) -> expressions.Template | None:
        if source is None:
            return None
        try:
            compiled = expressions.compile_template(str(source), autoescape=autoescape)
        except expressions.ExpressionSyntaxError as exc:
            self._expr_error(path, exc, "template")
            return None
        self._check_names(path, str(source), compiled)
        return compiled

    def template_tree(self, path: tuple[str | int, ...], value: Any) -> Any:
        """Compile every string in a JSON-like value as a template (webhook json, email data)."""
        if isinstance(value, str):
            return self.template(path, value)
        if isinstance(value, dict):
            return {k: self.template_tree((*path, k), v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.template_tree((*path, i), v) for i, v in enumerate(value)]
        return _Literal(value)

    def template_file(
        self, path: tuple[str | int, ...], name: str, suffix: str, *, required: bool
    ) -> expressions.Template | None:
        file = self.templates_dir / f"{name}{suffix}"
        if not file.is_file():
            if required:
                self.error(path, f"missing template file {file}")
            return None
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            self.error(path, f"cannot read template file {file}: {exc}")
            return None
        self.template_files[f"{name}{suffix}"] = text
        try:
            compiled = expressions.compile_template(
                text, autoescape=suffix == ".html", name=str(file)
            )
        except expressions.ExpressionSyntaxError as exc:
            self.problems.append(
                Problem(
                    str(file), getattr(exc, "line", 1), getattr(exc, "col", 1), "error", exc.message
                )
            )
            return None
        for name in sorted(expressions.free_names(compiled) - TEMPLATE_NAMES):
            line, col = _first_use(text, name)
            self.problems.append(Problem(str(file), line, col, "warning", _unknown_name(name)))
        return compiled

    def duration(self, path: tuple[str | int, ...], text: Any) -> int:
        try:
            return durations.parse_duration(str(text))
        except durations.DurationError as exc:
            self.error(path, str(exc))
            return 0

    def time_of_day(self, path: tuple[str | int, ...], text: Any) -> time | None:
        try:
            return durations.parse_time_of_day(str(text))
        except durations.DurationError as exc:
            self.error(path, str(exc))
            return None

    def zone(self, path: tuple[str | int, ...], name: Any) -> ZoneInfo | None:
        try:
            return durations.load_zone(str(name))
        except durations.DurationError as exc:
            self.error(path, str(exc))
            return None

    # -- the journey ---------------------------------------------------------------------
    def compile(self) -> Machine | None:
        data = self.doc.data
        trigger = self.compile_trigger(data["trigger"])
        entry_data = data.get("entry") or {}
        entry = Entry(
            key=self.value(("entry", "key"), entry_data["key"]) if "key" in entry_data else None,
            reentry=entry_data.get("reentry", "after_exit"),
            cooldown=(
                self.duration(("entry", "cooldown"), entry_data["cooldown"])
                if "cooldown" in entry_data
                else None
            ),
        )
        exits = tuple(
            Exit(item["event"], self.condition(("exit", i, "if"), item.get("if")))
            for i, item in enumerate(data.get("exit") or [])
        )
        goal = None
        if data.get("goal"):
            g = data["goal"]
            goal = Goal(
                g["event"],
                self.condition(("goal", "if"), g.get("if")),
                self.duration(("goal", "within"), g["within"]) if "within" in g else None,
            )
        quiet: QuietHours | None | bool = True
        settings = data.get("settings") or {}
        if "quiet_hours" in settings:
            quiet = self.quiet_hours(("settings", "quiet_hours"), settings["quiet_hours"])
        window: SendWindow | None | bool = True
        if "send_window" in settings:
            window = self.send_window(("settings", "send_window"), settings["send_window"])
        self.tags = tuple(str(tag) for tag in data.get("tags") or ())
        order = tuple(step["id"] for step in data["steps"])
        steps: dict[str, Step] = {}
        for index, step in enumerate(data["steps"]):
            following = order[index + 1] if index + 1 < len(order) else END
            try:
                compiled = self.compile_step(index, step, following)
            except (KeyError, TypeError, AttributeError, StopIteration, ValueError) as exc:
                # Only a step the schema rejected gets here; its message is the schema's.
                self.error(("steps", index), f"{CANNOT_COMPILE} step: {exc!r}")
                continue
            steps.setdefault(compiled.id, compiled)
        if any(p.is_error for p in self.problems):
            return None
        return Machine(
            id=data["id"],
            version=self.version(),
            path=self.doc.path,
            name=data.get("name"),
            trigger=trigger,
            entry=entry,
            exits=exits,
            goal=goal,
            quiet_hours=quiet,
            steps=steps,
            first=order[0],
            order=order,
            tags=self.tags,
            filter=self.condition(("filter",), data.get("filter")),
            send_window=window,
            uses_history=history.uses_history(
                json.dumps(data, default=str)
                + "".join(text for _, text in sorted(self.template_files.items()))
            ),
            since_types=frozenset(
                t
                for st in steps.values()
                if st.kind == "wait_for" and st.since == "entry"
                for t in ([st.event] if st.event else [a[0] for a in st.alternatives])
            ),
            data=data,
            templates=tuple(sorted(self.template_files.items())),
        )

    def version(self) -> str:
        digest = hashlib.sha256()
        digest.update(json.dumps(self.doc.data, sort_keys=True, default=str).encode())
        for name in sorted(self.template_files):
            digest.update(b"\0" + name.encode() + b"\0" + self.template_files[name].encode())
        return digest.hexdigest()[:12]

    def send_window(self, path: tuple[str | int, ...], value: Any) -> SendWindow | None:
        if value is False:
            return None
        start = self.time_of_day((*path, "start"), value["start"])
        end = self.time_of_day((*path, "end"), value["end"])
        if start is not None and start == end:
            self.error((*path, "end"), "send window start and end are equal (an empty window)")
        return SendWindow(
            weekdays(value.get("days")),
            start or time(0),
            end or time(1),
            frozenset(value.get("channels") or MESSAGE_KINDS),
        )

    def quiet_hours(self, path: tuple[str | int, ...], value: Any) -> QuietHours | None:
        if value is False:
            return None
        start = self.time_of_day((*path, "start"), value["start"])
        end = self.time_of_day((*path, "end"), value["end"])
        if start is not None and start == end:
            self.error(
                (*path, "end"), "quiet hours start and end are equal (an empty or full-day window)"
            )
        channels = frozenset(value.get("channels") or MESSAGE_KINDS)
        return QuietHours(start or time(0), end or time(0), channels)

    def compile_trigger(self, data: dict[str, Any]) -> Trigger:
        if "schedule" in data:
            cron = None
            try:
                cron = durations.parse_cron(str(data["schedule"]))
            except durations.DurationError as exc:
                self.error(("trigger", "schedule"), str(exc))
            audience = self.condition(("trigger", "audience"), data.get("audience"))
            if data.get("timezone") == "customer":
                return Trigger(schedule=cron, audience=audience, local=True)
            zone = self.zone(("trigger", "timezone"), data.get("timezone", "UTC"))
            return Trigger(schedule=cron, zone=zone, audience=audience)
        return Trigger(
            event=data["event"], condition=self.condition(("trigger", "if"), data.get("if"))
        )

    def compile_step(self, index: int, data: dict[str, Any], following: str) -> Step:
        path: tuple[str | int, ...] = ("steps", index)
        kind = next(k for k in STEP_KINDS if k in data)
        here = (*path, kind)
        body = data[kind]
        common: dict[str, Any] = {
            "id": data["id"],
            "kind": kind,
            "next": data.get("next", following),
        }
        if kind == "wait":
            if isinstance(body, str):
                return Step(**common, duration=self.duration(here, body))
            if "until" in body:
                until = self.value((*here, "until"), body["until"], literal=False)
                return Step(**common, until=until)
            if "days" in body and "at" not in body:
                self.error(
                    (*here, "days"), "days needs at: the time of day to wait for", at_key=True
                )
            return Step(
                **common,
                duration=self.duration((*here, "for"), body["for"]) if "for" in body else 0,
                at=self.time_of_day((*here, "at"), body["at"]) if "at" in body else None,
                days=weekdays(body["days"]) if "days" in body else None,
            )
        if kind == "wait_for":
            alternatives = tuple(
                (e["event"], self.condition((*here, "events", i, "if"), e.get("if")), e["goto"])
                for i, e in enumerate(body.get("events") or ())
            )
            return Step(
                **common,
                event=body.get("event"),
                timeout=self.duration((*here, "timeout"), body["timeout"]),
                on_timeout=body.get("on_timeout"),
                condition=self.condition((*here, "if"), body.get("if")),
                alternatives=alternatives,
                since=str(body.get("since", "step")),
            )
        if kind == "wait_until":
            every: int | None = None
            if "check_every" in body:
                try:
                    every = durations.parse_duration(str(body["check_every"]))
                except durations.DurationError as exc:
                    self.error((*here, "check_every"), str(exc))
                else:
                    if every < MIN_CHECK_EVERY:
                        self.error((*here, "check_every"), "check_every must be at least 1h")
                        every = None
            return Step(
                **common,
                condition=self.condition((*here, "if"), body["if"]),
                timeout=self.duration((*here, "timeout"), body["timeout"]),
                on_timeout=body.get("on_timeout"),
                check_every=every,
            )
        if kind == "branch":
            return Step(
                **common,
                branches=tuple(
                    (self.condition((*here, i, "if"), b.get("if")), b["goto"])
                    for i, b in enumerate(body)
                ),
            )
        if kind == "split":
            return Step(
                **common,
                splits=tuple(
                    (float(s["weight"]), s["goto"], str(s.get("name", s["goto"]))) for s in body
                ),
            )
        if kind == "email":
            html = text = None
            if "template" in body:
                html = self.template_file(
                    (*here, "template"), body["template"], ".html", required=True
                )
                text = self.template_file(
                    (*here, "template"), body["template"], ".txt", required=False
                )
            elif "body" in body:
                text = self.template((*here, "body"), body["body"])
            return Step(
                **common,
                subject=self.template((*here, "subject"), body.get("subject")),
                html=html,
                text=text,
                sendgrid_template_id=body.get("sendgrid_template_id"),
                to=self.template((*here, "to"), body.get("to")),
                data=self.template_tree((*here, "data"), body["data"]) if "data" in body else None,
                transactional=bool(body.get("transactional", False)),
                frequency_cap=bool(body.get("frequency_cap", True)),
                on_skip=body.get("on_skip"),
                tags=self.tags,
            )
        if kind == "sms":
            if "template" in body:
                text = self.template_file(
                    (*here, "template"), body["template"], ".txt", required=True
                )
            else:
                text = self.template((*here, "body"), body["body"])
            return Step(
                **common,
                text=text,
                to=self.template((*here, "to"), body.get("to")),
                transactional=bool(body.get("transactional", False)),
                frequency_cap=bool(body.get("frequency_cap", True)),
                on_skip=body.get("on_skip"),
                tags=self.tags,
            )
        if kind == "webhook":
            return Step(
                **common,
                url=self.template((*here, "url"), body["url"]),
                method=str(body.get("method", "POST")).upper(),
                json_body=self.template_tree((*here, "json"), body["json"])
                if "json" in body
                else None,
                headers=tuple(
                    (str(k), self.template((*here, "headers", k), v) or _EMPTY)
                    for k, v in (body.get("headers") or {}).items()
                ),
            )
        if kind == "set":
            assignments = []
            for target, source in body.items():
                scope, _, name = str(target).partition(".")
                assignments.append((scope, name, self.value((*here, target), source)))
            return Step(**common, assignments=tuple(assignments))
        if kind == "emit":
            return Step(
                **common,
                event=body["event"],
                emit_data=tuple(
                    (str(k), self.value((*here, "data", k), v))
                    for k, v in (body.get("data") or {}).items()
                ),
            )
        return Step(**common, goto=body)


TEMPLATE_NAMES = expressions.SCOPE_NAMES | {"data"}
"""Names a template may read: the scope, and an email's ``data``."""


def weekdays(names: Any) -> frozenset[int]:
    """``[mon, fri]`` -> weekday numbers (Monday 0); none given: every day."""
    if not names:
        return frozenset(range(7))
    return frozenset(durations.WEEKDAYS.index(str(n)) for n in names)


def _unknown_name(name: str, *, bare: bool = False) -> str:
    known = sorted(TEMPLATE_NAMES)
    close = difflib.get_close_matches(name, known + sorted(expressions.FUNCTION_NAMES), n=1)
    if bare:  # a lone word as a set, emit or entry.key value: most likely meant as text
        maybe = f" (or did you mean '{close[0]}'?)" if close else ""
        return (
            f"unknown name '{name}': this value is none when the journey runs; to mean the "
            f"text, quote it inside the YAML string: \"'{name}'\"{maybe}"
        )
    hint = f" (did you mean '{close[0]}'?)" if close else f" (known: {', '.join(known)})"
    return f"unknown name '{name}'{hint}: it is undefined when the journey runs"


def _first_use(text: str, name: str) -> tuple[int, int]:
    """(line, column) of the first whole-word use of ``name`` in ``text``, 1-based."""
    found = re.search(rf"(?<![\w.]){re.escape(name)}\b", text)
    if found is None:
        return 1, 1
    before = text[: found.start()]
    return before.count("\n") + 1, found.start() - (before.rfind("\n") + 1) + 1


@dataclass(frozen=True)
class _Literal:
    """A constant standing where an expression or template could be: evaluates to itself."""

    value: Any

    def __call__(self, scope: Mapping[str, Any]) -> Any:
        return self.value


_EMPTY = expressions.compile_template("")


def evaluate_tree(tree: Any, scope: Mapping[str, Any]) -> Any:
    """Render a compiled template tree (from :meth:`Compiler.template_tree`) into plain JSON."""
    if isinstance(tree, dict):
        return {k: evaluate_tree(v, scope) for k, v in tree.items()}
    if isinstance(tree, list):
        return [evaluate_tree(v, scope) for v in tree]
    return tree(scope)


def compile_journey(doc: Document, templates_dir: Path) -> tuple[Machine | None, list[Problem]]:
    """Compile a schema-valid journey document. Returns the machine (None on errors) and every
    problem found."""
    compiler = Compiler(doc, templates_dir)
    try:
        machine = compiler.compile()
    except (KeyError, TypeError, StopIteration) as exc:  # schema should have caught it
        compiler.error((), f"{CANNOT_COMPILE}: {exc!r}")
        machine = None
    return machine, compiler.problems
