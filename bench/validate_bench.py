"""Measure `postflow validate` over 500 journey files, in-process and as a whole command.

Usage:
  python bench/validate_bench.py [N] [--runs R] [--vs OTHER_POSTFLOW] [--keep DIR]

Writes N varied journey files (all step kinds, expressions and templates) to a temporary
directory (or DIR, kept) and times the full pipeline `validate` runs (read with positions,
JSON Schema, compile, graph checks): once in-process, split by stage, then R runs of the CLI
(`postflow validate DIR`, interpreter start included), quoting medians of wall and CPU time.

--vs OTHER_POSTFLOW runs another install's `postflow` (e.g. a baseline checkout's
`.venv/bin/postflow`) in turn with this one (A B A B ...) and prints the median of the
pair-by-pair CPU ratio: pairing keeps the ratio meaningful on a machine whose load drifts.
The same files and working directory serve both commands.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from postflow import loader, project

JOURNEY = """\
id: journey-{i}
name: Benchmark journey {i}
trigger:
  event: order_delivered
  if: "event.data.total > {i}"
entry: {{key: "trigger.data.order_id", reentry: never, cooldown: 1d}}
exit:
  - {{event: order_refunded, if: "event.data.order_id == trigger.data.order_id"}}
goal: {{event: review_submitted, within: 14d}}
settings:
  quiet_hours: {{start: "21:00", end: "09:00", channels: [sms]}}
steps:
  - id: wait_3d
    wait: {{for: 3d, at: "10:00"}}
  - id: ask
    email:
      subject: "How is your {{{{ trigger.data.items[0].name }}}}, {{{{ customer.first_name | default('there') }}}}?"
      body: "Order {{{{ trigger.data.order_id }}}}: tell us what you think."
  - id: await_review
    wait_for: {{event: review_submitted, timeout: 7d, on_timeout: remind,
               if: "event.data.order_id == trigger.data.order_id"}}
  - id: by_rating
    branch:
      - if: "last_event.data.rating >= 4"
        goto: thanks
      - goto: end
  - id: remind
    sms: {{body: "Got a minute to review order {{{{ trigger.data.order_id }}}}?"}}
    next: end
  - id: thanks
    email: {{subject: "Thank you!", body: "Thanks for the {{{{ last_event.data.rating }}}} stars."}}
  - id: tag
    set: {{customer.reviewer: "true", vars.n: "{i}"}}
  - id: pick
    split:
      - {{weight: 1, goto: tell, name: control}}
      - {{weight: 1, goto: end}}
  - id: tell
    emit: {{event: reviewed, data: {{rating: "last_event.data.rating"}}}}
"""


def write_project(root: Path, count: int) -> Path:
    (root / "journeys").mkdir(parents=True, exist_ok=True)
    (root / "templates").mkdir(exist_ok=True)
    for i in range(count):
        (root / "journeys" / f"journey-{i:04d}.yaml").write_text(JOURNEY.format(i=i))
    return root / "journeys"


def in_process(journeys: Path) -> None:
    """One in-process run, then the reading stage alone (the part libyaml speeds up)."""
    start = time.perf_counter()
    loaded = project.load_journeys([journeys], journeys.parent / "templates")
    total = time.perf_counter() - start
    assert not loaded.errors, loaded.errors[:3]
    files = sorted(journeys.glob("*.yaml"))
    start = time.perf_counter()
    for path in files:
        loader.load_yaml(path)
    reading = time.perf_counter() - start
    libyaml = "libyaml" if loader.CParser is not None else "pure-Python PyYAML (no libyaml)"
    print(f"in-process: {total:.2f} s ({len(files) / total:.0f} files/s)")
    print(f"  of which reading YAML with positions: {reading:.2f} s, with {libyaml}")


def timed(command: list[str], cwd: Path) -> tuple[float, float]:
    """(wall, CPU) seconds of one whole command, from this process's accounting."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert done.returncode == 0, done.stderr[-2000:]
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def cli_runs(journeys: Path, runs: int, other: str | None) -> None:
    this = shutil.which("postflow", path=os.path.dirname(sys.executable)) or "postflow"
    commands = {"this": [this, "validate", str(journeys)]}
    if other:
        commands["vs"] = [other, "validate", str(journeys)]
    for command in commands.values():  # a warm-up run each: file cache, .pyc files
        timed(command, journeys.parent)
    figures: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, command in commands.items():
            figures[name].append(timed(command, journeys.parent))
    for name, command in commands.items():
        wall = statistics.median(w for w, _ in figures[name])
        cpu = statistics.median(c for _, c in figures[name])
        print(f"CLI {name} ({command[0]}): median wall {wall:.2f} s, CPU {cpu:.2f} s")
    if other:
        ratios = [a[1] / b[1] for a, b in zip(figures["this"], figures["vs"], strict=True)]
        print(f"CPU ratio this/vs, median of {runs} pairs: {statistics.median(ratios):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("count", nargs="?", type=int, default=500)
    parser.add_argument("--runs", type=int, default=5, help="CLI runs (default 5)")
    parser.add_argument("--vs", help="another postflow executable to compare with")
    parser.add_argument("--keep", type=Path, help="write the journeys here and keep them")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        journeys = write_project(args.keep or Path(tmp), args.count)
        print(f"validate: {args.count} journey files in {journeys}")
        in_process(journeys)
        cli_runs(journeys, args.runs, args.vs)


if __name__ == "__main__":
    main()
