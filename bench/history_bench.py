"""Event history cost (§9): a journey that calls ``purchased`` on every entry, for customers
holding many past orders, against the same journey without the call, in the same run.

Usage: python bench/history_bench.py [--customers N] [--orders K] [--runs R]

Each customer has K past orders (over the year before) and is then delivered one order; the
journey enters on delivery with ``if: "not purchased(sku='PUMP', within='365d')"`` (or, for
the baseline, ``if: "true"``) and sends one email. Times ``simulate`` over the events file
and the durable runtime's ``run --once`` on a SQLite file after ``ingest``, medians of R
runs, and prints entries per second for both journeys and their ratio.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

from postflow import config, durations, engine, simulate
from postflow.channels.console import ConsoleChannel
from postflow.ingest import ingest_file
from postflow.runtime.service import Runtime, load_machines
from postflow.store.sql import SqlStore

JOURNEY = """
id: crosssell
trigger: {{event: order_delivered, if: "{condition}"}}
steps:
  - id: mail
    email: {{subject: "You might like the pump", body: "Hi"}}
"""
START = durations.parse_instant("2027-01-01T00:00:00Z")
DAY = 86_400_000_000


def events(customers: int, orders: int, seed: int = 1) -> list[dict[str, object]]:
    rng = random.Random(seed)
    out: list[dict[str, object]] = []
    for c in range(customers):
        cid = f"c{c}"
        for k in range(orders):
            at = START - rng.randrange(1, 365) * DAY - k
            sku = "PUMP" if rng.random() < 0.01 else f"TEA-{rng.randrange(5)}"
            out.append(
                {
                    "type": "order_placed",
                    "customer_id": cid,
                    "at": durations.format_instant(at),
                    "customer": {"email": f"{cid}@example.com"},
                    "data": {"total": 10, "items": [{"sku": sku, "category": "tea"}]},
                }
            )
        out.append(
            {
                "type": "order_delivered",
                "customer_id": cid,
                "at": durations.format_instant(START + rng.randrange(0, 86_400) * 1_000_000),
            }
        )
    out.sort(key=lambda e: str(e["at"]))
    return out


def project(root: Path, condition: str) -> config.Settings:
    (root / "journeys").mkdir(parents=True)
    (root / "journeys" / "crosssell.yaml").write_text(JOURNEY.format(condition=condition))
    (root / "postflow.yaml").write_text("timezone: UTC\n")
    return config.load_settings(root / "postflow.yaml")


def time_simulate(root: Path, settings: config.Settings, path: Path) -> float:
    machines = load_machines(settings, root / "journeys")
    start = time.perf_counter()
    sim = simulate.Simulation(engine.World.build(machines, settings))
    sim.ingest_file(path)
    for _ in sim.stream(START + 2 * DAY):
        pass
    return time.perf_counter() - start


def time_runtime(root: Path, settings: config.Settings, path: Path, run: int) -> float:
    machines = load_machines(settings, root / "journeys")
    store = SqlStore.open(f"sqlite:///{root / f'run{run}.db'}", settings)
    try:
        ingest_file(store, str(path))
        console = ConsoleChannel(io.StringIO())
        runtime = Runtime(store, settings, machines, {"email": console, "sms": console})
        start = time.perf_counter()
        runtime.run_once(START + 2 * DAY)
        elapsed = time.perf_counter() - start
        runtime.close()
        return elapsed
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--orders", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    evts = events(args.customers, args.orders)
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.jsonl"
        path.write_text("".join(json.dumps(e) + "\n" for e in evts))
        for name, condition in (
            ("purchased", "not purchased(sku='PUMP', within='365d')"),
            ("baseline", "true"),
        ):
            root = Path(tmp) / name
            settings = project(root, condition)
            sims, runs = [], []
            for run in range(args.runs):  # alternate so drift hits both alike
                sims.append(time_simulate(root, settings, path))
                runs.append(time_runtime(root, settings, path, run))
            results[name] = {
                "simulate_s": statistics.median(sims),
                "run_once_s": statistics.median(runs),
            }
    n = args.customers
    for name, r in results.items():
        print(
            f"{name:>10}: simulate {r['simulate_s']:.2f} s ({n / r['simulate_s']:,.0f} entries/s), "
            f"run --once {r['run_once_s']:.2f} s ({n / r['run_once_s']:,.0f} entries/s)"
        )
    p, b = results["purchased"], results["baseline"]
    print(
        f"purchased/baseline: simulate {p['simulate_s'] / b['simulate_s']:.2f}x, "
        f"run --once {p['run_once_s'] / b['run_once_s']:.2f}x "
        f"({n} customers x {args.orders} past orders, medians of {args.runs})"
    )
    print(json.dumps({"customers": n, "orders": args.orders, **{k: v for k, v in results.items()}}))


if __name__ == "__main__":
    main()
