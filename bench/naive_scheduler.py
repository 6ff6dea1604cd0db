"""The naive timer baseline: one APScheduler SQLAlchemyJobStore job per customer timer.

Usage: python bench/naive_scheduler.py [--n N] [--workers W] [--json-only]

The obvious way to give every customer a durable timer is to hand each one to a job
scheduler with a persistent job store: one APScheduler 3.x `date` job per timer, pickled
into a row of an SQLite `SQLAlchemyJobStore`. postflow instead keeps timers as rows with an
indexed wake time and claims due customers in batches; this script measures what the naive
design costs, to quote next to postflow's own rates measured in the same run.

Two figures, for N one-shot jobs (default 5,000) all due at the same instant, one second in
the past, each doing the minimal work of one due step (format a short message from the
customer id and append it to a list, in a module-level function since the job store pickles
a reference to it):

- add: N `add_job` calls on a started (paused) scheduler, each an INSERT committed to the
  SQLite file, as a daemon adds a timer when a customer reaches a wait; jobs/s = N / seconds.
- fire: the scheduler is shut down and a fresh one is started on the same file, as after a
  restart with a backlog; wall seconds from `start()` until the N-th job has executed, so the
  figure includes loading (unpickling) the due jobs, submitting them to the thread pool and the
  scheduler's DELETE of each fired job; due steps/s = N / seconds. The seconds until the store
  is empty (the last DELETE) are printed too.

No job may be dropped: `misfire_grace_time=None`, `coalesce=False`. The executor is a thread
pool of W threads (default 10, APScheduler's own default). The script checks that every job
ran exactly once and that the store is empty at the end; it exits non-zero otherwise. The
SQLite file lives in a temporary directory removed at the end.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_REMOVED, JobEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler

OUTBOX: list[str] = []
_RAN: Counter[str] = Counter()
_LOCK = threading.Lock()
_ALL_RAN = threading.Event()
_EXPECTED = 0


def due_step(customer_id: str, step: str) -> None:
    """The minimal work of one due step: render a short message and queue it."""
    message = f"to={customer_id}@example.com step={step} subject=How was your order?"
    with _LOCK:
        OUTBOX.append(message)
        _RAN[customer_id] += 1
        if len(OUTBOX) == _EXPECTED:
            _ALL_RAN.set()


def make_scheduler(url: str, workers: int) -> BackgroundScheduler:
    return BackgroundScheduler(
        jobstores={"default": SQLAlchemyJobStore(url=url)},
        executors={"default": ThreadPoolExecutor(max_workers=workers)},
        job_defaults={"misfire_grace_time": None, "coalesce": False, "max_instances": 1},
        timezone=UTC,
    )


def run(n: int, workers: int, timeout: float) -> dict[str, object]:
    global _EXPECTED
    _EXPECTED = n
    tmp = Path(tempfile.mkdtemp(prefix="pf_bench_aps_"))
    url = f"sqlite:///{tmp / 'jobs.sqlite'}"
    schedulers: list[BackgroundScheduler] = []
    try:
        # Phase 1: add N timers to a running, paused scheduler (each add is one committed INSERT).
        adder = make_scheduler(url, workers)
        schedulers.append(adder)
        adder.start(paused=True)
        due = datetime.now(UTC) - timedelta(seconds=1)
        t0 = time.perf_counter()
        for i in range(n):
            adder.add_job(
                due_step,
                trigger="date",
                run_date=due,
                args=(f"c{i:07d}", "review_ask"),
                id=f"timer-c{i:07d}",
            )
        add_seconds = time.perf_counter() - t0
        # Detach the store first: shutting down a paused BackgroundScheduler wakes its thread for
        # one more pass over the due jobs with the executor already shut down (APScheduler 3.11),
        # which logs a submit error and kills the thread; without a store that pass is empty.
        adder.remove_jobstore("default")
        adder.shutdown(wait=True)
        if OUTBOX:
            raise SystemExit(f"naive_scheduler: {len(OUTBOX)} jobs ran while paused")

        # Phase 2: a fresh scheduler on the same store; time start() until all N have run.
        firer = make_scheduler(url, workers)
        schedulers.append(firer)
        removed = 0
        errors = 0
        store_clear = threading.Event()
        store_clear_at = [0.0]

        def listener(event: JobEvent) -> None:
            nonlocal removed, errors
            if event.code == EVENT_JOB_ERROR:
                errors += 1
                return
            removed += 1
            if removed == n:
                store_clear_at[0] = time.perf_counter()
                store_clear.set()

        firer.add_listener(listener, EVENT_JOB_REMOVED | EVENT_JOB_ERROR)
        t0 = time.perf_counter()
        firer.start()
        if not _ALL_RAN.wait(timeout):
            raise SystemExit(f"naive_scheduler: only {len(OUTBOX)} of {n} jobs ran in {timeout} s")
        fire_seconds = time.perf_counter() - t0
        if not store_clear.wait(timeout):
            raise SystemExit(f"naive_scheduler: only {removed} of {n} jobs left the store")
        store_clear_seconds = store_clear_at[0] - t0
        time.sleep(0.2)  # would catch a late duplicate run
        left = len(firer.get_jobs())
        firer.shutdown(wait=True)

        twice = sum(1 for c in _RAN.values() if c != 1)
        if len(_RAN) != n or twice or len(OUTBOX) != n or errors or left:
            raise SystemExit(
                f"naive_scheduler: check failed: {len(_RAN)} distinct of {n} ran, "
                f"{twice} more than once, {len(OUTBOX)} runs, {errors} errors, {left} left"
            )
        return {
            "bench": "naive_scheduler",
            "n": n,
            "add_per_s": round(n / add_seconds, 1),
            "fire_per_s": round(n / fire_seconds, 1),
            "seconds": round(fire_seconds, 3),
            "add_seconds": round(add_seconds, 3),
            "store_clear_seconds": round(store_clear_seconds, 3),
            "workers": workers,
            "store": "sqlite",
            "apscheduler": version("apscheduler"),
        }
    finally:
        for s in schedulers:
            if s.running:
                s.shutdown(wait=False)
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000, help="timers (jobs), default 5000")
    parser.add_argument("--workers", type=int, default=10, help="thread pool size, default 10")
    parser.add_argument("--timeout", type=float, default=300.0, help="give up after S seconds")
    parser.add_argument("--json-only", action="store_true", help="print only the JSON line")
    args = parser.parse_args()
    if args.n < 1 or args.workers < 1:
        parser.error("--n and --workers must be at least 1")
    result = run(args.n, args.workers, args.timeout)
    if not args.json_only:
        print(
            f"naive_scheduler: add {result['add_per_s']:.0f} jobs/s, "
            f"fire {result['fire_per_s']:.0f} due steps/s "
            f"(N={args.n}, sqlite, {args.workers} threads; add {result['add_seconds']} s, "
            f"all ran {result['seconds']} s, store empty {result['store_clear_seconds']} s "
            f"after start; apscheduler {result['apscheduler']})"
        )
    print(json.dumps(result))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
