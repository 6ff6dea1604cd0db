"""Whole-process figures for the bench scripts: wall and CPU seconds, peak RSS of a command.

Each command runs as its own child process, so its start-up (imports, loading journeys) is
counted, as a reader running it would pay it. CPU seconds (user + system) and peak RSS are the
operating system's accounting of that one child (`os.wait4`, the per-child form of
`getrusage(RUSAGE_CHILDREN)`); on a busy machine CPU seconds vary less than wall seconds.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import orjson

REPO = Path(__file__).resolve().parent.parent
# The three starter journeys the figures were first measured on, frozen here so that the
# figures stay reproducible while the journey library in journeys/ grows.
STARTER = Path(__file__).resolve().parent / "starter"
# The postflow of the interpreter running the bench (the project's venv).
POSTFLOW = [sys.executable, "-m", "postflow"]


class Usage(NamedTuple):
    wall: float  # seconds
    cpu: float  # seconds, user + system
    peak: int  # bytes


def run(cmd: Sequence[str], stdout: Path | str = os.devnull) -> Usage:
    """Run ``cmd`` with its output in ``stdout``; exits if it fails."""
    with open(stdout, "wb") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(list(cmd), stdout=out)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"error: {' '.join(cmd)} exited with status {proc.returncode}")
    # ru_maxrss is in KiB on Linux, in bytes on macOS.
    peak = usage.ru_maxrss if sys.platform == "darwin" else usage.ru_maxrss * 1024
    return Usage(wall, usage.ru_utime + usage.ru_stime, peak)


def simulate_cmd(events: Path, config: Path, journeys: Path | None = None) -> list[str]:
    cmd = [*POSTFLOW, "simulate", "--events", str(events), "--config", str(config)]
    return cmd + (["--journeys", str(journeys)] if journeys else [])


def sent_messages(records: Path) -> list[dict[str, object]]:
    """The message records of a simulate output with status `sent`."""
    with records.open("rb") as f:
        rows = (orjson.loads(line) for line in f)
        return [r for r in rows if r["kind"] == "message" and r["status"] == "sent"]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def mib(size: int) -> str:
    return f"{size / 2**20:,.0f} MiB"
