"""``postflow init``: start a shop's own project from the journey library.

A new project is a copy of the bundled one (:func:`postflow.bundled.bundled_project`), cut
down to the journeys the shop chose: each with its test file and the templates it names, plus
every library journey it cannot work without, so the project validates and its tests pass as
created. Around them come the configuration, the catalog, the example events, a CI workflow
that runs exactly ``postflow validate`` and ``postflow test``, a README and a .gitignore.

Three steps, each usable on its own: :func:`library` reads what can be chosen, :func:`plan`
computes every file's bytes without touching the disk, :func:`write` writes them, or nothing
at all when one would overwrite a file (unless forced). Dependencies are read from the YAML,
never listed by hand, so a journey added to the library is picked up as it is.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from postflow import __version__, loader, project
from postflow.bundled import bundled_project
from postflow.problems import ProblemsError

__all__ = [
    "Entry",
    "ExistingFiles",
    "Plan",
    "PlannedFile",
    "ScaffoldError",
    "UnknownJourney",
    "choose",
    "library",
    "listing",
    "parse_selection",
    "plan",
    "resolve",
    "write",
]

DATABASE = "sqlite:///postflow.db"
WORKFLOW = ".github/workflows/postflow.yml"
EVENTS = "examples/events.jsonl"
CI_COMMANDS = ("postflow validate", "postflow test")
"""What the CI workflow runs, in order: the same commands a developer runs before pushing."""


class ScaffoldError(Exception):
    """A project that cannot be created as asked; the message says why."""


class UnknownJourney(ScaffoldError):
    """A journey id asked for that the library does not have."""

    def __init__(self, unknown: Sequence[str], known: Sequence[str]) -> None:
        self.unknown = list(unknown)
        self.known = list(known)
        names = ", ".join(f"'{u}'" for u in self.unknown)
        super().__init__(f"unknown journey {names} (known: {', '.join(self.known) or 'none'})")


class ExistingFiles(ScaffoldError):
    """Files that :func:`write` would overwrite; nothing was written."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths = list(paths)
        super().__init__(
            f"{len(self.paths)} file(s) exist already: " + ", ".join(str(p) for p in self.paths)
        )


@dataclass(frozen=True)
class Entry:
    """One journey of the library, with everything that has to come with it.

    Paths are POSIX paths relative to the library's root (``journeys/x.yaml``), which are
    also their paths in the new project."""

    id: str
    name: str
    summary: str
    """The first sentence of the description: one line in a list."""
    file: str
    test_file: str | None
    templates: tuple[str, ...]
    """Template files its email and SMS steps name that exist in the library."""
    needs: tuple[str, ...]
    """Library journeys it cannot work without: those that emit an event it is triggered by
    or waits for, and those its test file runs alongside it."""
    support: tuple[str, ...] = ()
    """Files its test file reads (an events file given by path)."""
    listens: frozenset[str] = field(default=frozenset(), repr=False)
    emits: frozenset[str] = field(default=frozenset(), repr=False)


@dataclass(frozen=True)
class PlannedFile:
    path: str
    """POSIX path relative to the project directory."""
    content: bytes


@dataclass(frozen=True)
class Plan:
    """A project to create: every file and its bytes, computed without touching the disk."""

    target: Path
    journeys: tuple[str, ...]
    """Every journey copied, in library order: those chosen and those they need."""
    added: dict[str, tuple[str, ...]]
    """Journeys copied only because others need them: id -> the journeys that need it."""
    files: tuple[PlannedFile, ...]
    untested: tuple[str, ...] = ()
    """Journeys copied without a test file (the library has none for them)."""


# --------------------------------------------------------------------------- the library


def library(source: Path | None = None) -> list[Entry]:
    """The journeys a new project can start from, in file order.

    ``source`` is a project laid out like the bundled one (``journeys/``, ``templates/``);
    default: the bundled project. A journey file that cannot be read, or has no id, is left
    out rather than failing the whole list: ``postflow validate`` is where a broken journey is
    reported, and the others can still be chosen. The first file with an id wins, as in a
    project."""
    root = source if source is not None else bundled_project()
    journeys_dir = root / "journeys"
    if not journeys_dir.is_dir():
        return []
    partial: list[dict[str, Any]] = []
    seen: set[str] = set()
    for path in project.journey_files([journeys_dir]):
        data = _read(path)
        if not isinstance(data, dict) or not isinstance(data.get("id"), str):
            continue
        jid = data["id"]
        if jid in seen:
            continue
        seen.add(jid)
        test = _test_file_for(path)
        test_data = _read(test) if test is not None else None
        partial.append(
            {
                "id": jid,
                "name": str(data.get("name") or jid),
                "summary": first_sentence(data.get("description")),
                "file": _rel(root, path),
                "test_file": _rel(root, test) if test is not None else None,
                "templates": tuple(_templates(root, data)),
                "listens": frozenset(_listens(data)),
                "emits": frozenset(_emits(data)),
                "test_journeys": _named_journeys(test_data),
                "support": tuple(_support(root, test, test_data)) if test else (),
            }
        )
    emitters: dict[str, set[str]] = {}
    for item in partial:
        for event in item["emits"]:
            emitters.setdefault(event, set()).add(item["id"])
    entries = []
    for item in partial:
        needs: set[str] = set()
        for event in item["listens"]:
            needs.update(emitters.get(event, ()))
        needs.update(j for j in item["test_journeys"] or () if j in seen)
        needs.discard(item["id"])
        entries.append(
            Entry(
                id=item["id"],
                name=item["name"],
                summary=item["summary"],
                file=item["file"],
                test_file=item["test_file"],
                templates=item["templates"],
                needs=tuple(sorted(needs)),
                support=item["support"],
                listens=item["listens"],
                emits=item["emits"],
            )
        )
    return entries


def first_sentence(text: Any) -> str:
    """The description's first sentence on one line: what a numbered list has room for."""
    if not isinstance(text, str):
        return ""
    flat = " ".join(text.split())
    match = re.search(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(`*])", flat)
    return flat[: match.start()] if match else flat


def _read(path: Path | None) -> Any:
    if path is None:
        return None
    try:
        return loader.load_yaml(path).data
    except ProblemsError:
        return None


def _rel(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()


def _test_file_for(journey: Path) -> Path | None:
    """``NAME.test.yaml`` (or ``.test.yml``) beside ``NAME.yaml``: the library's convention."""
    stem = journey.name[: -len(journey.suffix)]
    for suffix in project.TEST_SUFFIXES:
        candidate = journey.with_name(stem + suffix)
        if candidate.is_file():
            return candidate
    return None


def _steps(data: dict[str, Any]) -> list[dict[str, Any]]:
    steps = data.get("steps")
    return [s for s in steps if isinstance(s, dict)] if isinstance(steps, list) else []


def _templates(root: Path, data: dict[str, Any]) -> list[str]:
    """Files of every ``template:`` an email or SMS step names: an email's ``T.html`` and
    ``T.txt``, an SMS's ``T.txt``; those that exist (an email's text part is optional)."""
    found: list[str] = []
    for step in _steps(data):
        for kind, suffixes in (("email", (".html", ".txt")), ("sms", (".txt",))):
            body = step.get(kind)
            if not isinstance(body, dict) or not isinstance(body.get("template"), str):
                continue
            for suffix in suffixes:
                file = root / "templates" / f"{body['template']}{suffix}"
                if file.is_file() and _inside(root, file):
                    rel = _rel(root, file)
                    if rel not in found:
                        found.append(rel)
    return found


def _listens(data: dict[str, Any]) -> set[str]:
    """Event types that start the journey or that one of its steps waits for."""
    types: set[str] = set()
    trigger = data.get("trigger")
    if isinstance(trigger, dict) and isinstance(trigger.get("event"), str):
        types.add(trigger["event"])
    for step in _steps(data):
        wait = step.get("wait_for")
        if not isinstance(wait, dict):
            continue
        if isinstance(wait.get("event"), str):
            types.add(wait["event"])
        for option in wait.get("events") or ():
            if isinstance(option, dict) and isinstance(option.get("event"), str):
                types.add(option["event"])
    return types


def _emits(data: dict[str, Any]) -> set[str]:
    return {
        step["emit"]["event"]
        for step in _steps(data)
        if isinstance(step.get("emit"), dict) and isinstance(step["emit"].get("event"), str)
    }


def _named_journeys(test_data: Any) -> tuple[str, ...] | None:
    """The test file's ``journeys:`` list; None when it has none (it runs them all)."""
    if not isinstance(test_data, dict) or not isinstance(test_data.get("journeys"), list):
        return None
    return tuple(str(j) for j in test_data["journeys"])


def _support(root: Path, test: Path, test_data: Any) -> list[str]:
    """Events files the test's cases read by path (relative to the test file)."""
    found: list[str] = []
    cases = test_data.get("cases") if isinstance(test_data, dict) else None
    for case in cases if isinstance(cases, list) else ():
        events = case.get("events") if isinstance(case, dict) else None
        if isinstance(events, str):
            file = test.parent / events
            if file.is_file() and _inside(root, file):
                rel = file.resolve().relative_to(root.resolve()).as_posix()
                if rel not in found:
                    found.append(rel)
    return found


def _inside(root: Path, path: Path) -> bool:
    return path.resolve().is_relative_to(root.resolve())


# --------------------------------------------------------------------------- choosing


def resolve(
    entries: Sequence[Entry], chosen: Iterable[str] | None
) -> tuple[list[Entry], dict[str, tuple[str, ...]]]:
    """The entries to copy: those ``chosen`` (None: all) and, transitively, what they need,
    in library order; and which were added for which. Raises :class:`UnknownJourney`."""
    by_id = {e.id: e for e in entries}
    if chosen is None:
        return list(entries), {}
    wanted = list(dict.fromkeys(chosen))
    unknown = [j for j in wanted if j not in by_id]
    if unknown:
        raise UnknownJourney(unknown, [e.id for e in entries])
    asked = set(wanted)
    taken = set(wanted)
    needed_by: dict[str, set[str]] = {}
    queue = list(wanted)
    while queue:
        current = by_id[queue.pop()]
        for need in current.needs:
            if need not in asked:
                needed_by.setdefault(need, set()).add(current.id)
            if need not in taken:
                taken.add(need)
                queue.append(need)
    added = {j: tuple(sorted(by)) for j, by in sorted(needed_by.items())}
    return [e for e in entries if e.id in taken], added


def listing(entries: Sequence[Entry], width: int = 100) -> list[str]:
    """The library as a numbered list, one line per journey: number, id, name, summary (cut
    to ``width``), and what it needs."""
    id_width = max((len(e.id) for e in entries), default=0)
    lines = []
    for number, entry in enumerate(entries, 1):
        line = f"{number:>3}. {entry.id:<{id_width}}  {entry.name}"
        if entry.summary:
            line += f": {entry.summary}"
        if len(line) > width:
            line = line[: width - 1].rstrip() + "…"
        if entry.needs:
            line += f"\n     {'':<{id_width}}  (needs {', '.join(entry.needs)})"
        lines.append(line)
    return lines


def parse_selection(text: str, count: int) -> list[int]:
    """1-based numbers and ranges (``1,3,5-7``) or ``all`` -> 0-based indexes, in order, once
    each. Raises ValueError with a message fit to show before asking again."""
    answer = text.strip().lower()
    if answer in ("all", "*"):
        return list(range(count))
    if not answer:
        raise ValueError("choose at least one journey")
    picked: list[int] = []
    for part in re.split(r"[,\s]+", answer):
        if not part:
            continue
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not match:
            raise ValueError(f"'{part}' is not a number or a range like 5-7")
        low = int(match.group(1))
        high = int(match.group(2) or low)
        if low > high:
            raise ValueError(f"'{part}' runs backwards")
        if low < 1 or high > count:
            raise ValueError(f"'{part}' is out of range: choose from 1 to {count}")
        picked.extend(n - 1 for n in range(low, high + 1) if n - 1 not in picked)
    return picked


def choose(
    entries: Sequence[Entry], ask: Callable[[str], str], say: Callable[[str], None]
) -> list[str]:
    """Show the library as a numbered list and ask which journeys to copy until the answer
    makes sense; returns their ids. ``ask`` shows a question and returns the answer, ``say``
    shows a line: a terminal's prompt and print, or fakes in tests."""
    for line in listing(entries):
        say(line)
    while True:
        answer = ask("Journeys to copy (numbers like 1,3,5-7, or all)")
        try:
            return [entries[i].id for i in parse_selection(answer, len(entries))]
        except ValueError as exc:
            say(f"error: {exc}")


# --------------------------------------------------------------------------- planning


def plan(target: Path, chosen: Iterable[str] | None = None, source: Path | None = None) -> Plan:
    """Every file of a new project in ``target`` with the ``chosen`` journeys (None: all of
    them), computed from the library at ``source`` (default: the bundled project). Nothing is
    read from or written to ``target``. Raises :class:`UnknownJourney`, or
    :class:`ScaffoldError` when the library is empty."""
    root = source if source is not None else bundled_project()
    entries = library(root)
    if not entries:
        raise ScaffoldError(f"the journey library in {root / 'journeys'} has no journeys")
    selected, added = resolve(entries, chosen)
    everything = len(selected) == len(entries)
    ids = {e.id for e in selected}
    files: dict[str, bytes] = {}
    config_text = _config(root)
    files["postflow.yaml"] = config_text.encode()
    if (root / "catalog.yaml").is_file():
        files["catalog.yaml"] = (root / "catalog.yaml").read_bytes()
    for entry in selected:
        for rel in (entry.file, entry.test_file, *entry.support, *entry.templates):
            if rel is not None and rel not in files:
                files[rel] = (root / rel).read_bytes()
    for rel in _shared_tests(root, entries, ids, everything):
        files.setdefault(rel, (root / rel).read_bytes())
    events = root / EVENTS
    if events.is_file():
        files[EVENTS] = _events(events, root, selected, config_text, everything)
    files[WORKFLOW] = workflow().encode()
    files["README.md"] = readme(selected, files).encode()
    files[".gitignore"] = b"# written by postflow: the local database and the file channel\n"
    files[".gitignore"] += b"postflow.db*\noutbox.jsonl\n"
    return Plan(
        target=target,
        journeys=tuple(e.id for e in selected),
        added=added,
        files=tuple(PlannedFile(path, content) for path, content in files.items()),
        untested=tuple(e.id for e in selected if e.test_file is None),
    )


def _config(root: Path) -> str:
    """The bundled postflow.yaml with the default SQLite database (the library's own may point
    elsewhere); a minimal one when the library has none."""
    source = root / "postflow.yaml"
    if not source.is_file():
        text = f"database: {DATABASE}\njourneys: journeys\ntemplates: templates\n"
        if (root / "catalog.yaml").is_file():
            text += "catalog: catalog.yaml\n"
        return text
    text = source.read_text(encoding="utf-8")
    line = re.compile(r"^database:[^\n]*$", re.MULTILINE)
    if line.search(text):
        return line.sub(f"database: {DATABASE}", text, count=1)
    return f"database: {DATABASE}\n{text}"


def _shared_tests(
    root: Path, entries: Sequence[Entry], ids: set[str], everything: bool
) -> list[str]:
    """Library test files that belong to no one journey: copied when every journey they run
    is copied (a file without a ``journeys:`` list runs them all, so only with all)."""
    owned = {e.test_file for e in entries} | {s for e in entries for s in e.support}
    journeys_dir = root / "journeys"
    if not journeys_dir.is_dir():
        return []
    found = []
    for path in sorted(journeys_dir.rglob("*"), key=str):
        rel = _rel(root, path)
        if not path.is_file() or not project.is_test_file(path) or rel in owned:
            continue
        named = _named_journeys(_read(path))
        if (named is None and everything) or (named is not None and set(named) <= ids):
            found.append(rel)
    return found


def _events(
    path: Path, root: Path, selected: Sequence[Entry], config_text: str, everything: bool
) -> bytes:
    """The example events: all of them for the whole library; else the lines whose type the
    chosen journeys mention, purchases (they keep profile facts) and lines that carry a
    profile (later events need the address). All of them when that leaves nothing."""
    raw = path.read_bytes()
    if everything:
        return raw
    text = "\n".join((root / e.file).read_text(encoding="utf-8") for e in selected)
    match = re.search(r"^purchase_event:\s*([A-Za-z0-9_.:-]+)", config_text, re.MULTILINE)
    purchase = match.group(1) if match else "order_placed"
    kept: list[bytes] = []
    useful = False
    for line in raw.splitlines(keepends=True):
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if not isinstance(event, dict):
            continue
        kind = event.get("type")
        mentioned = isinstance(kind, str) and (
            kind == purchase or re.search(rf"(?<![\w-]){re.escape(kind)}(?![\w-])", text)
        )
        if mentioned or isinstance(event.get("customer"), dict):
            kept.append(line if line.endswith(b"\n") else line + b"\n")
            useful = useful or bool(mentioned)
    return b"".join(kept) if useful else raw


def workflow() -> str:
    """The CI snippet: GitHub Actions running :data:`CI_COMMANDS` on every push and pull
    request, with the postflow that created the project (raise the pin deliberately)."""
    runs = "".join(f"      - run: {command}\n" for command in CI_COMMANDS)
    return (
        "# Written by `postflow init`: every push and pull request checks the journeys and\n"
        "# runs their tests. The project is the repository's root; if it lives in a\n"
        "# subdirectory, add `defaults: {run: {working-directory: DIR}}` to the job.\n"
        "name: postflow\n"
        "on:\n"
        "  push:\n"
        "  pull_request:\n"
        "jobs:\n"
        "  journeys:\n"
        "    runs-on: ubuntu-latest\n"
        "    steps:\n"
        "      - uses: actions/checkout@v4\n"
        "      - uses: actions/setup-python@v5\n"
        "        with:\n"
        '          python-version: "3.12"\n'
        f'      - run: pip install "postflow=={__version__}"\n'
        f"{runs}"
    )


def readme(selected: Sequence[Entry], files: dict[str, bytes]) -> str:
    """A short README for the new project: what is there and the commands to run."""
    journeys = "".join(
        f"  - `{e.id}`: {e.name}" + (f". {e.summary}" if e.summary else "") + "\n" for e in selected
    )
    parts = [
        "# Post-purchase journeys\n\n",
        f"Created by `postflow init` (postflow {__version__}).\n\n",
        "- `postflow.yaml`: the configuration (database, time zone, quiet hours, send window,\n"
        "  message caps, channels).\n",
    ]
    if "catalog.yaml" in files:
        parts.append(
            "- `catalog.yaml`: your products by SKU (name, category, `replenish_days`, ...),\n"
            "  which journeys read with `catalog(sku)`. Replace the examples with yours.\n"
        )
    parts += [
        f"- `journeys/`: {len(selected)} journey(s), each with its tests (`NAME.test.yaml`):\n",
        journeys,
        "- `templates/`: their email (HTML and text) and SMS templates.\n",
    ]
    if EVENTS in files:
        parts.append(f"- `{EVENTS}`: example events to simulate.\n")
    parts += [
        f"- `{WORKFLOW}`: CI running `postflow validate` and `postflow test`.\n\n",
        "## Commands\n\n",
        "```sh\n",
        f'pip install "postflow=={__version__}"\n',
        "postflow validate                                  # check every journey\n",
        "postflow test                                      # run journeys/*.test.yaml\n",
    ]
    if EVENTS in files:
        parts.append(f"postflow simulate --events {EVENTS}   # play the examples in virtual time\n")
    parts += [
        "postflow run                                       # the daemon (database: postflow.db)\n",
        "```\n\n",
        "Messages are printed on the console until `SENDGRID_API_KEY` (email) or\n",
        "`TWILIO_ACCOUNT_SID` and `TWILIO_AUTH_TOKEN` (SMS) are set; `postflow doctor` checks\n",
        "the setup without sending anything.\n",
    ]
    return "".join(parts)


# --------------------------------------------------------------------------- writing


def write(plan: Plan, force: bool = False) -> list[Path]:
    """Write every file of ``plan`` (creating directories); returns their paths.

    Without ``force``, if any of them exists already, raises :class:`ExistingFiles` naming
    every one and writes nothing: a shop's edited journey is never replaced by surprise.
    A file standing where a directory is needed is a :class:`ScaffoldError` either way."""
    target = plan.target
    if target.exists() and not target.is_dir():
        raise ScaffoldError(f"{target} exists and is not a directory")
    paths = [target / PurePosixPath(f.path) for f in plan.files]
    blocked = sorted(
        {
            str(parent)
            for path in paths
            for parent in path.parents
            if parent.is_relative_to(target) and parent.exists() and not parent.is_dir()
        }
    )
    if blocked:
        raise ScaffoldError(
            "not a directory, but a directory is needed there: " + ", ".join(blocked)
        )
    folders = [str(p) for p in paths if p.is_dir()]
    if folders:
        raise ScaffoldError("a directory, but a file is needed there: " + ", ".join(folders))
    existing = [p for p in paths if p.exists() or p.is_symlink()]
    if existing and not force:
        raise ExistingFiles(existing)
    created: list[Path] = []  # files and directories this call made, to take back on failure
    try:
        for path, planned in zip(paths, plan.files, strict=True):
            for parent in reversed(path.parents):
                if not parent.exists():
                    parent.mkdir()
                    created.append(parent)
            if path.is_symlink():
                path.unlink()  # replace the link itself, never the file it points to
            existed = path.exists()
            path.write_bytes(planned.content)
            if not existed:
                created.append(path)
    except OSError:
        _take_back(created)
        raise
    return paths


def _take_back(created: list[Path]) -> None:
    """Remove what a failed write created (files, then the directories made for them), so
    a failed ``init`` leaves nothing half-written and can simply be run again."""
    for path in reversed(created):
        try:
            path.rmdir() if path.is_dir() else path.unlink()
        except OSError:
            pass
