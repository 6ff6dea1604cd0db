"""The durable runtime's due-step rate: `postflow run --once` against simulate and the naive
designs, on SQLite and (with --pg) on PostgreSQL with one and two workers.

Usage: python bench/runtime_bench.py [--customers C] [--runs R] [--workload review|starter]
                                     [--pg] [--skip-sqlite] [--split] [--naive-n N]
                                     [--procrastinate-n N] [--pg-dsn DSN] [--keep DIR]

The workload is the review project of review_journey.py for C customers (default 20,000:
33,341 events; every customer enters, waits two days, gets a review request, waits up to
five days for a review and gets one of three follow-ups, so 2 x C emails), or with
``--workload starter`` the repository's starter journeys over starter_events.py's C
customers. The channels are files (``provider: file`` for email and SMS), so delivery costs
one appended line per message and no console printing.

**Due step.** One record of kind ``enter``, ``message`` (whatever its status) or ``exit``
written by the run: one journey step carried out, with its rendering and, for a sent message,
its outbox row and its delivery through the channel. ``goal`` records are counted apart and
not included. The review workload has 4 due steps per customer (enter, two messages, exit).
due steps/s = due steps / wall seconds of the ``run --once`` process(es), start-up, journey
loading, sweep and dispatch included. messages/s (sent messages only) is printed too: it is
the figure closest to the naive baselines' unit of work (format one message and queue it).

Each of R runs (default 3) does, in turn:

SQLite (skipped with --skip-sqlite):
1. ``postflow ingest EVENTS --db sqlite:///FRESH`` (timed, whole process);
2. ``postflow run --once --now T`` on that database, where T is 400 days after the last
   event, so every timer is due (timed, whole process);
3. ``postflow simulate`` on the same events file, journeys and configuration (timed, whole
   process, its records written to a file);
4. ``bench/naive_scheduler.py --n N`` (default 5,000; its fire rate, parsed from its JSON);
5. with --split: the same database work through the library in a fresh process
   (``Runtime.sweep`` then ``Runtime.dispatch``, timed apart), to show where run's time goes.

PostgreSQL (with --pg; a fresh database per measurement, dropped after it):
1. one worker: ``postflow db upgrade``, ``postflow ingest`` (timed), ``run --once --now T``;
2. two workers: the same ingest into another fresh database, then two ``run --once --now T``
   processes started together (each with its own output files), each claiming batches of
   customers (``FOR UPDATE SKIP LOCKED`` and leases); wall seconds until both have exited;
3. with --split: the library's sweep and dispatch timed apart, on a third fresh database;
4. ``bench/procrastinate_drain.py --n N`` (default 5,000; its drain rate).

Ratios are taken run by run and their median printed: run's due steps/s over the naive
scheduler's fire rate (target >= 20), (ingest + run) / simulate and run / simulate in wall
seconds (target <= 2 for the first), PostgreSQL one worker over procrastinate's drain rate
(target >= 20), two workers over one (target >= 1.3). Then one JSON line.

Before quoting a figure it checks that the work was done: the run's records have, kind by
kind, the counts simulate prints for the same events; every sent message has an outbox row
with status ``sent`` and exactly one line in the channel files (so two workers sent nothing
twice). It exits non-zero otherwise. It never judges speed. The machine's CPU count and load
average are printed: on a shared machine (other people's tests) wall seconds drift; CPU
seconds are printed beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import review_journey
import starter_events
import yaml
from measure import POSTFLOW, STARTER, median

BENCH = Path(__file__).resolve().parent
DAY_US = 86_400 * 1_000_000
DUE_KINDS = ("enter", "message", "exit")
DSN = "host=127.0.0.1 port=5432 user=root dbname=test"


# -- processes -----------------------------------------------------------------------------
@dataclass
class Proc:
    """A finished child: wall and CPU seconds, its stdout and stderr."""

    wall: float
    cpu: float
    out: str
    err: str


def _spawn(cmd: list[str], cwd: Path, out: Any) -> tuple[subprocess.Popen[bytes], Any, float]:
    err = tempfile.TemporaryFile()
    start = time.perf_counter()
    return subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=err), err, start


def _finish(proc: subprocess.Popen[bytes], err: Any, start: float, cmd: list[str]) -> Proc:
    """Wait for ``proc`` (its own rusage, os.wait4); exits if it failed."""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    err.seek(0)
    err_text = err.read().decode("utf-8", "replace")
    err.close()
    if proc.returncode != 0:
        sys.exit(f"error: {' '.join(cmd)} exited with status {proc.returncode}:\n{err_text}")
    return Proc(wall, usage.ru_utime + usage.ru_stime, "", err_text)


def _read(out: Any) -> str:
    out.seek(0)
    return out.read().decode("utf-8", "replace")


def run(cmd: list[str], cwd: Path, stdout: Path | None = None) -> Proc:
    """Run one child to its end; its stdout to the file ``stdout``, else captured."""
    out = open(stdout, "wb") if stdout is not None else tempfile.TemporaryFile()
    try:
        proc, err, start = _spawn(cmd, cwd, out)
        done = _finish(proc, err, start, cmd)
        if stdout is None:
            done.out = _read(out)
        return done
    finally:
        out.close()


def run_together(cmds: list[list[str]], cwd: Path) -> tuple[float, list[Proc]]:
    """Start every command at once; wall seconds until the last exits, and each child."""
    outs = [tempfile.TemporaryFile() for _ in cmds]
    try:
        start = time.perf_counter()
        started = [_spawn(cmd, cwd, out) for cmd, out in zip(cmds, outs, strict=True)]
        done = [_finish(p, err, t0, cmd) for (p, err, t0), cmd in zip(started, cmds, strict=True)]
        wall = time.perf_counter() - start
        for d, out in zip(done, outs, strict=True):
            d.out = _read(out)
    finally:
        for out in outs:
            out.close()
    return wall, done


def last_json(text: str) -> dict[str, Any]:
    lines = [line for line in text.splitlines() if line.startswith("{")]
    if not lines:
        sys.exit(f"error: no JSON line in:\n{text}")
    return json.loads(lines[-1])


def advanced(err: str) -> dict[str, int]:
    """The summary line of ``run --once`` (stderr)."""
    m = re.search(r"(\d+) customer\(s\) advanced, (\d+) record\(s\), (\d+) message\(s\) sent", err)
    if m is None:
        sys.exit(f"error: no summary from run --once:\n{err}")
    return {"customers": int(m[1]), "records": int(m[2]), "sent": int(m[3])}


# -- the workload --------------------------------------------------------------------------
@dataclass
class Workload:
    root: Path
    events: Path
    journeys: Path
    configs: list[Path]  # one per worker, each with its own channel files
    now: str
    customers: int
    count: int


def channel_config(base: dict[str, Any], root: Path, worker: int) -> Path:
    doc = dict(base)
    doc["channels"] = {
        "email": {"provider": "file", "path": f"out-w{worker}-email.jsonl"},
        "sms": {"provider": "file", "path": f"out-w{worker}-sms.jsonl"},
    }
    path = root / f"postflow-w{worker}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    return path


def build_workload(root: Path, kind: str, customers: int) -> Workload:
    if kind == "review":
        events = review_journey.write_project(root, customers)
        base = dict(review_journey.CONFIG)
        journeys = root / "journeys"
    else:
        events = root / "events.jsonl"
        starter_events.write_events(events, customers)
        base = yaml.safe_load((STARTER / "postflow.yaml").read_text())
        base.pop("database", None)
        for key in ("journeys", "templates", "catalog"):
            base[key] = str(STARTER / base[key])
        journeys = STARTER / "journeys"
    configs = [channel_config(base, root, w) for w in (1, 2)]
    last = 0
    count = 0
    from postflow import durations

    with events.open("rb") as f:
        for line in f:
            count += 1
            last = max(last, durations.parse_instant(orjson.loads(line)["at"]))
    now = durations.format_instant(last + 400 * DAY_US)
    return Workload(root, events, journeys, configs, now, customers, count)


def channel_lines(root: Path, workers: tuple[int, ...]) -> tuple[int, int]:
    """Lines in the channel files of these workers, and distinct message ids among them."""
    lines = 0
    ids: set[str] = set()
    for w in workers:
        for path in root.glob(f"out-w{w}-*.jsonl"):
            with path.open("rb") as f:
                for line in f:
                    lines += 1
                    ids.add(orjson.loads(line)["message_id"])
    return lines, len(ids)


def clear_channels(root: Path) -> None:
    for path in root.glob("out-w*-*.jsonl"):
        path.unlink()


# -- the commands --------------------------------------------------------------------------
def ingest_cmd(w: Workload, url: str) -> list[str]:
    return [*POSTFLOW, "ingest", str(w.events), "--db", url, "--config", str(w.configs[0])]


def run_cmd(w: Workload, url: str, worker: int = 1) -> list[str]:
    return [
        *POSTFLOW,
        "run",
        "--once",
        "--now",
        w.now,
        "--db",
        url,
        "--journeys",
        str(w.journeys),
        "--config",
        str(w.configs[worker - 1]),
    ]


def simulate_cmd(w: Workload) -> list[str]:
    return [
        *POSTFLOW,
        "simulate",
        "--events",
        str(w.events),
        "--journeys",
        str(w.journeys),
        "--config",
        str(w.configs[0]),
    ]


def simulated_kinds(path: Path) -> tuple[Counter[str], int]:
    kinds: Counter[str] = Counter()
    sent = 0
    with path.open("rb") as f:
        for line in f:
            rec = orjson.loads(line)
            kinds[rec["kind"]] += 1
            if rec["kind"] == "message" and rec.get("status") == "sent":
                sent += 1
    return kinds, sent


def db_counts(url: str) -> tuple[Counter[str], int, Counter[str]]:
    """Records by kind, sent message records, outbox rows by status."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            kinds = Counter(
                {
                    k: n
                    for k, n in conn.execute(
                        sa.text("SELECT kind, count(*) FROM records GROUP BY kind")
                    )
                }
            )
            sent = 0
            for (body,) in conn.execute(sa.text("SELECT body FROM records WHERE kind = 'message'")):
                if orjson.loads(body).get("status") == "sent":
                    sent += 1
            outbox = Counter(
                {
                    s: n
                    for s, n in conn.execute(
                        sa.text("SELECT status, count(*) FROM outbox GROUP BY status")
                    )
                }
            )
    finally:
        engine.dispose()
    return kinds, sent, outbox


def check_run(
    label: str, url: str, w: Workload, expected: Counter[str], workers: tuple[int, ...]
) -> tuple[int, int]:
    """The run did the work simulate does; returns (due steps, sent messages)."""
    kinds, sent, outbox = db_counts(url)
    if kinds != expected:
        sys.exit(f"error: {label}: records by kind {dict(kinds)}, simulate has {dict(expected)}")
    if outbox != Counter({"sent": sent}):
        sys.exit(f"error: {label}: outbox rows by status {dict(outbox)}, {sent} messages sent")
    lines, distinct = channel_lines(w.root, workers)
    if lines != sent or distinct != sent:
        sys.exit(
            f"error: {label}: {lines} lines ({distinct} distinct message ids) in the channel "
            f"files for {sent} sent messages"
        )
    return sum(kinds[k] for k in DUE_KINDS), sent


# -- SQLite --------------------------------------------------------------------------------
def sqlite_run(w: Workload, args: argparse.Namespace, expected: list[Any]) -> dict[str, Any]:
    db = w.root / "bench.sqlite"
    for old in w.root.glob("bench.sqlite*"):
        old.unlink()
    url = f"sqlite:///{db}"
    clear_channels(w.root)
    ingest = run(ingest_cmd(w, url), w.root)
    once = run(run_cmd(w, url), w.root)
    sim = run(simulate_cmd(w), w.root, stdout=w.root / "simulated.jsonl")
    kinds, sim_sent = simulated_kinds(w.root / "simulated.jsonl")
    if not expected:
        expected.extend([kinds, sim_sent])
    elif kinds != expected[0]:
        sys.exit("error: simulate printed different records from one run to the next")
    steps, sent = check_run("sqlite run --once", url, w, kinds, (1,))
    if sent != sim_sent:
        sys.exit(f"error: run --once sent {sent} messages, simulate {sim_sent}")
    naive = last_json(
        run(
            [
                sys.executable,
                str(BENCH / "naive_scheduler.py"),
                "--n",
                str(args.naive_n),
                "--json-only",
            ],
            w.root,
        ).out
    )
    result: dict[str, Any] = {
        "ingest": ingest.wall,
        "ingest_cpu": ingest.cpu,
        "run": once.wall,
        "run_cpu": once.cpu,
        "simulate": sim.wall,
        "simulate_cpu": sim.cpu,
        "steps": steps,
        "sent": sent,
        "naive": naive["fire_per_s"],
    }
    if args.split:
        for old in w.root.glob("bench.sqlite*"):
            old.unlink()
        clear_channels(w.root)
        run(ingest_cmd(w, url), w.root)
        result["split"] = library_split(w, url)
    for old in w.root.glob("bench.sqlite*"):
        old.unlink()
    return result


def library_split(w: Workload, url: str) -> dict[str, Any]:
    """Sweep and dispatch timed apart, through the library in a fresh process."""
    child = run(
        [
            sys.executable,
            str(Path(__file__).resolve()),
            "--library-child",
            url,
            str(w.configs[0]),
            str(w.journeys),
            w.now,
        ],
        w.root,
    )
    return last_json(child.out)


def library_child(url: str, config_path: str, journeys: str, now: str) -> None:
    """Hidden mode (--library-child): run --once through the library, sweep and dispatch
    timed apart, in this fresh process; prints one JSON line."""
    from postflow import config, durations
    from postflow.channels.registry import build_channels, close_channels
    from postflow.runtime import service
    from postflow.store.sql import SqlStore

    t0 = time.perf_counter()
    settings = config.load_settings(config_path)
    store = SqlStore.open(url, settings)
    machines = service.load_machines(settings, Path(journeys))
    channels = build_channels(settings)
    runtime = service.Runtime(store, settings, machines, channels)
    t1, c1 = time.perf_counter(), time.process_time()
    swept = runtime.sweep(durations.parse_instant(now))
    t2, c2 = time.perf_counter(), time.process_time()
    sent = runtime.dispatch()
    t3, c3 = time.perf_counter(), time.process_time()
    close_channels(channels.values())
    store.close()
    print(
        json.dumps(
            {
                "open_seconds": round(t1 - t0, 3),
                "sweep_seconds": round(t2 - t1, 3),
                "sweep_cpu_seconds": round(c2 - c1, 3),
                "dispatch_seconds": round(t3 - t2, 3),
                "dispatch_cpu_seconds": round(c3 - c2, 3),
                "customers": swept.customers,
                "records": swept.records,
                "sent": sent.sent,
            }
        )
    )


# -- PostgreSQL ----------------------------------------------------------------------------
class PgDatabases:
    """Fresh databases on the server of ``dsn``, dropped at the end."""

    def __init__(self, dsn: str) -> None:
        import psycopg

        self.dsn = dsn
        self.admin = psycopg.connect(dsn, autocommit=True)
        self.params = psycopg.conninfo.conninfo_to_dict(dsn)
        self.made: list[str] = []
        row = self.admin.execute("SHOW server_version").fetchone()
        self.version = row[0] if row else "?"

    def fresh(self, tag: str) -> str:
        from psycopg import sql

        name = f"pf_bench_runtime_{os.getpid()}_{tag}"
        self.drop(name)
        self.admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self.made.append(name)
        p = self.params
        user = p.get("user", "")
        password = f":{p['password']}" if p.get("password") else ""
        auth = f"{user}{password}@" if user else ""
        host = p.get("host", "127.0.0.1")
        port = p.get("port", "5432")
        return f"postgresql+psycopg://{auth}{host}:{port}/{name}"

    def drop(self, name: str) -> None:
        from psycopg import sql

        self.admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )

    def close(self) -> None:
        for name in self.made:
            self.drop(name)
        self.admin.close()


def pg_run(
    w: Workload, args: argparse.Namespace, pg: PgDatabases, expected: Counter[str], rep: int
) -> dict[str, Any]:
    result: dict[str, Any] = {}
    # one worker
    url = pg.fresh(f"{rep}_one")
    clear_channels(w.root)
    run([*POSTFLOW, "db", "upgrade", "--db", url, "--config", str(w.configs[0])], w.root)
    ingest = run(ingest_cmd(w, url), w.root)
    once = run(run_cmd(w, url), w.root)
    steps, sent = check_run("postgresql, one worker", url, w, expected, (1,))
    pg.drop(url.rsplit("/", 1)[1])
    result.update(ingest=ingest.wall, one=once.wall, one_cpu=once.cpu, steps=steps, sent=sent)
    # two workers
    url = pg.fresh(f"{rep}_two")
    clear_channels(w.root)
    run([*POSTFLOW, "db", "upgrade", "--db", url, "--config", str(w.configs[0])], w.root)
    run(ingest_cmd(w, url), w.root)
    wall, procs = run_together([run_cmd(w, url, 1), run_cmd(w, url, 2)], w.root)
    steps2, _ = check_run("postgresql, two workers", url, w, expected, (1, 2))
    if steps2 != steps:
        sys.exit(f"error: two workers wrote {steps2} due steps, one worker {steps}")
    pg.drop(url.rsplit("/", 1)[1])
    shares = [advanced(p.err) for p in procs]
    result.update(
        two=wall,
        two_cpu=[p.cpu for p in procs],
        two_walls=[p.wall for p in procs],
        shares=[s["customers"] for s in shares],
        sent_shares=[s["sent"] for s in shares],
    )
    if args.split:  # the library, sweep and dispatch timed apart, on a third database
        url = pg.fresh(f"{rep}_split")
        clear_channels(w.root)
        run([*POSTFLOW, "db", "upgrade", "--db", url, "--config", str(w.configs[0])], w.root)
        run(ingest_cmd(w, url), w.root)
        result["split"] = library_split(w, url)
        pg.drop(url.rsplit("/", 1)[1])
    # procrastinate on the same server
    drain = last_json(
        run(
            [
                sys.executable,
                str(BENCH / "procrastinate_drain.py"),
                "--n",
                str(args.procrastinate_n),
                "--dsn",
                args.pg_dsn,
                "--json-only",
            ],
            w.root,
        ).out
    )
    result["procrastinate"] = drain["drain_per_s"]
    return result


# -- main ----------------------------------------------------------------------------------
def main() -> None:
    if len(sys.argv) == 6 and sys.argv[1] == "--library-child":
        library_child(*sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=20_000, help="default 20,000")
    parser.add_argument("--runs", type=int, default=3, help="repetitions, default 3")
    parser.add_argument("--workload", choices=("review", "starter"), default="review")
    parser.add_argument("--pg", action="store_true", help="also PostgreSQL: 1 and 2 workers")
    parser.add_argument("--skip-sqlite", action="store_true", help="only the PostgreSQL part")
    parser.add_argument("--split", action="store_true", help="also time sweep and dispatch apart")
    parser.add_argument("--naive-n", type=int, default=5000, help="naive_scheduler.py --n")
    parser.add_argument("--procrastinate-n", type=int, default=5000, help="procrastinate --n")
    parser.add_argument("--pg-dsn", default=DSN, help=f"server to create databases on ({DSN})")
    parser.add_argument("--keep", type=Path, default=None, help="work in DIR and keep its files")
    args = parser.parse_args()
    if args.skip_sqlite and not args.pg:
        parser.error("--skip-sqlite needs --pg")

    root = args.keep or Path(tempfile.mkdtemp(prefix="pf_bench_runtime_"))
    root.mkdir(parents=True, exist_ok=True)
    load_start = os.getloadavg()
    pg: PgDatabases | None = None
    sq: list[dict[str, Any]] = []
    pgr: list[dict[str, Any]] = []
    try:
        w = build_workload(root, args.workload, args.customers)
        print(
            f"runtime bench: {args.workload} workload, {w.customers:,} customers, "
            f"{w.count:,} events, run --once --now {w.now}; {args.runs} runs; "
            f"{os.cpu_count()} CPUs, load average {load_start[0]:.2f}",
            flush=True,
        )
        # simulate once first: the expected records (and a warm-up of the page cache)
        run(simulate_cmd(w), root, stdout=root / "simulated.jsonl")
        expected_kinds, _ = simulated_kinds(root / "simulated.jsonl")
        expected: list[Any] = []
        if args.pg:
            pg = PgDatabases(args.pg_dsn)
        for rep in range(args.runs):
            if not args.skip_sqlite:
                sq.append(sqlite_run(w, args, expected))
                r = sq[-1]
                print(
                    f"  run {rep + 1} sqlite: ingest {r['ingest']:.2f} s, run --once {r['run']:.2f} s "
                    f"({r['steps'] / r['run']:,.0f} due steps/s), simulate {r['simulate']:.2f} s, "
                    f"naive fire {r['naive']:,.0f}/s",
                    flush=True,
                )
            if pg is not None:
                pgr.append(pg_run(w, args, pg, expected_kinds, rep))
                r = pgr[-1]
                print(
                    f"  run {rep + 1} postgresql: one worker {r['one']:.2f} s "
                    f"({r['steps'] / r['one']:,.0f} due steps/s), two workers {r['two']:.2f} s "
                    f"(customers {r['shares']}), procrastinate {r['procrastinate']:,.0f}/s",
                    flush=True,
                )
    finally:
        if pg is not None:
            pg.close()
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    load_end = os.getloadavg()
    report(args, w, expected_kinds, sq, pgr, pg.version if pg else None, load_start, load_end)


def report(
    args: argparse.Namespace,
    w: Workload,
    kinds: Counter[str],
    sq: list[dict[str, Any]],
    pgr: list[dict[str, Any]],
    pg_version: str | None,
    load_start: tuple[float, ...],
    load_end: tuple[float, ...],
) -> None:
    steps = sum(kinds[k] for k in DUE_KINDS)
    out: dict[str, Any] = {
        "bench": "runtime",
        "workload": args.workload,
        "customers": w.customers,
        "events": w.count,
        "runs": args.runs,
        "now": w.now,
        "due_steps": steps,
        "records": dict(sorted(kinds.items())),
    }
    n = args.runs
    print(
        f"median of {n}; {steps:,} due steps (records: "
        + ", ".join(f"{k} {v:,}" for k, v in sorted(kinds.items()))
        + ")"
    )
    if sq:
        sent = sq[0]["sent"]

        def med(key: str) -> float:
            return median([r[key] for r in sq])

        vs_naive = median([r["steps"] / r["run"] / r["naive"] for r in sq])
        msg_vs_naive = median([r["sent"] / r["run"] / r["naive"] for r in sq])
        durable = median([(r["ingest"] + r["run"]) / r["simulate"] for r in sq])
        run_only = median([r["run"] / r["simulate"] for r in sq])
        durable_cpu = median([(r["ingest_cpu"] + r["run_cpu"]) / r["simulate_cpu"] for r in sq])
        print("SQLite:")
        print(
            f"  postflow ingest      {med('ingest'):6.2f} s wall {med('ingest_cpu'):6.2f} s CPU  "
            f"{w.count / med('ingest'):,.0f} events/s"
        )
        print(
            f"  postflow run --once  {med('run'):6.2f} s wall {med('run_cpu'):6.2f} s CPU  "
            f"{steps / med('run'):,.0f} due steps/s, {sent / med('run'):,.0f} messages/s"
        )
        print(
            f"  postflow simulate    {med('simulate'):6.2f} s wall {med('simulate_cpu'):6.2f} s CPU"
        )
        print(f"  naive scheduler      fire {med('naive'):,.0f} due steps/s (N={args.naive_n})")
        print(
            f"  run --once / naive: {vs_naive:.1f}x due steps/s ({msg_vs_naive:.1f}x counting "
            f"messages only) (target >= 20x)"
        )
        print(
            f"  (ingest + run) / simulate: {durable:.2f}x wall ({durable_cpu:.2f}x CPU); "
            f"run alone / simulate: {run_only:.2f}x (target <= 2x with ingest)"
        )
        out["sqlite"] = {
            "ingest_seconds": round(med("ingest"), 3),
            "run_seconds": round(med("run"), 3),
            "run_cpu_seconds": round(med("run_cpu"), 3),
            "simulate_seconds": round(med("simulate"), 3),
            "simulate_cpu_seconds": round(med("simulate_cpu"), 3),
            "due_steps_per_s": round(steps / med("run"), 1),
            "messages_per_s": round(sent / med("run"), 1),
            "naive_fire_per_s": med("naive"),
            "ratio_vs_naive": round(vs_naive, 2),
            "ratio_messages_vs_naive": round(msg_vs_naive, 2),
            "durable_over_simulate": round(durable, 3),
            "durable_over_simulate_cpu": round(durable_cpu, 3),
            "run_over_simulate": round(run_only, 3),
        }
        splits = [r["split"] for r in sq if "split" in r]
        if splits:
            keys = (
                "open_seconds",
                "sweep_seconds",
                "sweep_cpu_seconds",
                "dispatch_seconds",
                "dispatch_cpu_seconds",
            )
            split = {k: round(median([s[k] for s in splits]), 3) for k in keys}
            print(
                f"  library split: open {split['open_seconds']:.2f} s, sweep "
                f"{split['sweep_seconds']:.2f} s ({split['sweep_cpu_seconds']:.2f} CPU), dispatch "
                f"{split['dispatch_seconds']:.2f} s ({split['dispatch_cpu_seconds']:.2f} CPU)"
            )
            out["sqlite"]["split"] = split
    if pgr:

        def pmed(key: str) -> float:
            return median([r[key] for r in pgr])

        vs_proc = median([r["steps"] / r["one"] / r["procrastinate"] for r in pgr])
        two_one = median([r["one"] / r["two"] for r in pgr])
        print(f"PostgreSQL {pg_version}:")
        print(f"  postflow ingest            {pmed('ingest'):6.2f} s wall")
        print(
            f"  run --once, one worker     {pmed('one'):6.2f} s wall {pmed('one_cpu'):6.2f} s CPU  "
            f"{steps / pmed('one'):,.0f} due steps/s"
        )
        print(
            f"  run --once, two workers    {pmed('two'):6.2f} s wall (CPU per worker, last run: "
            f"{', '.join(f'{c:.2f}' for c in pgr[-1]['two_cpu'])} s; customers "
            f"{pgr[-1]['shares']})  {steps / pmed('two'):,.0f} due steps/s"
        )
        print(
            f"  procrastinate drain        {pmed('procrastinate'):,.0f} due steps/s "
            f"(N={args.procrastinate_n})"
        )
        print(
            f"  one worker / procrastinate: {vs_proc:.1f}x (target >= 20x); "
            f"two workers / one: {two_one:.2f}x (target >= 1.3x)"
        )
        psplits = [r["split"] for r in pgr if "split" in r]
        if psplits:
            keys = (
                "open_seconds",
                "sweep_seconds",
                "sweep_cpu_seconds",
                "dispatch_seconds",
                "dispatch_cpu_seconds",
            )
            psplit = {k: round(median([s[k] for s in psplits]), 3) for k in keys}
            print(
                f"  library split: open {psplit['open_seconds']:.2f} s, sweep "
                f"{psplit['sweep_seconds']:.2f} s ({psplit['sweep_cpu_seconds']:.2f} CPU), dispatch "
                f"{psplit['dispatch_seconds']:.2f} s ({psplit['dispatch_cpu_seconds']:.2f} CPU)"
            )
        out["postgresql"] = {
            "server": pg_version,
            "ingest_seconds": round(pmed("ingest"), 3),
            "one_seconds": round(pmed("one"), 3),
            "one_cpu_seconds": round(pmed("one_cpu"), 3),
            "one_due_steps_per_s": round(steps / pmed("one"), 1),
            "two_seconds": round(pmed("two"), 3),
            "two_due_steps_per_s": round(steps / pmed("two"), 1),
            "two_worker_customers": pgr[-1]["shares"],
            "procrastinate_drain_per_s": pmed("procrastinate"),
            "ratio_vs_procrastinate": round(vs_proc, 2),
            "two_over_one": round(two_one, 3),
        }
        if psplits:
            out["postgresql"]["split"] = psplit
    print(
        f"load average {load_end[0]:.2f} at the end; {os.cpu_count()} CPUs shared with "
        f"other processes"
    )
    out["cpus"] = os.cpu_count()
    out["loadavg"] = [round(load_start[0], 2), round(load_end[0], 2)]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
