"""Measure `postflow validate` over 500 journey files (target: under 3 s on a 2-core machine).

Usage: python bench/validate_bench.py [N]

Writes N varied journey files (all step kinds, expressions and templates) to a temporary
directory and times the full pipeline `validate` runs (read with positions, JSON Schema,
compile, graph checks), in-process and through the CLI.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from postflow import project

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


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "journeys").mkdir()
        (root / "templates").mkdir()
        for i in range(count):
            (root / "journeys" / f"journey-{i:04d}.yaml").write_text(JOURNEY.format(i=i))
        start = time.perf_counter()
        loaded = project.load_journeys([root / "journeys"], root / "templates")
        in_process = time.perf_counter() - start
        assert not loaded.errors, loaded.errors[:3]
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "postflow", "validate", str(root / "journeys")],
            cwd=root,
            capture_output=True,
            text=True,
        )
        cli = time.perf_counter() - start
        assert done.returncode == 0, done.stderr[-2000:]
    print(f"validate: {count} journey files")
    print(f"  in-process: {in_process:.2f} s ({count / in_process:.0f} files/s)")
    print(f"  CLI (incl. interpreter start): {cli:.2f} s   target: < 3 s")


if __name__ == "__main__":
    main()
