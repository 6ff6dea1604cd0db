"""The journey library as ``postflow init`` offers it: one :class:`Entry` per journey, with
the test file, templates and other journeys that must come with it.

Read from the YAML of the library's files (the bundled project by default), never listed by
hand: a journey added to ``journeys/`` is offered, with its dependencies, as it is. A
journey needs the journeys that ``emit`` an event it is triggered by or waits for, and those
its test file runs alongside it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from postflow import loader, project
from postflow.bundled import bundled_project
from postflow.problems import ProblemsError

__all__ = ["Entry", "first_sentence", "library", "named_journeys", "read_yaml", "rel_path"]


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
        data = read_yaml(path)
        if not isinstance(data, dict) or not isinstance(data.get("id"), str):
            continue
        jid = data["id"]
        if jid in seen:
            continue
        seen.add(jid)
        test = _test_file_for(path)
        test_data = read_yaml(test) if test is not None else None
        partial.append(
            {
                "id": jid,
                "name": str(data.get("name") or jid),
                "summary": first_sentence(data.get("description")),
                "file": rel_path(root, path),
                "test_file": rel_path(root, test) if test is not None else None,
                "templates": tuple(_templates(root, data)),
                "listens": frozenset(_listens(data)),
                "emits": frozenset(_emits(data)),
                "test_journeys": named_journeys(test_data),
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


def read_yaml(path: Path | None) -> Any:
    if path is None:
        return None
    try:
        return loader.load_yaml(path).data
    except ProblemsError:
        return None


def rel_path(root: Path, path: Path) -> str:
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
                    rel = rel_path(root, file)
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


def named_journeys(test_data: Any) -> tuple[str, ...] | None:
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
