"""Memory of `postflow simulate`: peak RSS, and bytes per customer, as the input grows.

Usage: python bench/memory.py [--n1 N1] [--n2 N2]   (with the project's venv)

Runs `postflow simulate` once for N1 and once for N2 customers (default 20,000 and 200,000)
of the review project (review_journey.py) and of the starter journeys (starter_events.py),
its output going to /dev/null, and prints each run's peak RSS and
(RSS(N2) - RSS(N1)) / (N2 - N1): the bytes each further customer costs, start-up excluded.
Peak RSS is the operating system's figure for the simulate process alone.

N2 may go up to 1,000,000 (a few minutes for the review journey; `--only review` skips the
slower starter journeys). simulate keeps at most 20,000 customers as live objects and the
rest as compact state documents, and reads an events file of more than 100,000 events as a
stream, so past those sizes the figure is the cost of one more sleeping customer.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import review_journey
import starter_events
from measure import STARTER, mib, run, simulate_cmd


def review_peak(root: Path, customers: int) -> int:
    project = root / f"review-{customers}"
    events = review_journey.write_project(project, customers)
    return run(simulate_cmd(events, project / "postflow.yaml", project / "journeys")).peak


def starter_peak(root: Path, customers: int) -> int:
    events = root / f"starter-{customers}.jsonl"
    starter_events.write_events(events, customers)
    return run(simulate_cmd(events, STARTER / "postflow.yaml")).peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n1", type=int, default=20_000)
    parser.add_argument("--n2", type=int, default=200_000)
    parser.add_argument("--only", choices=["review", "starter"], help="measure one workload")
    args = parser.parse_args()
    if not 0 < args.n1 < args.n2 <= 1_000_000:
        parser.error("need 0 < N1 < N2 <= 1,000,000")
    if args.n2 > 200_000:
        print(
            f"warning: {args.n2:,} customers takes minutes",
            file=sys.stderr,
        )
    with tempfile.TemporaryDirectory() as tmp:
        workloads = (("review journey", review_peak), ("starter journeys", starter_peak))
        for name, peak_of in workloads:
            if args.only and not name.startswith(args.only):
                continue
            low, high = peak_of(Path(tmp), args.n1), peak_of(Path(tmp), args.n2)
            print(
                f"{name}: peak RSS {mib(low)} for {args.n1:,} customers, {mib(high)} for {args.n2:,}"
            )
            print(f"  {(high - low) / (args.n2 - args.n1):,.0f} bytes per customer")


if __name__ == "__main__":
    main()
