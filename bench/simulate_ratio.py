"""The headline simulate figures: time against the naive loop, and customers per second.

Usage: python bench/simulate_ratio.py [--customers N] [--runs R]   (with the project's venv)

1. The review project (review_journey.py) for N customers (default 20,000): `postflow
   simulate` and `naive_loop.py` run in turn, R times each (default 5), as whole processes
   writing their output to a file. Prints the median wall and CPU seconds of each, the median
   of the paired ratios simulate/naive (pairing keeps the ratio fair when the machine's speed
   drifts), simulate's customers/s (per wall second and per CPU second) and peak RSS.
2. The repository's starter journeys over starter_events.py's N customers: simulate's median
   wall and CPU seconds and customers/s.

Before timing, it checks that the work was done: simulate sends two emails per review
customer, the very messages the naive loop writes (same addresses, subjects and bodies), and a
receipt for every order of the starter events. It never judges speed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import orjson
import review_journey
import starter_events
from measure import STARTER, Usage, median, mib, run, sent_messages, simulate_cmd

NAIVE = Path(__file__).resolve().parent / "naive_loop.py"


def times(usages: list[Usage]) -> str:
    wall, cpu = median([u.wall for u in usages]), median([u.cpu for u in usages])
    return f"{wall:6.2f} s wall, {cpu:6.2f} s CPU"


def throughput(customers: int, usages: list[Usage]) -> str:
    wall, cpu = median([u.wall for u in usages]), median([u.cpu for u in usages])
    return f"{customers / wall:,.0f} customers/s ({customers / cpu:,.0f} per CPU second)"


def check_review(simulated: Path, naive: Path, customers: int) -> None:
    """simulate sent exactly what the naive loop wrote: two emails per customer."""
    sent = sorted((m["to"], m["subject"], m["body"]) for m in sent_messages(simulated))
    with naive.open("rb") as f:
        wrote = sorted((m["to"], m["subject"], m["body"]) for m in map(orjson.loads, f))
    if len(sent) != 2 * customers:
        sys.exit(f"error: simulate sent {len(sent)} emails, expected {2 * customers}")
    if sent != wrote:
        sys.exit("error: simulate and the naive loop rendered different messages")


def review(root: Path, customers: int, runs: int) -> None:
    events = review_journey.write_project(root, customers)
    sim = simulate_cmd(events, root / "postflow.yaml", root / "journeys")
    naive = [sys.executable, str(NAIVE), str(events), str(root / "naive.jsonl")]
    run(sim, root / "simulated.jsonl")  # also a warm-up of each command
    run(naive)
    check_review(root / "simulated.jsonl", root / "naive.jsonl", customers)
    pairs = [(run(sim, root / "simulated.jsonl"), run(naive)) for _ in range(runs)]
    sims, naives = [p[0] for p in pairs], [p[1] for p in pairs]
    print(f"review journey, {customers:,} customers, {2 * customers:,} emails, median of {runs}:")
    print(f"  simulate    {times(sims)}   peak RSS {mib(int(median([s.peak for s in sims])))}")
    print(f"  naive loop  {times(naives)}")
    wall_ratio = median([s.wall / n.wall for s, n in pairs])
    cpu_ratio = median([s.cpu / n.cpu for s, n in pairs])
    print(
        f"  ratio simulate/naive, median of paired runs: {wall_ratio:.2f} wall, {cpu_ratio:.2f} CPU"
    )
    print(f"  simulate throughput {throughput(customers, sims)}")


def starter(root: Path, customers: int, runs: int) -> None:
    events = root / "starter.jsonl"
    starter_events.write_events(events, customers)
    with events.open("rb") as f:
        orders = sum(1 for line in f if orjson.loads(line)["type"] == "order_placed")
    sim = simulate_cmd(events, STARTER / "postflow.yaml")
    run(sim, root / "starter-out.jsonl")
    receipts = [m for m in sent_messages(root / "starter-out.jsonl") if m["step"] == "receipt"]
    if len(receipts) != orders:
        sys.exit(f"error: simulate sent {len(receipts)} receipts for {orders} orders")
    sims = [run(sim, root / "starter-out.jsonl") for _ in range(runs)]
    print(f"starter journeys, {customers:,} customers ({orders:,} orders), median of {runs}:")
    print(f"  simulate    {times(sims)}")
    print(f"  simulate throughput {throughput(customers, sims)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        review(Path(tmp), args.customers, args.runs)
        starter(Path(tmp), args.customers, args.runs)


if __name__ == "__main__":
    main()
