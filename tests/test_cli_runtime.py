"""The runtime's commands through the real CLI, as a subprocess, on a SQLite file.

``ingest``, ``event``, ``run --once``, ``history``, ``status`` and ``db upgrade`` as a user
types them: summaries on stderr, records on stdout, located errors for bad input, exit
status 2 for usage mistakes, and an example in every ``--help``. Commands that do not depend
on each other run concurrently to keep the suite quick.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
ENV = {k: v for k, v in os.environ.items() if k not in ("POSTFLOW_CONFIG", "POSTFLOW_DATABASE_URL")}


class Done:
    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr

    def __repr__(self) -> str:
        return f"exit {self.returncode}\nstdout:\n{self.stdout}\nstderr:\n{self.stderr}"


def start(
    cwd: Path, *args: str, stdin: str | None = None
) -> tuple[subprocess.Popen[str], str | None]:
    process = subprocess.Popen(
        [sys.executable, "-m", "postflow", *args],
        cwd=cwd,
        env=ENV,
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return process, stdin


def finish(started: tuple[subprocess.Popen[str], str | None]) -> Done:
    process, stdin = started
    out, err = process.communicate(stdin, timeout=120)
    return Done(process.returncode, out, err)


def postflow(cwd: Path, *args: str, stdin: str | None = None) -> Done:
    return finish(start(cwd, *args, stdin=stdin))


def postflow_all(cwd: Path, *commands: tuple[str, ...]) -> list[Done]:
    """Independent commands, run at the same time."""
    started = [start(cwd, *args) for args in commands]
    return [finish(s) for s in started]


RECEIPT = """\
id: receipt
trigger: {event: order_placed}
steps:
  - id: mail
    email:
      to: "{{ trigger.customer_id }}@example.com"  # `postflow event` carries no profile
      subject: "Order {{ trigger.data.order_id }}"
      body: "Thanks."
      transactional: true
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project directory: one journey, console channels, a SQLite database beside it."""
    (tmp_path / "journeys").mkdir()
    (tmp_path / "journeys" / "receipt.yaml").write_text(RECEIPT, encoding="utf-8")
    (tmp_path / "postflow.yaml").write_text(
        "database: sqlite:///pf.db\ntimezone: UTC\n"
        "channels: {email: {provider: console}, sms: {provider: console}}\n",
        encoding="utf-8",
    )
    return tmp_path


def order(cid: str, oid: str, at: str = "2027-03-01T12:00:00Z", **extra: Any) -> str:
    event = {
        "type": "order_placed",
        "customer_id": cid,
        "at": at,
        "customer": {"email": f"{cid}@example.com"},
        "data": {"order_id": oid, "total": 10},
        **extra,
    }
    return json.dumps(event)


def records(done: Done) -> list[dict[str, Any]]:
    assert done.returncode == 0, done
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_ingest_reports_accepted_and_duplicate_events_on_stderr(project: Path) -> None:
    lines = [order(f"c{n}", f"o{n}", id=f"e{n}") for n in range(3)]
    (project / "events.jsonl").write_text("\n".join(lines) + "\n")
    first = postflow(project, "ingest", "events.jsonl")
    assert first.returncode == 0, first
    assert first.stderr.strip().splitlines()[-1] == "3 accepted, 0 duplicates"
    assert first.stdout == ""
    again = postflow(project, "ingest", "events.jsonl")
    assert again.returncode == 0, again
    assert again.stderr.strip().splitlines()[-1] == "0 accepted, 3 duplicates"


def test_a_bad_events_file_names_every_bad_line_and_stores_nothing(project: Path) -> None:
    good = [order("c1", "o1", id="g1"), order("c2", "o2", id="g2"), order("c3", "o3", id="g3")]
    bad = [
        good[0],
        '{"type": "order_placed", "customer_id": "c9"',  # line 2: broken JSON
        good[1],
        '{"type": "order_placed", "at": "2027-03-01T12:00:00Z"}',  # line 4: no customer_id
        '{"type": "order_placed", "customer_id": "c8", "at": "2027-03-01T12:00:00"}',  # 5: naive
        good[2],
    ]
    (project / "bad.jsonl").write_text("\n".join(bad) + "\n")
    done = postflow(project, "ingest", "bad.jsonl")
    assert done.returncode == 1, done
    located = re.findall(r"^bad\.jsonl:(\d+):(\d+): error: ", done.stderr, re.MULTILINE)
    assert [int(line) for line, _ in located] == [2, 4, 5]
    # Nothing was stored: the good lines are new when the fixed file comes in.
    (project / "good.jsonl").write_text("\n".join(good) + "\n")
    fixed, history = postflow(project, "ingest", "good.jsonl"), postflow(project, "history")
    assert fixed.stderr.strip().splitlines()[-1] == "3 accepted, 0 duplicates"
    assert records(history) == []


def test_ingest_dash_reads_standard_input(project: Path) -> None:
    text = order("c1", "o1", id="e1") + "\n" + order("c2", "o2", id="e2") + "\n"
    done = postflow(project, "ingest", "-", stdin=text)
    assert done.returncode == 0, done
    assert done.stderr.strip().splitlines()[-1] == "2 accepted, 0 duplicates"


def test_event_then_run_once_then_history_shows_the_customers_records(project: Path) -> None:
    data = json.dumps({"order_id": "o7", "total": 12})
    stored = postflow(
        project, "event", "order_placed", "--customer", "c7", "--data", data, "--id", "x7"
    )
    assert stored.returncode == 0, stored
    assert stored.stderr.strip().splitlines()[-1] == "1 accepted, 0 duplicates"
    run = postflow(project, "run", "--once")
    assert run.returncode == 0, run
    assert "Subject: Order o7" in run.stdout  # the console channel sent it
    history = records(postflow(project, "history", "--customer", "c7"))
    assert [(r["kind"], r["customer_id"], r.get("status")) for r in history] == [
        ("enter", "c7", None),
        ("message", "c7", "sent"),
        ("exit", "c7", None),
    ]
    assert history[1]["subject"] == "Order o7"
    assert records(postflow(project, "history", "--customer", "someone-else")) == []


def test_usage_mistakes_exit_2_and_name_the_option(project: Path) -> None:
    not_json, bad_now, now_alone = postflow_all(
        project,
        ("event", "order_placed", "--customer", "c1", "--data", "{not json"),
        ("run", "--once", "--now", "next tuesday"),
        ("run", "--now", "2027-03-01T00:00:00Z"),
    )
    assert not_json.returncode == 2, not_json
    assert "--data" in not_json.stderr
    assert bad_now.returncode == 2, bad_now
    assert "--now" in bad_now.stderr
    assert now_alone.returncode == 2, now_alone
    assert "--once" in now_alone.stderr
    assert "Traceback" not in not_json.stderr + bad_now.stderr + now_alone.stderr


def test_run_once_refuses_journeys_with_errors_and_locates_them(project: Path) -> None:
    (project / "journeys" / "broken.yaml").write_text(
        "id: broken\ntrigger: {event: order_placed}\nsteps:\n  - id: a\n    wait: 3 days\n"
    )
    done = postflow(project, "run", "--once", "--now", "2027-03-01T00:00:00Z")
    assert done.returncode == 1, done
    assert re.search(r"broken\.yaml:5:\d+: error: ", done.stderr), done.stderr
    assert "Traceback" not in done.stderr


RUNTIME_COMMANDS = [
    ("ingest",),
    ("event",),
    ("run",),
    ("history",),
    ("status",),
    ("db", "upgrade"),
]


def test_every_runtime_command_has_help_with_an_example(tmp_path: Path) -> None:
    helps = postflow_all(tmp_path, *[(*command, "--help") for command in RUNTIME_COMMANDS])
    for command, done in zip(RUNTIME_COMMANDS, helps, strict=True):
        assert done.returncode == 0, (command, done)
        assert "Example" in done.stdout, (command, done.stdout)
        assert f"postflow {' '.join(command)}" in done.stdout, command


def test_the_db_group_help_shows_an_example(tmp_path: Path) -> None:
    done = postflow(tmp_path, "db", "--help")
    assert done.returncode == 0, done
    assert "Example" in done.stdout


def test_run_once_writes_what_simulate_prints_for_the_starter_project(tmp_path: Path) -> None:
    """The contract rule itself, through the CLI: ingest + run --once --now T + history gives
    the bytes that simulate --until T prints."""
    until = "2027-04-08T00:00:00Z"
    common = ("--journeys", str(REPO / "journeys"), "--config", str(REPO / "postflow.yaml"))
    db = ("--db", f"sqlite:///{tmp_path / 'starter.db'}")
    events = str(REPO / "examples" / "events.jsonl")
    simulated = postflow(tmp_path, "simulate", "--events", events, "--until", until, *common)
    assert simulated.returncode == 0, simulated
    assert postflow(tmp_path, "ingest", events, *db, *common).returncode == 0
    run = postflow(tmp_path, "run", "--once", "--now", until, *db, *common)
    assert run.returncode == 0, run
    history = postflow(tmp_path, "history", *db, "--config", str(REPO / "postflow.yaml"))
    assert history.returncode == 0, history
    assert history.stdout == simulated.stdout
    assert len(simulated.stdout.splitlines()) >= 15
