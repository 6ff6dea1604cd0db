"""Shared fixtures: build a small project on disk and run it through the library API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from postflow import config, durations, engine, events, project, simulate

REPO = Path(__file__).resolve().parent.parent


def run_cli(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """``python -m postflow ARGS`` from the repository root, as a user runs it there: none of
    the test environment's ``POSTFLOW_*`` settings point it elsewhere."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTFLOW_")}
    return subprocess.run(
        [sys.executable, "-m", "postflow", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def journey_files(directory: Path) -> list[Path]:
    """The journey files of a directory (its ``*.test.yaml`` files left out), sorted."""
    return sorted(p for p in directory.glob("*.yaml") if not p.name.endswith(".test.yaml"))


def case_files(directory: Path) -> list[Path]:
    """The journey test files of a directory, sorted."""
    return sorted(directory.glob("*.test.yaml"))


class Project:
    """A throwaway postflow project in a temporary directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "journeys").mkdir()
        (root / "templates").mkdir()
        self.config_text = "timezone: UTC\n"

    def journey(self, name: str, text: str) -> Path:
        path = self.root / "journeys" / f"{name}.yaml"
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    def template(self, name: str, text: str) -> None:
        (self.root / "templates" / name).write_text(textwrap.dedent(text), encoding="utf-8")

    def config(self, text: str) -> None:
        self.config_text = textwrap.dedent(text)

    def settings(self) -> config.Settings:
        path = self.root / "postflow.yaml"
        path.write_text(self.config_text, encoding="utf-8")
        return config.load_settings(path)

    def world(self) -> engine.World:
        settings = self.settings()
        machines = project.require_journeys([self.root / "journeys"], settings.templates)
        return engine.World.build(machines, settings)

    def simulate(
        self, evts: list[dict[str, Any]], until: str | None = None
    ) -> list[dict[str, Any]]:
        world = self.world()
        parsed = [events.parse_event(e) for e in evts]
        records = simulate.simulate(
            world, parsed, durations.parse_instant(until) if until else None
        )
        return [simulate.record_json(r) for r in records]

    def events_file(self, evts: list[dict[str, Any]]) -> Path:
        path = self.root / "events.jsonl"
        path.write_text("".join(json.dumps(e) + "\n" for e in evts), encoding="utf-8")
        return path


@pytest.fixture(autouse=True)
def _no_ambient_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POSTFLOW_CONFIG", raising=False)


def write(root: Path, relative: str, text: str) -> Path:
    """Write a file; the text is dedented and starts at line 1 (no leading blank line)."""
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


@pytest.fixture
def proj(tmp_path: Path) -> Project:
    return Project(tmp_path)


def pick(records: list[dict[str, Any]], *fields: str, **where: Any) -> list[tuple[Any, ...]]:
    """Project records onto some fields, keeping those matching ``where``."""
    return [
        tuple(r.get(f) for f in fields)
        for r in records
        if all(r.get(k) == v for k, v in where.items())
    ]


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """A fresh, empty database URL: a SQLite file, or a new PostgreSQL database (dropped
    afterwards). Every store test runs on both."""
    from databases import database_url

    with database_url(request.param, tmp_path) as url:
        yield url
