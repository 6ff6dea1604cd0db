"""The bundled project works as the README says: the journey library, its tests, the example."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def postflow(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "postflow", *args], cwd=REPO, capture_output=True, text=True
    )


def test_starter_journey_tests_pass() -> None:
    done = postflow("test")
    assert done.returncode == 0, done.stdout + done.stderr
    last = done.stdout.strip().splitlines()[-1]
    passed = int(last.split()[0])
    assert last == f"{passed} passed, 0 failed" and passed >= 10


def test_readme_example_simulates_the_library() -> None:
    done = postflow("simulate", "--events", "examples/events.jsonl")
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    sent = {
        (r["customer_id"], r["journey"], r["step"])
        for r in records
        if r["kind"] == "message" and r["status"] == "sent"
    }
    exits = {(r["customer_id"], r["journey"], r["reason"]) for r in records if r["kind"] == "exit"}
    assert ("c_ann", "order-confirmation", "receipt") in sent
    assert ("c_ann", "shipping-confirmation", "shipped_email") in sent
    assert ("c_ann", "refer-a-friend", "ask") in sent  # she left 5 stars
    assert ("c_ann", "review-request", "filtered") in exits  # ... before she was asked
    assert ("c_ann", "replenishment-reminder", "remind") in sent  # two 30-day teas
    assert ("c_bob", "review-request", "ask") in sent
    assert ("c_bob", "replenishment-reminder", "remind") not in sent  # a teapot lasts
    assert done.stdout == postflow("simulate", "--events", "examples/events.jsonl").stdout
