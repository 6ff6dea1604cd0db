"""Putting events into the database: JSON Lines files, standard input, single events.

A file is ingested whole or not at all: its lines are validated while they stream into one
transaction, and if any line is bad the transaction is rolled back and every bad line is
reported as ``FILE:LINE:COL: error: ...``. Ingestion stores; it decides nothing (the sweep
applies events when the clock reaches them).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

from postflow import events
from postflow.events import Event
from postflow.problems import Problem, ProblemsError
from postflow.store.sql import IngestResult, SqlStore, wall_us


def _checked(
    path: str,
    problems: list[Problem],
    default_at: int,
    text: str | None,
    progress: Callable[[int], None] | None,
) -> Iterator[Event]:
    """Good events of the file; once it is read, raise ProblemsError if any line was bad
    (which rolls the ingesting transaction back)."""
    for number, event in events.scan_events(path, problems, default_at=default_at, text=text):
        if progress is not None and number % 1000 == 0:
            progress(number)
        if not problems:
            yield event
    if problems:
        raise ProblemsError(problems)


def ingest_file(
    store: SqlStore,
    path: str,
    *,
    backfill: bool = False,
    text: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> IngestResult:
    """Ingest a JSON Lines events file (``text`` instead of reading ``path``, for standard
    input). Events without ``at`` get the time of ingestion. Raises ProblemsError listing
    every bad line; then nothing was stored."""
    if text is None:
        p = Path(path)
        if p.is_dir():
            raise ProblemsError(
                [Problem(path, 1, 1, "error", "is a directory, not an events file")]
            )
        if not p.exists():
            raise ProblemsError([Problem(path, 1, 1, "error", "events file not found")])
    problems: list[Problem] = []
    return store.ingest(_checked(path, problems, wall_us(), text, progress), backfill=backfill)


def file_lines_estimate(path: str) -> int | None:
    """A rough line count for a progress bar (size / 200 bytes), or None."""
    try:
        return max(os.path.getsize(path) // 200, 1)
    except OSError:
        return None
