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
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from postflow import __version__, project
from postflow.bundled import bundled_project
from postflow.library import Entry, library, named_journeys, read_yaml, rel_path

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
        rel = rel_path(root, path)
        if not path.is_file() or not project.is_test_file(path) or rel in owned:
            continue
        named = named_journeys(read_yaml(path))
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
