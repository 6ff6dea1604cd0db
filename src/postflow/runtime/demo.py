"""``postflow demo``: the real daemon, on a temporary SQLite file, on a fast clock.

The bundled journeys and example events run through exactly the code ``postflow run`` uses
(store, sweep, dispatcher, console channel); only the clock is scaled, by default one
simulated day per real second, so a month of post-purchase messages plays out in about half
a minute. Nothing is sent anywhere but the terminal, and the temporary database is deleted
at the end.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import TextIO

import sqlalchemy as sa

from postflow import config
from postflow.channels.console import ConsoleChannel
from postflow.ingest import ingest_file
from postflow.runtime.clock import ScaledClock
from postflow.runtime.daemon import Daemon
from postflow.store import schema as t
from postflow.store.sql import SqlStore

DAY = 86_400_000_000


def bundled_project() -> Path:
    """The example project: shipped inside the package (a wheel install), else the
    repository's own files (an editable install or a checkout)."""
    inside = Path(__file__).resolve().parent.parent / "bundled"
    if (inside / "journeys").is_dir():
        return inside
    repo = Path(__file__).resolve().parents[3]
    if (repo / "journeys").is_dir() and (repo / "examples").is_dir():
        return repo
    raise FileNotFoundError("the bundled example project is missing from this installation")


def _copy_project(source: Path, target: Path) -> Path:
    for name in ("journeys", "templates"):
        shutil.copytree(source / name, target / name, ignore=shutil.ignore_patterns("*.test.yaml"))
    for name in ("catalog.yaml", "postflow.yaml"):
        if (source / name).is_file():
            shutil.copy(source / name, target / name)
    return target / "postflow.yaml"


def run_demo(
    *,
    speed: float = 86_400.0,
    days: float = 60.0,
    out: TextIO | None = None,
    poll: float = 0.05,
) -> dict[str, Counter[str]]:
    """Play the bundled journeys over the example events; returns counts per journey."""
    source = bundled_project()
    with tempfile.TemporaryDirectory(prefix="postflow-demo-") as tmp:
        root = Path(tmp)
        config_path = _copy_project(source, root)
        settings = config.load_settings(config_path)
        url = f"sqlite:///{root / 'demo.db'}"
        store = SqlStore.open(url, settings)
        try:
            ingest_file(store, str(source / "examples" / "events.jsonl"))
            with store.engine.connect() as conn:
                first, last = conn.execute(
                    sa.select(sa.func.min(t.events.c.at), sa.func.max(t.events.c.at))
                ).one()
            clock = ScaledClock(first - 60_000_000, speed)
            end = last + int(days * DAY)

            def finished() -> bool:
                now = clock.now()
                if now > end:
                    return True
                if now <= last:
                    return False
                with store.engine.connect() as conn:
                    due = conn.execute(sa.select(sa.func.min(t.customers.c.due_at))).scalar()
                    queued = conn.execute(
                        sa.select(sa.func.count())
                        .select_from(t.outbox)
                        .where(t.outbox.c.status == "queued")
                    ).scalar_one()
                return due is None and queued == 0

            console = ConsoleChannel(out)
            channels = {"email": console, "sms": console, "webhook": console}
            daemon = Daemon(
                store,
                settings,
                settings.journeys,
                channels,
                clock=clock,
                poll=poll,
                stop_when=finished,
                log_level=logging.WARNING,
            )
            daemon.run()
            return summarise(store)
        finally:
            store.close()


def summarise(store: SqlStore) -> dict[str, Counter[str]]:
    """Counts per journey: entries, messages by status (and reason), exits by reason."""
    counts: dict[str, Counter[str]] = {}
    for rec in store.history():
        c = counts.setdefault(rec["journey"], Counter())
        if rec["kind"] == "message":
            key = f"{rec['channel']} {rec['status']}"
            if rec.get("reason"):
                key += f" ({rec['reason']})"
            c[key] += 1
        elif rec["kind"] == "exit":
            c[f"exit {rec['reason']}"] += 1
        else:
            c[rec["kind"]] += 1
    return counts


def format_summary(counts: dict[str, Counter[str]]) -> str:
    lines = ["", "Summary (from the demo's database):"]
    for journey in sorted(counts):
        parts = ", ".join(f"{k}: {v}" for k, v in sorted(counts[journey].items()))
        lines.append(f"  {journey}: {parts}")
    return "\n".join(lines)
