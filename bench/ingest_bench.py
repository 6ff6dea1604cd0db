"""Ingest throughput on SQLite, against raw sqlite3 ``executemany`` of the same rows.

Usage: python bench/ingest_bench.py [--events N] [--runs R] [--keep DIR]   (with the venv)

N events (default 200,000) of the starter workload (starter_events.py's customers, as many
as it takes, sorted by time and cut at N) are written to one JSON Lines file. Then, R times
(default 3), each into a fresh SQLite file:

- cli: ``postflow ingest FILE --db sqlite:///... --config CFG`` as a child process; wall and
  CPU seconds of the whole process (interpreter start-up, imports and the schema migration
  of a new database included). events/s = N / wall seconds. The CLI's fixed cost is measured
  too, on a one-event file into a fresh database, and printed beside it.
- library: ``ingest_file(store, FILE)`` in this process on a store already opened (and
  migrated) with ``SqlStore.open(url, settings, upgrade=True)``: reading, validating and
  storing the events, in one transaction. events/s = N / seconds of that one call.
- raw: the same N rows, already built in memory (event id, customer id, type, ``at`` in epoch
  microseconds, the event's JSON line as the body), inserted with one sqlite3
  ``executemany`` and one commit into ``events(seq INTEGER PRIMARY KEY, event_id TEXT
  UNIQUE, customer_id TEXT, type TEXT, at INTEGER, body BLOB)``, with the pragmas postflow
  uses (WAL, synchronous=NORMAL). This is the baseline of the ratio: what the database
  itself costs for these rows, with no parsing, validation or bookkeeping.
- two more raw figures for context (not baselines): ``raw+indexes`` adds postflow's two
  secondary indexes on events (pending events by customer, events by customer and time),
  and ``raw+parse`` also reads the file and parses each line with orjson and its ``at`` with
  postflow's parser inside the timing (still no validation and no customers table).

Prints the medians, the ratios library/raw and cli/raw (median of the per-run ratios: the
figures of one run are taken minutes apart at most, so drift on a busy machine is shared),
the target beside them (50,000 events/s, about 11% of raw executemany on the machine that
set it), and a final JSON line. It checks that every event was stored (the count of rows and
the ``N accepted`` line); it never judges speed. Other processes on the machine (tests run by
other people) change the figures: the load average is printed at the start and the end.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
import starter_events
from measure import POSTFLOW, Usage, median

from postflow import config, durations
from postflow.ingest import ingest_file
from postflow.store.sql import SqlStore

TARGET = 50_000
CONFIG = "timezone: UTC\ndefault_region: US\n"
RAW_TABLE = """CREATE TABLE events (
    seq INTEGER PRIMARY KEY,
    event_id TEXT UNIQUE,
    customer_id TEXT NOT NULL,
    type TEXT NOT NULL,
    at INTEGER NOT NULL,
    body BLOB NOT NULL
)"""
RAW_INDEXES = (
    "CREATE INDEX ix_events_pending ON events (customer_id, seq) WHERE NOT applied",
    "CREATE INDEX ix_events_customer ON events (customer_id, at)",
)
INSERT = "INSERT INTO events (event_id, customer_id, type, at, body) VALUES (?, ?, ?, ?, ?)"


def write_events(path: Path, n: int, seed: int = 1) -> int:
    """The first N events (by time) of as many starter customers as it takes; returns the
    number of customers."""
    rng = random.Random(seed)
    rows: list[tuple[Any, dict[str, Any]]] = []
    customers = 0
    while len(rows) < n:
        rows.extend(starter_events.customer_events(rng, customers))
        customers += 1
    rows.sort(key=lambda row: row[0])
    with path.open("wb") as f:
        for _, event in rows[:n]:
            f.write(orjson.dumps(event) + b"\n")
    return customers


def raw_rows(path: Path) -> list[tuple[str, str, str, int, bytes]]:
    with path.open("rb") as f:
        return [raw_row(line) for line in f]


def raw_row(line: bytes) -> tuple[str, str, str, int, bytes]:
    obj = orjson.loads(line)
    at = durations.parse_instant(obj["at"])
    return (obj["id"], obj["customer_id"], obj["type"], at, line.rstrip(b"\n"))


def raw_connect(db: Path, indexes: bool) -> sqlite3.Connection:
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    table = RAW_TABLE
    if indexes:  # the columns postflow's indexes need
        table = table.replace("body BLOB NOT NULL", "body BLOB NOT NULL, applied INTEGER DEFAULT 0")
    conn.execute(table)
    for ddl in RAW_INDEXES if indexes else ():
        conn.execute(ddl)
    return conn


def raw_insert(
    db: Path, rows: list[tuple[str, str, str, int, bytes]], indexes: bool
) -> tuple[float, float]:
    """Wall and CPU seconds for one executemany of prebuilt rows and its commit."""
    conn = raw_connect(db, indexes)
    try:
        t0, c0 = time.perf_counter(), time.process_time()
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(INSERT, rows)
        conn.execute("COMMIT")
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        count = conn.execute("SELECT count(*) FROM events").fetchone()[0]
    finally:
        conn.close()
    if count != len(rows):
        sys.exit(f"error: raw insert stored {count} rows of {len(rows)}")
    return seconds, cpu


def raw_parse_insert(db: Path, events: Path, n: int) -> float:
    """Seconds to read the file, parse every line (orjson, postflow's instant parser) and
    insert the rows with postflow's indexes, in one transaction."""
    conn = raw_connect(db, indexes=True)
    try:
        t0 = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        with events.open("rb") as f:
            conn.executemany(INSERT, map(raw_row, f))
        conn.execute("COMMIT")
        seconds = time.perf_counter() - t0
        count = conn.execute("SELECT count(*) FROM events").fetchone()[0]
    finally:
        conn.close()
    if count != n:
        sys.exit(f"error: raw parse+insert stored {count} rows of {n}")
    return seconds


def run_cli(cmd: list[str]) -> tuple[Usage, str]:
    """Run ``cmd`` (stdout discarded); its usage and its stderr."""
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        err.seek(0)
        text = err.read().decode("utf-8", "replace")
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"error: {' '.join(cmd)} failed:\n{text}")
    return Usage(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024), text


def accepted(stderr: str) -> int:
    match = re.search(r"(\d+) accepted", stderr)
    return int(match.group(1)) if match else -1


def stored_events(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])
    finally:
        conn.close()


def fresh(directory: Path, name: str) -> Path:
    for old in directory.glob(f"{name}*"):
        old.unlink()
    return directory / name


def one_run(root: Path, events: Path, one: Path, cfg: Path, settings: Any, n: int) -> dict:
    rows = raw_rows(events)  # built outside every timing
    # cli: the whole process, on a fresh database
    db = fresh(root, "cli.sqlite")
    cli, text = run_cli(
        [*POSTFLOW, "ingest", str(events), "--db", f"sqlite:///{db}", "--config", str(cfg)]
    )
    if accepted(text) != n or stored_events(db) != n:
        sys.exit(
            f"error: postflow ingest stored {stored_events(db)} of {n} events ({text.strip()})"
        )
    db = fresh(root, "one.sqlite")
    fixed, _ = run_cli(
        [*POSTFLOW, "ingest", str(one), "--db", f"sqlite:///{db}", "--config", str(cfg)]
    )
    # library: ingest_file on an opened, migrated store
    db = fresh(root, "lib.sqlite")
    store = SqlStore.open(f"sqlite:///{db}", settings, upgrade=True)
    try:
        t0, c0 = time.perf_counter(), time.process_time()
        result = ingest_file(store, str(events))
        lib, lib_cpu = time.perf_counter() - t0, time.process_time() - c0
    finally:
        store.close()
    if result.accepted != n or stored_events(db) != n:
        sys.exit(f"error: ingest_file accepted {result.accepted} of {n} events")
    raw, raw_cpu = raw_insert(fresh(root, "raw.sqlite"), rows, indexes=False)
    raw_ix, _ = raw_insert(fresh(root, "rawix.sqlite"), rows, indexes=True)
    raw_parse = raw_parse_insert(fresh(root, "rawparse.sqlite"), events, n)
    for name in ("cli", "one", "lib", "raw", "rawix", "rawparse"):
        fresh(root, f"{name}.sqlite")
    return {
        "cli": cli.wall,
        "cli_cpu": cli.cpu,
        "cli_fixed": fixed.wall,
        "lib": lib,
        "lib_cpu": lib_cpu,
        "raw": raw,
        "raw_cpu": raw_cpu,
        "raw_ix": raw_ix,
        "raw_parse": raw_parse,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000, help="events, default 200,000")
    parser.add_argument("--runs", type=int, default=3, help="repetitions, default 3")
    parser.add_argument("--keep", type=Path, default=None, help="work in DIR and keep its files")
    args = parser.parse_args()
    if args.events < 1 or args.runs < 1:
        parser.error("--events and --runs must be at least 1")
    n = args.events
    root = args.keep or Path(tempfile.mkdtemp(prefix="pf_bench_ingest_"))
    root.mkdir(parents=True, exist_ok=True)
    load_start = os.getloadavg()
    try:
        events = root / "events.jsonl"
        customers = write_events(events, n)
        one = root / "one.jsonl"
        with events.open("rb") as f:
            one.write_bytes(f.readline())
        cfg = root / "postflow.yaml"
        cfg.write_text(CONFIG)
        settings = config.load_settings(str(cfg))
        size = events.stat().st_size
        print(
            f"ingest bench: {n:,} events of {customers:,} starter customers "
            f"({size / 2**20:.1f} MiB), {args.runs} runs; {os.cpu_count()} CPUs, "
            f"load average {load_start[0]:.2f}"
        )
        runs = [one_run(root, events, one, cfg, settings, n) for _ in range(args.runs)]
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    load_end = os.getloadavg()

    def med(key: str) -> float:
        return median([r[key] for r in runs])

    rate = {k: n / med(k) for k in ("cli", "lib", "raw", "raw_ix", "raw_parse")}
    ratio_lib = median([r["raw"] / r["lib"] for r in runs])
    ratio_cli = median([r["raw"] / r["cli"] for r in runs])
    ratio_lib_cpu = median([r["raw_cpu"] / r["lib_cpu"] for r in runs])
    print(f"median of {args.runs}:")
    print(
        f"  postflow ingest (CLI)  {med('cli'):6.2f} s wall {med('cli_cpu'):6.2f} s CPU  "
        f"{rate['cli']:>9,.0f} events/s  (fixed cost: {med('cli_fixed'):.2f} s for one event)"
    )
    print(
        f"  ingest_file (library)  {med('lib'):6.2f} s wall {med('lib_cpu'):6.2f} s CPU  "
        f"{rate['lib']:>9,.0f} events/s  ({n / med('lib_cpu'):,.0f} per CPU second)"
    )
    print(
        f"  raw executemany        {med('raw'):6.2f} s wall {med('raw_cpu'):6.2f} s CPU  "
        f"{rate['raw']:>9,.0f} rows/s    ({n / med('raw_cpu'):,.0f} per CPU second)"
    )
    print(
        f"  raw + 2 indexes        {med('raw_ix'):6.2f} s       {'':13}{rate['raw_ix']:>9,.0f} rows/s"
    )
    print(
        f"  raw + 2 ix + parsing   {med('raw_parse'):6.2f} s       {'':13}{rate['raw_parse']:>9,.0f} rows/s"
    )
    print(
        f"  library/raw {100 * ratio_lib:.1f}% (CPU seconds: {100 * ratio_lib_cpu:.1f}%), "
        f"CLI/raw {100 * ratio_cli:.1f}% "
        f"(target: >= {TARGET:,} events/s, about 11% of raw)"
    )
    print(f"  load average {load_end[0]:.2f} at the end (other processes share the machine)")
    print(
        json.dumps(
            {
                "bench": "ingest",
                "events": n,
                "customers": customers,
                "runs": args.runs,
                "cli_events_per_s": round(rate["cli"], 1),
                "cli_seconds": round(med("cli"), 3),
                "cli_cpu_seconds": round(med("cli_cpu"), 3),
                "cli_fixed_seconds": round(med("cli_fixed"), 3),
                "lib_events_per_s": round(rate["lib"], 1),
                "lib_seconds": round(med("lib"), 3),
                "lib_cpu_seconds": round(med("lib_cpu"), 3),
                "raw_rows_per_s": round(rate["raw"], 1),
                "raw_seconds": round(med("raw"), 3),
                "raw_cpu_seconds": round(med("raw_cpu"), 3),
                "raw_indexed_rows_per_s": round(rate["raw_ix"], 1),
                "raw_parse_rows_per_s": round(rate["raw_parse"], 1),
                "ratio_lib_raw": round(ratio_lib, 4),
                "ratio_cli_raw": round(ratio_cli, 4),
                "ratio_lib_raw_cpu": round(ratio_lib_cpu, 4),
                "target_events_per_s": TARGET,
                "cpus": os.cpu_count(),
                "loadavg": [round(load_start[0], 2), round(load_end[0], 2)],
            }
        )
    )


if __name__ == "__main__":
    main()
