"""Run a small project through both shells: ``simulate`` and the durable runtime.

Contract §3 and §9: every journey behaves the same in ``simulate`` and in ``ingest`` +
``run --once``; tests of the language call :func:`both_ways` so each case checks that too.
"""

from __future__ import annotations

import io
import json
from typing import Any

import orjson
from conftest import Project

from postflow import durations, engine, simulate
from postflow.channels.registry import build_channels, close_channels
from postflow.ingest import ingest_file
from postflow.runtime.service import Runtime, load_machines
from postflow.store.sql import SqlStore


def both_ways(
    proj: Project, db_url: str, evts: list[dict[str, Any]], until: str | None = None
) -> list[dict[str, Any]]:
    """The records of ``simulate`` after checking the runtime prints the same lines."""
    settings = proj.settings()
    path = proj.root / "events.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in evts), encoding="utf-8")
    machines = load_machines(settings, proj.root / "journeys")
    end = (
        durations.parse_instant(until)
        if until
        else max(durations.parse_instant(e["at"]) for e in evts)
    )
    sim = simulate.Simulation(engine.World.build(machines, settings))
    sim.ingest_file(path)
    simulated = [simulate.record_json(r) for r in sim.stream(end)]
    store = SqlStore.open(db_url, settings, upgrade=True)
    try:
        ingest_file(store, str(path))
        channels = build_channels(settings, console_stream=io.StringIO(), environ={})
        runtime = Runtime(store, settings, machines, channels)
        runtime.run_once(end)
        runtime.close()
        close_channels(channels.values())
        durable = [simulate.record_json(r) for r in store.history()]
    finally:
        store.close()
    assert [orjson.dumps(r) for r in durable] == [orjson.dumps(r) for r in simulated]
    return simulated
