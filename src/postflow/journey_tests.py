"""Journey test files (``*.test.yaml``): prove a journey's behaviour in CI.

Each case feeds events (times absolute or ``+DURATION`` from ``start``) through the very
simulation ``postflow simulate`` runs, then checks the records against ``expect``: an ordered
subsequence matched on the fields given, optionally with no other message records. A failing
case reports the expectation that failed and the records around it, so the fix is obvious.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson

from postflow import config, durations, engine, events, loader, machine, project, simulate
from postflow.problems import Problem, ProblemsError

Path_ = tuple[str | int, ...]
CONTEXT = 3  # records shown on each side of a failure


@dataclass
class CaseResult:
    file: str
    name: str
    passed: bool
    detail: list[str] = field(default_factory=list)


def find_test_files(paths: Iterable[Path]) -> list[Path]:
    """``*.test.yaml`` files under the given directories, and any file named explicitly (a
    journey file given by mistake gets a clear error from ``postflow test``)."""
    return project.collect_files(paths, project.is_test_file)


class _Times:
    """Resolves absolute and ``+DURATION`` times of one case, with located errors."""

    def __init__(self, doc: loader.Document, case_path: Path_, start: int | None) -> None:
        self.doc = doc
        self.case_path = case_path
        self.start = start

    def resolve(self, value: Any, path: Path_) -> int:
        text = str(value)
        if text.startswith("+"):
            if self.start is None:
                raise ProblemsError(
                    [self.doc.problem(path, f"relative time '{text}' needs the case's `start`")]
                )
            try:
                return self.start + durations.parse_duration(text[1:])
            except durations.DurationError as exc:
                raise ProblemsError([self.doc.problem(path, str(exc))]) from None
        try:
            return durations.parse_instant(text)
        except durations.DurationError as exc:
            raise ProblemsError([self.doc.problem(path, str(exc))]) from None


def _case_events(
    doc: loader.Document, index: int, case: dict[str, Any], times: _Times
) -> list[events.Event]:
    """The case's events, validated like any other, with times resolved. The case's
    ``customer`` is merged into each customer's first event (the event's own keys win), so it
    reaches the profile just before that event; it is checked first, on its own, so a mistake
    in it is reported where it is written."""
    base: Path_ = ("cases", index, "events")
    source = case["events"]
    rows: list[tuple[Any, Path_, Problem | None]] = []
    if isinstance(source, str):
        file = Path(doc.path).parent / source
        not_json: list[Problem] = []
        try:
            for number, _, obj in events.iter_jsonl(events.file_lines(file), str(file), not_json):
                rows.append((obj, base, Problem(str(file), number, 1, "error", "")))
        except FileNotFoundError:
            raise ProblemsError([doc.problem(base, f"events file not found: {file}")]) from None
        if not_json:
            raise ProblemsError(not_json)
    else:
        rows = [(obj, (*base, j), None) for j, obj in enumerate(source)]

    def problem(path: Path_, line: Problem | None, message: str) -> Problem:
        """At the inline value, or at the line of the JSON Lines file."""
        return doc.problem(path, message) if line is None else replace(line, message=message)

    resolved: list[tuple[int, dict[str, Any], Path_, Problem | None]] = []
    problems: list[Problem] = []
    for obj, path, line in rows:
        if not isinstance(obj, dict):
            problems.append(problem(path, line, "an event must be a mapping"))
            continue
        if "at" not in obj and times.start is None:
            message = "event has no `at` and the case has no `start` to default it to"
            problems.append(problem(path, line, message))
            continue
        try:
            at = times.resolve(obj.get("at", "+0s"), (*path, "at") if line is None else path)
        except ProblemsError as exc:
            if line is None:
                problems.extend(exc.problems)
            else:
                problems.extend(replace(line, message=p.message) for p in exc.problems)
            continue
        resolved.append((at, dict(obj), path, line))

    shared = case.get("customer")
    if shared:
        bad = _shared_customer_problems(doc, index, shared)
        problems.extend(bad)
        shared = None if bad else shared
    if shared:
        first: dict[Any, int] = {}
        for i, (at, obj, _, _) in enumerate(resolved):
            cid = obj.get("customer_id")
            if cid not in first or at < resolved[first[cid]][0]:
                first[cid] = i
        for i in first.values():
            obj = resolved[i][1]
            own = obj.get("customer")
            obj["customer"] = {**shared, **own} if isinstance(own, dict) else dict(shared)

    parsed: list[events.Event] = []
    for at, obj, path, line in resolved:
        try:
            obj["at"] = durations.format_instant(at)
            parsed.append(events.parse_event(obj))
        except (events.EventError, OverflowError, ValueError) as exc:
            field = getattr(exc, "field", None)
            target = (*path, *field.split(".")) if field and line is None else path
            where = f"{field}: " if field and field not in str(exc) else ""
            problems.append(problem(target, line, f"bad event: {where}{exc}"))
    if problems:
        raise ProblemsError(problems)
    return parsed


def _shared_customer_problems(
    doc: loader.Document, index: int, shared: dict[str, Any]
) -> list[Problem]:
    """A case's ``customer`` is checked as a profile where it is written (a bad timezone at
    ``customer.timezone`` of the case, not at whichever event it is merged into), once."""
    probe = {"type": "case", "customer_id": "case", "at": "2000-01-01T00:00:00Z"}
    try:
        events.parse_event({**probe, "customer": shared})
    except events.EventError as exc:
        field = exc.field or "customer"
        where = f"{field}: " if field not in exc.message else ""
        path: Path_ = ("cases", index, *field.split("."))
        return [doc.problem(path, f"bad customer: {where}{exc.message}")]
    return []


def _matches(expect: dict[str, Any], record: dict[str, Any], at: int | None) -> bool:
    for name, want in expect.items():
        if name == "at":
            if record.get("at") != at:
                return False
        elif record.get(name) != want:
            return False
    return True


def _show(record: dict[str, Any]) -> str:
    return orjson.dumps(simulate.record_json(record)).decode()


@dataclass
class Case:
    """One case with its times resolved and events validated: ready to simulate."""

    name: str
    path: Path_
    events: list[events.Event]
    until: int | None
    expects: list[dict[str, Any]]
    expect_at: list[int | None]
    no_other_messages: bool = False


def prepare_case(doc: loader.Document, index: int, case: dict[str, Any]) -> Case:
    """Resolve a case's times and validate its events. Raises ProblemsError, located."""
    path: Path_ = ("cases", index)
    start = None
    if "start" in case:
        start = _Times(doc, path, None).resolve(case["start"], (*path, "start"))
    times = _Times(doc, path, start)
    problems: list[Problem] = []
    evts: list[events.Event] = []
    try:
        evts = _case_events(doc, index, case, times)
    except ProblemsError as exc:
        problems.extend(exc.problems)
    until = None
    expects = case.get("expect") or []
    expect_at: list[int | None] = []
    try:
        until = times.resolve(case["until"], (*path, "until")) if "until" in case else None
        expect_at = [
            times.resolve(e["at"], (*path, "expect", j, "at")) if "at" in e else None
            for j, e in enumerate(expects)
        ]
    except ProblemsError as exc:
        problems.extend(exc.problems)
    if problems:
        raise ProblemsError(problems)
    return Case(
        str(case["name"]),
        path,
        evts,
        until,
        expects,
        expect_at,
        bool(case.get("no_other_messages")),
    )


def run_case(world: engine.World, doc: loader.Document, case: Case) -> CaseResult:
    sim = simulate.Simulation(world)
    sim.ingest(case.events)
    records = sim.run(case.until)

    result = CaseResult(doc.path, case.name, True)
    position = 0
    matched: set[int] = set()
    for j, expect in enumerate(case.expects):
        at = case.expect_at[j]
        found = next(
            (k for k in range(position, len(records)) if _matches(expect, records[k], at)),
            None,
        )
        if found is None:
            result.passed = False
            line, col = doc.where((*case.path, "expect", j))
            shown = dict(expect)
            if at is not None:
                shown["at"] = durations.format_instant(at)
            result.detail.append(
                f"{doc.path}:{line}:{col}: expected {orjson.dumps(shown).decode()}"
            )
            window = records[max(position - CONTEXT, 0) : position + CONTEXT * 2]
            if not records:
                result.detail.append("no records were produced")
            elif position >= len(records):
                result.detail.append(
                    "after the previous match there are no more records; last ones:"
                )
                window = records[-CONTEXT * 2 :]
            else:
                result.detail.append("records around the place it should be:")
            result.detail.extend("  " + _show(r) for r in window)
            return result
        matched.add(found)
        position = found + 1
    if case.no_other_messages:
        extra = [r for k, r in enumerate(records) if r["kind"] == "message" and k not in matched]
        if extra:
            result.passed = False
            result.detail.append(f"{len(extra)} message record(s) not matched by `expect`:")
            result.detail.extend("  " + _show(r) for r in extra[: CONTEXT * 3])
    return result


def load_file(
    path: Path, config_path: str | None, journeys_dir: str | None, *, check_only: bool = False
) -> tuple[loader.Document, engine.World, list[Case]]:
    """Read a test file and everything it needs: its configuration, the journeys it names, and
    every case prepared. Raises ProblemsError with every problem found. ``check_only`` (for
    ``validate``) leaves journey errors to the journey checks and does not need a world that
    can run."""
    doc = loader.load_yaml(path)
    if not isinstance(doc.data, dict):
        raise ProblemsError([doc.problem((), "a journey test file must be a mapping")])
    problems = loader.schema_problems(doc, "testfile")
    if problems:
        raise ProblemsError(problems)
    settings = config.load_settings(
        config_path,
        overrides=doc.data.get("config") or None,
        overrides_doc=doc,
        overrides_at=("config",),
    )
    directory = Path(journeys_dir) if journeys_dir else settings.journeys
    if not directory.is_dir():
        raise project.MissingPath(f"{directory} (the journeys directory)")
    if check_only:
        loaded = project.load_journeys([directory], settings.templates)
        machines = loaded.machines
        journeys_ok = not loaded.errors
    else:
        machines = _runnable(project.load_journeys([directory], settings.templates), doc)
        journeys_ok = True
    wanted = doc.data.get("journeys")
    if wanted is not None and journeys_ok:
        problems.extend(
            doc.problem(
                ("journeys", i),
                f"unknown journey '{jid}' (known: {', '.join(sorted(machines)) or 'none'})",
            )
            for i, jid in enumerate(wanted)
            if jid not in machines
        )
        machines = {jid: machines[jid] for jid in wanted if jid in machines}
    cases: list[Case] = []
    for index, case in enumerate(doc.data["cases"]):
        try:
            cases.append(prepare_case(doc, index, case))
        except ProblemsError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ProblemsError(problems)
    return doc, engine.World.build(machines, settings), cases


def _runnable(loaded: project.Journeys, doc: loader.Document) -> dict[str, machine.Machine]:
    """The journeys a test file can run on. A file naming its ``journeys`` runs when those
    load, whatever state the others are in (one journey being rewritten does not stop the
    tests of the rest; ``validate`` reports it). Without ``journeys`` every journey runs, so
    any error stops the file."""
    wanted = doc.data.get("journeys")
    if loaded.errors and (wanted is None or any(j not in loaded.machines for j in wanted)):
        raise ProblemsError(loaded.errors)
    return dict(loaded.machines)


def run_file(path: Path, config_path: str | None, journeys_dir: str | None) -> list[CaseResult]:
    """Run every case of one test file. Raises ProblemsError for a malformed file."""
    doc, world, cases = load_file(path, config_path, journeys_dir)
    return [run_case(world, doc, case) for case in cases]


def check_file(path: Path, config_path: str | None, journeys_dir: str | None) -> list[Problem]:
    """Everything ``postflow test`` would reject in a test file, without running it."""
    try:
        load_file(path, config_path, journeys_dir, check_only=True)
    except ProblemsError as exc:
        return exc.problems
    return []
