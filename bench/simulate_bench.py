"""Measure simulate throughput: customers/s through a 4-step journey with two rendered emails
(target: >= 10,000 customers/s on a 2-core machine).

Usage: python bench/simulate_bench.py [CUSTOMERS]

Builds the journey below, one `order_delivered` event per customer (20,000 by default), and
times event parsing + the virtual-time run (every customer enters, gets two rendered emails
three days apart and completes). Prints the figures; asserts only that the run did the work.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import orjson

from postflow import config, engine, events, project, simulate

REPEATS = 3

JOURNEY = """\
id: thanks
trigger: {event: order_delivered}
steps:
  - id: hello
    email:
      subject: "Thanks for your order {{ trigger.data.order_id }}, {{ customer.first_name }}!"
      body: "Your {{ trigger.data.items[0].name }} is here. Enjoy it."
  - id: pause
    wait: 3d
  - id: tips
    email:
      subject: "How to get the most from your {{ trigger.data.items[0].name }}"
      body: "Hi {{ customer.first_name }}, three tips for order {{ trigger.data.order_id }}."
  - id: done
    set: {customer.got_tips: "true"}
"""


def main() -> None:
    customers = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "journeys").mkdir()
        (root / "journeys" / "thanks.yaml").write_text(JOURNEY)
        # An explicit configuration (not whatever postflow.yaml the working directory has),
        # with a frequency cap so the compliance path is measured too.
        (root / "postflow.yaml").write_text(
            "timezone: UTC\nlimits: {email: {max: 3, per: 1d}}\n"
            'quiet_hours: {start: "21:00", end: "09:00", channels: [sms]}\n'
        )
        settings = config.load_settings(root / "postflow.yaml")
        machines = project.require_journeys([root / "journeys"], root / "templates")
    world = engine.World.build(machines, settings)
    lines = [
        orjson.dumps(
            {
                "id": f"e{i}",
                "type": "order_delivered",
                "customer_id": f"c{i}",
                "at": f"2027-01-01T{(i // 3600) % 24:02d}:{(i // 60) % 60:02d}:{i % 60:02d}Z",
                "customer": {"email": f"c{i}@example.com", "first_name": f"Name{i}"},
                "data": {"order_id": f"o{i}", "items": [{"sku": "TEA-1", "name": "Green tea"}]},
            }
        ).decode()
        for i in range(customers)
    ]
    text = "\n".join(lines)
    runs = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        parsed = events.read_events("bench.jsonl", text=text)
        parse_s = time.perf_counter() - start
        start = time.perf_counter()
        records = simulate.simulate(world, parsed)
        run_s = time.perf_counter() - start
        start = time.perf_counter()
        out = simulate.format_records(records)
        format_s = time.perf_counter() - start
        messages = sum(1 for r in records if r["kind"] == "message" and r["status"] == "sent")
        assert messages == 2 * customers, messages
        runs.append((parse_s + run_s + format_s, parse_s, run_s, format_s))
    runs.sort()
    total, parse_s, run_s, format_s = runs[0]
    median = runs[len(runs) // 2][0]
    print(
        f"simulate: {customers} customers, {len(records)} records, {len(out) / 1e6:.1f} MB output"
    )
    print(
        f"  best of {REPEATS}: parse events {parse_s:.2f} s, run {run_s:.2f} s, format {format_s:.2f} s"
    )
    print(
        f"  throughput: {customers / total:,.0f} customers/s end to end, best "
        f"(median {customers / median:,.0f}/s; engine only {customers / run_s:,.0f}/s)"
        "   target: >= 10,000 customers/s"
    )


if __name__ == "__main__":
    main()
