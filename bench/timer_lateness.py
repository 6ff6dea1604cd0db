"""Timer lateness of the `postflow run` daemon when timers come due at a steady rate.

Usage: python bench/timer_lateness.py [--rate R] [--window W] [--lead L] [--runs K]
       [--batch B] [--poll P] [--workers D]   (with the project's venv)

What is measured: for each due step (a customer's 30-day wait ending, which queues one email),
lateness = `records.created_at - records.at` of the `message` record it produced: the wall
time at which the sweep wrote the step back (`created_at` is read when the write-back
transaction starts, so the commit itself is not included) minus the logical time the step was
due (`at`, the timer's `wake_at`). Prints p50, p90, p99 and max lateness, the achieved
throughput (due steps / seconds from the first due time to the last write-back), the largest
number written back in one wall second, the daemon's CPU use while the timers fire and how
much of that time its threads waited for a CPU (run-queue delay, /proc/PID/task/*/schedstat:
on a shared machine, the other processes' share), its peak RSS, and how far the outbox
dispatcher got; each run, then the medians over K runs (default 3).

How: N = R × W customers (default 5,000/s × 30 s = 150,000) are built as `idle_daemon.py`
builds its waiting customers (one customer through the real runtime, then cloned with
sqlite3), except that each clone's times are shifted so that its timer is due at
`first + i × W / N`: every time in its rows and documents (the order, the entry, the
processed time, the timer) moves by the same amount, so each is the genuine state of a
customer who ordered 30 days before their due time. The due times cover W seconds starting
L seconds (default 20) after the real daemon (`postflow run`, a subprocess, with
`worker: {poll: P, batch: B}`, default 1s and 1000) is started. Each due step renders the
email and writes the state, records, instance and outbox row; the email channel is a file,
so the dispatcher in the same daemon sends them meanwhile. The bench waits until every timer
has fired (one outbox row per customer, counted once a second), gives the dispatcher up to
`--drain` seconds to empty the outbox, stops the daemon with SIGTERM (it must exit 0), and
reads the figures from the database. `--workers D` starts D daemons on the one SQLite file
(CPU and run-queue figures are then their sum, 100% = one core).

`worker.poll` takes postflow durations, whole seconds at least ("100ms" and "0.1s" are
refused), so the sweep runs at most once a second, and lateness includes up to a second of
waiting for the next poll. The machine's own load during each run is printed, and the commit
each run measured ("+dirty" when src/ had uncommitted changes).
"""

from __future__ import annotations

import argparse
import math
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import idle_daemon as fixture
import orjson

SECOND_US = fixture.SECOND_US


def wall_us() -> int:
    return time.time_ns() // 1000


def percentile(ordered: list[int], p: float) -> int:
    """Nearest-rank percentile of an ascending list."""
    return ordered[max(math.ceil(p / 100 * len(ordered)) - 1, 0)]


def seconds(us: float) -> str:
    return f"{us / SECOND_US:.2f} s"


def count_fired(project: fixture.Project) -> int:
    db = sqlite3.connect(f"file:{project.db}?mode=ro", uri=True, timeout=30)
    try:
        return int(db.execute("SELECT count(*) FROM outbox").fetchone()[0])
    finally:
        db.close()


def one_run(root: Path, args: argparse.Namespace) -> dict[str, Any]:
    project = fixture.write_project(root, worker={"poll": args.poll, "batch": args.batch})
    n = int(args.rate * args.window)
    started = time.monotonic()
    template = fixture.make_template(project, wall_us())
    # Leave time to insert the clones, then `lead` seconds between start-up and the first due.
    allowance = 5 + n / args.insert_rate
    first_due = wall_us() + int((allowance + args.lead) * SECOND_US)
    spacing = args.window * SECOND_US / n
    clones = ((i, first_due + int(i * spacing) - template.wake_at) for i in range(n))
    fixture.insert_clones(project, template, clones, history=args.history)
    setup = time.monotonic() - started
    wait = (first_due - args.lead * SECOND_US - wall_us()) / SECOND_US
    if wait > 0:
        time.sleep(wait)
    logs = [root / f"daemon-{k}.log" for k in range(args.workers)]
    load = fixture.MachineLoad()
    load.start()
    procs = [fixture.start_daemon(project, log) for log in logs]
    launched = wall_us()
    fired_at = drained_at = None
    peak_rss = 0

    def usage() -> tuple[float, float]:
        """CPU and run-queue seconds of every daemon together."""
        return (
            sum(fixture.proc_cpu(p.pid) for p in procs),
            sum(fixture.proc_run_delay(p.pid) for p in procs),
        )

    try:
        deadline = first_due + int((args.window + args.timeout) * SECOND_US)
        first: tuple[float, float, int] | None = None
        fired: tuple[float, float] = (0.0, 0.0)
        while wall_us() < deadline:
            time.sleep(1.0)
            for proc, log in zip(procs, logs, strict=True):
                if proc.poll() is not None:
                    sys.exit(f"error: a daemon exited with {proc.returncode}: {log.read_text()}")
            peak_rss = max(peak_rss, *(fixture.proc_memory(p.pid)[1] for p in procs))
            if first is None and wall_us() >= first_due:
                first = (*usage(), wall_us())
            if fired_at is None and count_fired(project) >= n:
                fired_at = wall_us()
                fired = usage()
                deadline = fired_at + int(args.drain * SECOND_US)
            if fired_at is not None and pending(project) == 0:
                drained_at = wall_us()
                break
        cpu_end = usage()[0]
    finally:
        statuses = [fixture.stop_daemon(p) for p in procs]
        load.stop()
    if fired_at is None:
        sys.exit(f"error: not every timer fired within {args.timeout:.0f} s after the window")
    assert first is not None
    figures = read_figures(project, n, first_due)
    busy_wall = (fired_at - first[2]) / SECOND_US
    problems: list[str] = []
    overruns = 0
    for log in logs:
        errors, skipped = fixture.log_problems(log)
        problems += errors
        overruns += skipped
    result = {
        **figures,
        "customers": n,
        "workers": args.workers,
        "revision": fixture.revision(),
        "setup_seconds": round(setup, 1),
        "lead_seconds": round((first_due - launched) / SECOND_US, 1),
        "daemon_cpu_pct": round(100 * (fired[0] - first[0]) / busy_wall, 1),
        "daemon_runqueue_pct": round(100 * (fired[1] - first[1]) / busy_wall, 1),
        "daemon_cpu_seconds": round(cpu_end, 1),
        "daemon_peak_rss_bytes": peak_rss,
        "drained": drained_at is not None,
        "exit_status": max(statuses, key=abs),
        "log_errors": len(problems),
        "job_overruns": overruns,
        "machine": load.text(),
    }
    if problems:
        print(f"  warning: the daemon logged {len(problems)} error(s), e.g. {problems[0]}")
    return result


def pending(project: fixture.Project) -> int:
    db = sqlite3.connect(f"file:{project.db}?mode=ro", uri=True, timeout=30)
    try:
        return int(db.execute("SELECT count(*) FROM outbox WHERE status = 'queued'").fetchone()[0])
    finally:
        db.close()


def read_figures(project: fixture.Project, n: int, first_due: int) -> dict[str, Any]:
    db = sqlite3.connect(project.db)
    try:
        rows = db.execute(
            "SELECT customer_id, at, created_at FROM records WHERE kind = 'message' AND at >= ?",
            (first_due,),
        ).fetchall()
        sent = db.execute("SELECT count(*) FROM outbox WHERE status = 'sent'").fetchone()[0]
        dispatch = sorted(
            r[0]
            for r in db.execute(
                "SELECT sent_at - created_at FROM outbox WHERE status = 'sent'"
            ).fetchall()
        )
    finally:
        db.close()
    if len(rows) != n or len({r[0] for r in rows}) != n:
        sys.exit(f"error: {len(rows)} message records for {n} customers")
    late = sorted(created - at for _, at, created in rows)
    last_write = max(created for _, _, created in rows)
    per_second: dict[int, int] = {}
    for _, _, created in rows:
        per_second[created // SECOND_US] = per_second.get(created // SECOND_US, 0) + 1
    # Lateness by slice of due time shows whether it grows over the window (a backlog).
    slices: dict[int, list[int]] = {}
    for _, at, created in rows:
        slices.setdefault((at - first_due) // (5 * SECOND_US), []).append(created - at)
    return {
        "p50_us": percentile(late, 50),
        "p90_us": percentile(late, 90),
        "p99_us": percentile(late, 99),
        "max_us": late[-1],
        "throughput": round(n / ((last_write - first_due) / SECOND_US), 1),
        "peak_per_second": max(per_second.values()),
        "p99_by_5s_us": [percentile(sorted(v), 99) for _, v in sorted(slices.items())],
        "sent": sent,
        "dispatch_p50_us": percentile(dispatch, 50) if dispatch else None,
        "dispatch_p99_us": percentile(dispatch, 99) if dispatch else None,
    }


def describe(r: dict[str, Any]) -> str:
    return (
        f"lateness p50 {seconds(r['p50_us'])}, p90 {seconds(r['p90_us'])}, "
        f"p99 {seconds(r['p99_us'])}, max {seconds(r['max_us'])}; "
        f"{r['throughput']:,.0f} due steps/s achieved (peak {r['peak_per_second']:,} in one "
        f"second)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=5000.0, help="due steps per second")
    parser.add_argument("--window", type=float, default=30.0, help="seconds of due times")
    parser.add_argument("--lead", type=float, default=20.0, help="seconds from start to first due")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=1000, help="worker.batch")
    parser.add_argument("--poll", default="1s", help="worker.poll (a postflow duration)")
    parser.add_argument(
        "--workers", type=int, default=1, help="daemons sharing the database (default 1)"
    )
    parser.add_argument(
        "--drain", type=float, default=60.0, help="seconds to let the dispatcher finish"
    )
    parser.add_argument(
        "--timeout", type=float, default=600.0, help="seconds after the window to give up"
    )
    parser.add_argument(
        "--insert-rate",
        type=float,
        default=6000.0,
        help="customers/s the set-up is assumed to insert (to place the window)",
    )
    parser.add_argument(
        "--no-history",
        dest="history",
        action="store_false",
        help="clone only customers and instances rows, not events and records",
    )
    args = parser.parse_args()
    from postflow import durations

    try:
        durations.parse_duration(args.poll)
    except durations.DurationError as exc:
        parser.error(f"--poll: {exc}")
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    if args.rate * args.window < 1:
        parser.error("--rate × --window must be at least 1")
    results = []
    revision = fixture.revision()
    print(
        f"postflow {revision}: {int(args.rate * args.window):,} timers due over {args.window:.0f} s "
        f"({args.rate:,.0f}/s), worker poll {args.poll}, batch {args.batch}, "
        f"{args.workers} daemon(s)"
    )
    for i in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="postflow-lateness-") as tmp:
            r = one_run(Path(tmp), args)
        results.append(r)
        print(f"run {i + 1}: {describe(r)}")
        print(
            f"  p99 by 5 s of due time: {', '.join(seconds(v) for v in r['p99_by_5s_us'])}; "
            f"daemon CPU {r['daemon_cpu_pct']:.0f}% of a core while firing (its threads waited "
            f"{r['daemon_runqueue_pct']:.0f}% of that time for a CPU), peak RSS "
            f"{fixture.mb(r['daemon_peak_rss_bytes'])}; set-up {r['setup_seconds']:.0f} s, "
            f"first due {r['lead_seconds']:.0f} s after start; {r['job_overruns']} job run(s) "
            f"skipped by APScheduler (still running); exit {r['exit_status']}"
        )
        dispatched = (
            f"dispatch lag p50 {seconds(r['dispatch_p50_us'])}, p99 {seconds(r['dispatch_p99_us'])}"
            if r["dispatch_p50_us"] is not None
            else "no message dispatched"
        )
        print(
            f"  outbox: {r['sent']:,} of {r['customers']:,} sent by stop "
            f"({'drained' if r['drained'] else f'not drained {args.drain:.0f} s after'}), "
            f"{dispatched}"
        )
        print(f"  {r['machine']}")
    keys = ("p50_us", "p90_us", "p99_us", "max_us", "throughput", "peak_per_second")
    medians = {k: statistics.median(r[k] for r in results) for k in keys}
    print(f"median of {len(results)}: {describe(medians)}")
    summary = {
        "bench": "timer_lateness",
        "revision": revision,
        "rate": args.rate,
        "window": args.window,
        "poll": args.poll,
        "batch": args.batch,
        "workers": args.workers,
        "history": args.history,
        "median": medians,
        "runs": results,
    }
    print(orjson.dumps(summary).decode())


if __name__ == "__main__":
    main()
