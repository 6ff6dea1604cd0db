"""Memory and CPU of an idle `postflow run` daemon over a database of N waiting customers.

Usage: python bench/idle_daemon.py [--n N] [--window S] [--startup S] [--no-history]
       (with the project's venv; N defaults to 1,000,000)

What is measured: the resident memory (VmRSS, sampled once a second, and the peak VmHWM from
/proc/PID/status) and the CPU time (utime + stime from /proc/PID/stat, all threads) of the
real daemon, `postflow run --db URL --journeys DIR --config CFG` started as a subprocess,
over a window of S seconds (default 30) that begins `--startup` seconds (default 10) after it
was started; idle CPU % = CPU seconds in the window / window seconds × 100. The daemon is
then stopped with SIGTERM and must exit 0. The same is measured, in the same run, on an EMPTY
database (schema only) as the baseline. MB here is 10^6 bytes.

How the database is built. One customer goes through the real runtime: an `order_placed`
event one day ago is ingested (`SqlStore.ingest`) and the real due sweep advances the
customer up to now (`Runtime.sweep`, which calls `engine.advance`), through the journey
`order_placed -> wait 30d -> email`, and writes the customer's state document, its instance
row, the event (applied) and the `enter` record. Those rows are then cloned N times with
sqlite3 `executemany` (10,000 rows a call, one transaction per call): each clone gets its own
customer, order and event ids (all eight characters, c0000001, o0000001, e0000001, rewritten
inside every text and JSON document with `bytes.replace`), the same times, so every customer
waits on a real timer 29 days ahead (`customers.due_at` = the instance's `wake_at`).
`--no-history` clones only the customers and instances rows (not the events and records
rows, which the idle daemon never reads but a real database holds). The schema is the real
one (`SqlStore.open(url, settings, upgrade=True)`), and so is everything the daemon reads.

It prints the commit measured ("+dirty" when src/ has uncommitted changes: others edit the
tree while benches run), the set-up time, the database size, the two measurements and a final
JSON line.
The machine's own load (other processes) during each window is printed next to it, since a
shared machine makes wall-clock figures noisy; CPU seconds of the daemon are its own.
`timer_lateness.py` reuses the helpers here.
"""

from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import yaml

# The daemon of the interpreter running the bench (the project's venv).
POSTFLOW = Path(sys.executable).with_name("postflow")
SECOND_US = 1_000_000
DAY_US = 86_400 * SECOND_US
CLK_TCK = os.sysconf("SC_CLK_TCK")
INSERT_BATCH = 10_000
# Ids are a letter and seven digits, so every clone's documents have the template's length.
TEMPLATE_NUMBER = 0
ID_PREFIXES = ("c", "o", "e")  # customer, order, event

JOURNEY: dict[str, Any] = {
    "id": "followup",
    "name": "Thirty-day follow-up",
    "trigger": {"event": "order_placed"},
    "entry": {"key": "trigger.data.order_id"},
    "steps": [
        {"id": "wait_30d", "wait": "30d"},
        {
            "id": "followup",
            "email": {
                "subject": "How is your {{ trigger.data.items[0].name }}, "
                "{{ customer.first_name }}?",
                "body": "Hi {{ customer.first_name }}, it has been a month since order "
                "{{ trigger.data.order_id }}. Time for a refill? "
                "https://shop.example/reorder?order={{ trigger.data.order_id }}",
            },
        },
    ],
}
WAIT_US = 30 * DAY_US


def revision() -> str:
    """The checkout measured: its commit, and "+dirty" when src/ has uncommitted changes (other
    people edit the tree while benches run)."""
    repo = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--", "src"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def ident(prefix: str, number: int) -> str:
    return f"{prefix}{number:07d}"


def mb(size: float) -> str:
    return f"{size / 1e6:,.0f} MB"


# -- the project --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Project:
    root: Path
    journeys: Path
    config: Path
    outbox: Path
    db: Path

    @property
    def url(self) -> str:
        return f"sqlite:///{self.db}"


def write_project(root: Path, worker: dict[str, Any] | None = None) -> Project:
    """The journey, and a configuration whose email channel appends to a file in ``root``."""
    journeys = root / "journeys"
    journeys.mkdir(parents=True, exist_ok=True)
    (journeys / "followup.yaml").write_text(yaml.safe_dump(JOURNEY, sort_keys=False, width=200))
    outbox = root / "outbox.jsonl"
    cfg: dict[str, Any] = {
        "timezone": "UTC",
        "journeys": "journeys",
        "templates": "templates",
        "channels": {"email": {"provider": "file", "path": str(outbox)}},
    }
    if worker:
        cfg["worker"] = worker
    config_path = root / "postflow.yaml"
    config_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return Project(root, journeys, config_path, outbox, root / "postflow.db")


def empty_database(project: Project) -> None:
    """The real schema and nothing else."""
    from postflow import config
    from postflow.store.sql import SqlStore

    SqlStore.open(project.url, config.load_settings(project.config), upgrade=True).close()


# -- one genuine waiting customer -------------------------------------------------------------
TABLES = {
    # table -> columns cloned (autoincrement keys left to the database)
    "customers": (
        "customer_id",
        "state",
        "due_at",
        "known_since",
        "ticks_until",
        "lease_owner",
        "lease_until",
        "updated_at",
        "error",
    ),
    "instances": (
        "instance_id",
        "customer_id",
        "journey",
        "version",
        "key",
        "status",
        "step",
        "wake_at",
        "entered_at",
        "ended_at",
        "exit_reason",
        "variant",
    ),
    "events": (
        "event_id",
        "customer_id",
        "type",
        "at",
        "body",
        "backfill",
        "applied",
        "origin",
        "ingested_at",
    ),
    "records": (
        "at",
        "customer_id",
        "journey",
        "instance",
        "kind",
        "message_id",
        "body",
        "created_at",
    ),
}


@dataclass(frozen=True)
class Template:
    """The rows of one customer as the real runtime wrote them, and the logical times in them
    (a clone shifted by ``delta`` has every one of these moved by ``delta``)."""

    order_at: int  # the event, the entry, processed_at
    swept_at: int  # the time the sweep advanced the customer to (ticks_until)
    wake_at: int  # the instance's timer: due_at
    rows: dict[str, list[tuple[Any, ...]]]


def make_template(project: Project, now: int) -> Template:
    """Ingest an order one day before ``now`` for customer c0000000 and let the real due sweep
    (``Runtime.sweep`` -> ``engine.advance``) advance them up to ``now``; read back the rows it
    wrote and delete them (the deployment and the journey version stay)."""
    from postflow import config, durations, events
    from postflow.channels.registry import build_channels
    from postflow.runtime import service
    from postflow.store.sql import SqlStore

    settings = config.load_settings(project.config)
    store = SqlStore.open(project.url, settings, upgrade=True)
    order_at = now - DAY_US
    cid, oid, eid = (ident(p, TEMPLATE_NUMBER) for p in ID_PREFIXES)
    event = events.parse_event(
        {
            "id": eid,
            "type": "order_placed",
            "customer_id": cid,
            "at": durations.format_instant(order_at),
            "customer": {"email": f"{cid}@example.com", "first_name": "Ann", "email_consent": True},
            "data": {"order_id": oid, "items": [{"sku": "TEA-1", "name": "Green tea"}]},
        }
    )
    channels = build_channels(settings)
    try:
        store.ingest([event])
        machines = service.load_machines(settings, project.journeys)
        stats = service.Runtime(store, settings, machines, channels).sweep(now)
    finally:
        for channel in {id(c): c for c in channels.values()}.values():
            channel.close()
        store.close()
    if (stats.customers, stats.records, stats.messages) != (1, 1, 0):
        sys.exit(f"error: the template customer was not left waiting: {stats}")
    db = sqlite3.connect(project.db)
    try:
        rows = {
            table: db.execute(f"SELECT {', '.join(cols)} FROM {table}").fetchall()
            for table, cols in TABLES.items()
        }
        (due_at,) = db.execute("SELECT due_at FROM customers").fetchone()
        with db:
            for table in TABLES:
                db.execute(f"DELETE FROM {table}")
    finally:
        db.close()
    state = orjson.loads(rows["customers"][0][1])
    (instance,) = state["instances"]
    if instance["wake_at"] != due_at or due_at != order_at + WAIT_US:
        sys.exit(f"error: unexpected template: due_at {due_at}, instance {instance}")
    if len(rows["instances"]) != 1 or len(rows["events"]) != 1 or len(rows["records"]) != 1:
        sys.exit(f"error: unexpected template rows: { {k: len(v) for k, v in rows.items()} }")
    return Template(order_at, now, due_at, rows)


class Cloner:
    """Rows of customer number ``i`` from the template: ids rewritten, times shifted by
    ``delta`` µs. Only the columns that hold an id or a time are touched."""

    def __init__(self, template: Template) -> None:
        from postflow.durations import format_instant

        self.template = template
        self.times = (template.order_at, template.swept_at, template.wake_at)
        self.id_tokens = [ident(p, TEMPLATE_NUMBER) for p in ID_PREFIXES]
        time_tokens: list[str] = []
        for at in self.times:
            time_tokens += [str(at), format_instant(at)]
        self.time_tokens = time_tokens
        self.format_instant = format_instant
        # table -> per column: None (constant) or "ids" / "times" / "both" / "int"
        self.plan: dict[str, list[tuple[int, Any, bool, bool]]] = {}
        for table, rows in template.rows.items():
            (row,) = rows
            plan = []
            for col, value in enumerate(row):
                if isinstance(value, int) and not isinstance(value, bool):
                    if value in self.times:
                        plan.append((col, value, False, True))
                elif isinstance(value, (bytes, str)):
                    text = value.decode() if isinstance(value, bytes) else value
                    has_id = any(tok in text for tok in self.id_tokens)
                    has_time = any(tok in text for tok in self.time_tokens)
                    if has_id or has_time:
                        plan.append((col, value, has_id, has_time))
            self.plan[table] = plan

    def rows(
        self, number: int, delta: int, tables: Iterable[str] = TABLES
    ) -> dict[str, list[tuple[Any, ...]]]:
        """Every table's rows for clone ``number``."""
        ids = [(tok, tok[0] + f"{number:07d}") for tok in self.id_tokens]
        times: list[tuple[str, str]] = []
        if delta:
            for at in self.times:
                times += [
                    (str(at), str(at + delta)),
                    (self.format_instant(at), self.format_instant(at + delta)),
                ]
        subs: dict[tuple[bool, bool], list[tuple[str, str]]] = {
            (False, False): [],
            (True, False): ids,
            (False, True): times,
            (True, True): ids + times,
        }
        byte_subs = {k: [(a.encode(), b.encode()) for a, b in v] for k, v in subs.items()}
        out: dict[str, list[tuple[Any, ...]]] = {}
        for table in tables:
            out[table] = rows = []
            for template_row in self.template.rows[table]:
                row = list(template_row)
                for col, value, has_id, has_time in self.plan[table]:
                    if isinstance(value, int):
                        row[col] = value + delta
                        continue
                    key = (has_id, has_time and bool(delta))
                    for old, new in byte_subs[key] if isinstance(value, bytes) else subs[key]:
                        value = value.replace(old, new)
                    row[col] = value
                rows.append(tuple(row))
        return out


def check_clone(cloner: Cloner, number: int, delta: int) -> None:
    """A clone's state document reads back as the customer it claims to be, due when its
    row says, with no time of the template left in it when shifted."""
    from postflow.state import CustomerState

    (row,) = cloner.rows(number, delta, ["customers"])["customers"]
    state = CustomerState.from_document(row[1])
    cid = ident("c", number)
    if state.customer_id != cid or row[0] != cid or state.next_wake() != row[2]:
        sys.exit(f"error: clone {cid} is inconsistent: {row[0]}, {state.customer_id}, {row[2]}")
    if state.instances[0].wake_at != cloner.template.wake_at + delta:
        sys.exit(f"error: clone {cid} wakes at {state.instances[0].wake_at}")
    if delta:
        doc = row[1].decode()
        left = [tok for tok in cloner.time_tokens if tok in doc]
        if left:
            sys.exit(f"error: clone {cid} still holds template times {left}")


def insert_clones(
    project: Project,
    template: Template,
    clones: Iterable[tuple[int, int]],
    *,
    history: bool = True,
    batch: int = INSERT_BATCH,
) -> int:
    """Insert the rows of every ``(number, delta)`` clone, ``batch`` customers per
    ``executemany``; returns how many customers were inserted."""
    cloner = Cloner(template)
    tables = [t for t in TABLES if history or t in ("customers", "instances")]
    sql = {
        t: f"INSERT INTO {t} ({', '.join(TABLES[t])}) VALUES ({', '.join('?' * len(TABLES[t]))})"
        for t in tables
    }
    db = sqlite3.connect(project.db, isolation_level=None)
    db.execute("PRAGMA synchronous=OFF")  # set-up only; the daemon opens its own connection
    count = 0
    pending: dict[str, list[tuple[Any, ...]]] = {t: [] for t in tables}
    checked = False

    def flush() -> None:
        db.execute("BEGIN IMMEDIATE")
        for t in tables:
            db.executemany(sql[t], pending[t])
            pending[t].clear()
        db.execute("COMMIT")

    try:
        for number, delta in clones:
            if not checked:
                check_clone(cloner, number, delta)
                checked = True
            for t, rows in cloner.rows(number, delta, tables).items():
                pending[t].extend(rows)
            count += 1
            if count % batch == 0:
                flush()
        flush()
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.close()
    return count


def database_size(project: Project) -> int:
    return sum(
        p.stat().st_size for p in project.db.parent.iterdir() if p.name.startswith(project.db.name)
    )


# -- the daemon, from outside -----------------------------------------------------------------
def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system, every thread) of a live process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14, 15)


def proc_run_delay(pid: int) -> float:
    """Seconds the threads of a live process spent runnable but waiting for a CPU (taken by
    other processes or by its own threads), from /proc/PID/task/*/schedstat."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue  # a thread that ended meanwhile
    return total / 1e9


def proc_memory(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a live process, in bytes."""
    found: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                found[key] = int(value.split()[0]) * 1024
    return found["VmRSS"], found["VmHWM"]


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, all cores (/proc/stat)."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


class MachineLoad:
    """How busy the whole machine was between ``start`` and ``stop`` (all processes)."""

    def start(self) -> None:
        self._busy, self._total = machine_jiffies()
        self.load_before = os.getloadavg()[0]

    def stop(self) -> None:
        busy, total = machine_jiffies()
        self.busy_pct = 100.0 * (busy - self._busy) / max(total - self._total, 1)
        self.load_after = os.getloadavg()[0]

    def text(self) -> str:
        return (
            f"machine: {os.cpu_count()} cores {self.busy_pct:.0f}% busy (all processes), "
            f"load average {self.load_before:.2f} -> {self.load_after:.2f}"
        )


def start_daemon(project: Project, log: Path) -> subprocess.Popen[bytes]:
    cmd = [
        str(POSTFLOW),
        "run",
        "--db",
        project.url,
        "--journeys",
        str(project.journeys),
        "--config",
        str(project.config),
    ]
    with log.open("ab") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=project.root)


def stop_daemon(proc: subprocess.Popen[bytes], timeout: float = 120.0) -> int:
    """SIGTERM, then wait for the exit status (the daemon finishes the batch in hand)."""
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return -9


def log_problems(log: Path) -> tuple[list[str], int]:
    """Lines of the daemon's log that say something went wrong, and how many times
    APScheduler skipped a job because its previous run had not finished (an overrun)."""
    errors, overruns = [], 0
    for line in log.read_text(errors="replace").splitlines():
        if "maximum number of running instances reached" in line:
            overruns += 1
        elif any(w in line for w in ("ERROR", "error", "failed", "Traceback", "missed")):
            errors.append(line)
    return errors, overruns


@dataclass
class Idle:
    customers: int
    rss: int  # the largest sampled VmRSS
    rss_median: int
    hwm: int
    cpu: float  # seconds in the window
    window: float
    startup_cpu: float
    exit_status: int
    machine: str

    @property
    def cpu_pct(self) -> float:
        return 100.0 * self.cpu / self.window

    def text(self) -> str:
        return (
            f"RSS {mb(self.rss)} (peak {mb(self.hwm)}), idle CPU {self.cpu_pct:.2f}% over "
            f"{self.window:.0f} s with {self.customers:,} waiting customers "
            f"(start-up: {self.startup_cpu:.2f} CPU s; exit {self.exit_status})"
        )


def measure_idle(project: Project, customers: int, startup: float, window: float) -> Idle:
    log = project.root / "daemon.log"
    proc = start_daemon(project, log)
    try:
        time.sleep(startup)
        if proc.poll() is not None:
            sys.exit(f"error: the daemon exited with {proc.returncode}: {log.read_text()}")
        load = MachineLoad()
        load.start()
        cpu0, t0 = proc_cpu(proc.pid), time.monotonic()
        samples = [proc_memory(proc.pid)[0]]
        while (left := t0 + window - time.monotonic()) > 0:
            time.sleep(min(1.0, left))
            samples.append(proc_memory(proc.pid)[0])
        cpu1, t1 = proc_cpu(proc.pid), time.monotonic()
        hwm = proc_memory(proc.pid)[1]
        load.stop()
    finally:
        status = stop_daemon(proc)
    samples.sort()
    problems, _ = log_problems(log)
    if problems:
        print(f"warning: the daemon logged {len(problems)} problem(s), e.g. {problems[0]}")
    return Idle(
        customers,
        samples[-1],
        samples[len(samples) // 2],
        hwm,
        cpu1 - cpu0,
        t1 - t0,
        cpu0,
        status,
        load.text(),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="waiting customers")
    parser.add_argument("--window", type=float, default=30.0, help="seconds sampled")
    parser.add_argument("--startup", type=float, default=10.0, help="seconds before sampling")
    parser.add_argument(
        "--no-history",
        dest="history",
        action="store_false",
        help="clone only customers and instances rows, not events and records",
    )
    args = parser.parse_args()
    if args.n < 1:
        parser.error("--n must be at least 1")
    print(f"postflow {revision()}, {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(prefix="postflow-idle-") as tmp:
        empty = write_project(Path(tmp) / "empty")
        empty_database(empty)
        full = write_project(Path(tmp) / "full")
        started = time.monotonic()
        template = make_template(full, time.time_ns() // 1000)
        made = time.monotonic()
        count = insert_clones(full, template, ((i, 0) for i in range(args.n)), history=args.history)
        done = time.monotonic()
        size = database_size(full)
        tables = "customers, instances, events, records" if args.history else "customers, instances"
        print(
            f"set-up: template customer {made - started:.1f} s, {count:,} clones "
            f"({tables}) {done - made:.1f} s ({count / (done - made):,.0f} customers/s); "
            f"database {mb(size)} ({size / count:,.0f} bytes per customer)"
        )
        results = {}
        for name, project, n in (("empty", empty, 0), ("waiting", full, count)):
            idle = measure_idle(project, n, args.startup, args.window)
            print(f"{name:>7}: {idle.text()}")
            print(f"         {idle.machine}")
            if idle.exit_status != 0:
                print(f"error: the daemon exited with status {idle.exit_status}", file=sys.stderr)
            results[name] = {
                "customers": n,
                "rss_bytes": idle.rss,
                "rss_median_bytes": idle.rss_median,
                "peak_rss_bytes": idle.hwm,
                "cpu_seconds": round(idle.cpu, 3),
                "window_seconds": round(idle.window, 2),
                "idle_cpu_pct": round(idle.cpu_pct, 3),
                "startup_cpu_seconds": round(idle.startup_cpu, 2),
                "exit_status": idle.exit_status,
                "machine": idle.machine,
            }
        summary = {
            "bench": "idle_daemon",
            "revision": revision(),
            "customers": count,
            "history": args.history,
            "setup_seconds": round(done - started, 1),
            "database_bytes": size,
            **results,
        }
        print(orjson.dumps(summary).decode())


if __name__ == "__main__":
    main()
