"""The naive queue baseline: procrastinate's drain rate, one PostgreSQL job per due step.

Usage: python bench/procrastinate_drain.py [--n N] [--concurrency C] [--sync-task]
                                           [--dsn DSN] [--json-only]

The other obvious way to run a journey's timers durably is a PostgreSQL task queue: every
due step becomes one job row, fetched, run and marked done one at a time. procrastinate is a
mature queue of exactly that design (`SELECT ... FOR UPDATE SKIP LOCKED` per job through its
`procrastinate_fetch_job` function, then one `procrastinate_finish_job` call). postflow
instead claims due customers in batches from an indexed wake-time column; this script
measures what the one-job-per-step design drains, to quote next to postflow's own rates
measured in the same run.

It creates a fresh database (`pf_bench_procrastinate_<pid>`, through an autocommit
connection to the database named in --dsn), applies procrastinate's schema with its
`SchemaManager.apply_schema_async()` (what `procrastinate schema --apply` runs), defers N
jobs (default 5,000) of a task doing the minimal work of one due step (format a short
message from the customer id and append it to a list) with `batch_defer_async` in batches
of 1,000 (the defer rate is printed separately), and then times a worker from start to stop:
`run_worker_async(wait=False, concurrency=C)` returns once the queue is empty and the
running jobs have finished, so drain steps/s = N / those seconds (worker start-up included).
The task is a coroutine by default, procrastinate's cheapest path; `--sync-task` makes it a
plain function, which procrastinate runs in a thread.

It checks that the task ran N times, once per customer, and that N rows of
`procrastinate_jobs` have status 'succeeded'; it exits non-zero otherwise. The database is
dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from collections import Counter
from importlib.metadata import version
from typing import Any

import procrastinate
import psycopg
from psycopg import sql

OUTBOX: list[str] = []
RAN: Counter[str] = Counter()
DEFER_BATCH = 1000


def _step(customer_id: str, step: str) -> None:
    """The minimal work of one due step: render a short message and queue it."""
    OUTBOX.append(f"to={customer_id}@example.com step={step} subject=How was your order?")
    RAN[customer_id] += 1


async def due_step_async(customer_id: str, step: str) -> None:
    _step(customer_id, step)


def due_step_sync(customer_id: str, step: str) -> None:
    _step(customer_id, step)


def build_app(conninfo: str, sync_task: bool) -> tuple[procrastinate.App, Any]:
    # procrastinate warns when the App is built in __main__, since a worker in another process
    # could not import its tasks; this worker runs in this process and finds them in app.tasks.
    blueprint_logger = logging.getLogger("procrastinate.blueprints")
    level = blueprint_logger.level
    blueprint_logger.setLevel(logging.ERROR)
    try:
        app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=conninfo))
    finally:
        blueprint_logger.setLevel(level)
    func = due_step_sync if sync_task else due_step_async
    task = app.task(name="due_step", queue="due")(func)
    return app, task


async def measure(conninfo: str, n: int, concurrency: int, sync_task: bool) -> dict[str, Any]:
    app, task = build_app(conninfo, sync_task)
    async with app.open_async():
        await app.schema_manager.apply_schema_async()

        t0 = time.perf_counter()
        for start in range(0, n, DEFER_BATCH):
            await task.batch_defer_async(
                *(
                    {"customer_id": f"c{i:07d}", "step": "review_ask"}
                    for i in range(start, min(start + DEFER_BATCH, n))
                )
            )
        defer_seconds = time.perf_counter() - t0

        t0 = time.perf_counter()
        await app.run_worker_async(
            queues=["due"],
            wait=False,
            concurrency=concurrency,
            listen_notify=False,
            install_signal_handlers=False,
        )
        drain_seconds = time.perf_counter() - t0

    with psycopg.connect(conninfo) as conn:
        rows = conn.execute(
            "SELECT status::text, count(*) FROM procrastinate_jobs GROUP BY status"
        ).fetchall()
    statuses = {status: count for status, count in rows}
    twice = sum(1 for c in RAN.values() if c != 1)
    if statuses != {"succeeded": n} or len(RAN) != n or twice or len(OUTBOX) != n:
        raise SystemExit(
            f"procrastinate_drain: check failed: job statuses {statuses}, {len(RAN)} distinct "
            f"of {n} ran, {twice} more than once, {len(OUTBOX)} runs"
        )
    return {
        "bench": "procrastinate_drain",
        "n": n,
        "drain_per_s": round(n / drain_seconds, 1),
        "seconds": round(drain_seconds, 3),
        "defer_per_s": round(n / defer_seconds, 1),
        "defer_seconds": round(defer_seconds, 3),
        "concurrency": concurrency,
        "task": "sync" if sync_task else "async",
        "version": version("procrastinate"),
        "postgres": None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000, help="jobs (due steps), default 5000")
    parser.add_argument("--concurrency", type=int, default=1, help="worker concurrency, default 1")
    parser.add_argument(
        "--sync-task", action="store_true", help="a plain function task (run in a thread)"
    )
    parser.add_argument(
        "--dsn",
        default="host=127.0.0.1 port=5432 user=root dbname=test",
        help="an existing database to create the bench database from",
    )
    parser.add_argument("--json-only", action="store_true", help="print only the JSON line")
    args = parser.parse_args()
    if args.n < 1 or args.concurrency < 1:
        parser.error("--n and --concurrency must be at least 1")

    dbname = f"pf_bench_procrastinate_{os.getpid()}"
    admin = psycopg.connect(args.dsn, autocommit=True)
    try:
        server = admin.execute("SHOW server_version").fetchone()
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
        try:
            conninfo = psycopg.conninfo.make_conninfo(args.dsn, dbname=dbname)
            result = asyncio.run(measure(conninfo, args.n, args.concurrency, args.sync_task))
        finally:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname))
            )
    finally:
        admin.close()
    result["postgres"] = server[0] if server else None

    if not args.json_only:
        print(
            f"procrastinate_drain: drain {result['drain_per_s']:.0f} due steps/s "
            f"(N={args.n}, {result['seconds']} s, concurrency {args.concurrency}, "
            f"{result['task']} task; batch defer {result['defer_per_s']:.0f} jobs/s; "
            f"procrastinate {result['version']}, PostgreSQL {result['postgres']})"
        )
    print(json.dumps(result))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
