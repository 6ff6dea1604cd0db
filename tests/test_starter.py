"""The bundled project works as the README says: starter journeys, their tests, the example."""

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


def test_readme_example_simulates_the_three_starter_journeys() -> None:
    done = postflow("simulate", "--events", "examples/events.jsonl")
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    sent = {
        (r["customer_id"], r["journey"], r["step"])
        for r in records
        if r["kind"] == "message" and r["status"] == "sent"
    }
    assert ("c_ann", "order-confirmation", "receipt") in sent
    assert ("c_ann", "review-request", "thanks") in sent  # she left 5 stars
    assert ("c_ann", "replenishment-reminder", "remind") in sent  # 30-day tea
    assert ("c_bob", "review-request", "ask") in sent
    assert ("c_bob", "replenishment-reminder", "remind") not in sent  # a teapot lasts
    assert done.stdout == postflow("simulate", "--events", "examples/events.jsonl").stdout
