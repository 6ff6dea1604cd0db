"""A project's journeys, loaded as a whole: files found, read, checked and compiled.

The pipeline per file is read (positions kept) -> JSON Schema -> compile (expressions,
templates, durations, zones, cron) -> step-graph checks; then across files, journey ids must
be unique. Every problem is collected and located, so ``validate`` reports them all at once
and every other command refuses to run a project that does not validate.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from postflow import loader, machine, validate
from postflow.problems import MissingPath, Problem, ProblemsError

__all__ = ["Journeys", "MissingPath", "journey_files", "load_journeys", "require_journeys"]

JOURNEY_SUFFIXES = (".yaml", ".yml")
TEST_SUFFIXES = (".test.yaml", ".test.yml")


@dataclass
class Journeys:
    machines: dict[str, machine.Machine] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.is_error]


def is_test_file(path: Path) -> bool:
    return path.name.endswith(TEST_SUFFIXES)


def collect_files(paths: Iterable[Path], wanted: Callable[[Path], bool]) -> list[Path]:
    """Files named explicitly, plus the files under the named directories (recursively) that
    are ``wanted``; sorted by path. A path that does not exist is a usage error."""
    found: set[Path] = set()
    for path in paths:
        if path.is_dir():
            found.update(p for p in path.rglob("*") if p.is_file() and wanted(p))
        elif path.is_file():
            found.add(path)
        else:
            raise MissingPath(str(path))
    return sorted(found, key=str)


def is_journey_file(path: Path) -> bool:
    return path.suffix in JOURNEY_SUFFIXES and not is_test_file(path)


def journey_files(paths: Iterable[Path]) -> list[Path]:
    """Journey files under the given files and directories; ``*.test.yaml`` files are journey
    tests, not journeys, even when named explicitly."""
    return [p for p in collect_files(paths, is_journey_file) if not is_test_file(p)]


def load_journeys(paths: Iterable[Path], templates_dir: Path) -> Journeys:
    result = Journeys()
    first_file: dict[str, str] = {}
    for path in journey_files(paths):
        result.files.append(path)
        try:
            doc = loader.load_yaml(path)
        except ProblemsError as exc:
            result.problems.extend(exc.problems)
            continue
        if not isinstance(doc.data, dict):
            result.problems.append(doc.problem((), "a journey file must be a mapping"))
            continue
        schema = loader.schema_problems(doc, "journey")
        if schema:
            result.problems.extend(schema)
            result.problems.extend(_beyond_schema(doc, templates_dir, schema))
            continue
        compiled, problems = machine.compile_journey(doc, templates_dir)
        problems.extend(validate.check_steps(doc))
        result.problems.extend(problems)
        jid = doc.data["id"]
        if jid in first_file:
            result.problems.append(
                doc.problem(("id",), f"journey id '{jid}' is already used by {first_file[jid]}")
            )
            continue
        first_file[jid] = str(path)
        if compiled is not None and not any(p.is_error for p in problems):
            result.machines[jid] = compiled
    result.problems.sort()
    return result


def _beyond_schema(
    doc: loader.Document, templates_dir: Path, schema: list[Problem]
) -> list[Problem]:
    """The compiler's and graph checks' findings in a file that failed the schema, so one run
    shows every independent mistake. Best effort: where the shape is too broken to check
    (a missing or mistyped key), the schema's message stands alone; a finding at a place the
    schema already flagged is the same mistake and is dropped."""
    problems: list[Problem] = []
    for check in (
        lambda: machine.compile_journey(doc, templates_dir)[1],
        lambda: validate.check_steps(doc),
    ):
        try:
            problems.extend(check())
        except Exception:  # the shape is too broken here: the schema errors say why
            continue
    flagged = {(p.line, p.col) for p in schema}
    return [
        p
        for p in problems
        if (p.line, p.col) not in flagged and not p.message.startswith(machine.CANNOT_COMPILE)
    ]


def require_journeys(paths: Iterable[Path], templates_dir: Path) -> dict[str, machine.Machine]:
    """Load journeys for a command that runs them: any error stops it (warnings do not)."""
    loaded = load_journeys(paths, templates_dir)
    if loaded.errors:
        raise ProblemsError(loaded.errors)
    return loaded.machines
