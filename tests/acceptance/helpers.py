"""Helpers for the acceptance tests: a project on disk, the real ``postflow`` CLI as
subprocesses, a daemon process wrapper, and the checks every scenario shares.

The daemon is the real ``postflow run`` (the console script in the project's venv), started,
killed and stopped with signals like an operator (or systemd) would. Nothing here imports the
runtime: the database is read with plain SQL, the file channel with a JSON parser.
"""

from __future__ import annotations

import collections
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
POSTFLOW = REPO / ".venv" / "bin" / "postflow"
if not POSTFLOW.exists():  # pragma: no cover - an unusual install: run the module instead
    COMMAND = [sys.executable, "-m", "postflow"]
else:
    COMMAND = [str(POSTFLOW)]

US = 1_000_000
DAY = 86_400 * US
HOUR = 3_600 * US

COMPLETION_TIMEOUT = 180.0
"""Seconds a daemon gets to drain its backlog: generous, so a slow machine is not a failure."""


# -- time ----------------------------------------------------------------------------------
def wall_us() -> int:
    return time.time_ns() // 1000


def iso(us: int) -> str:
    """An instant as the contract prints it: ``YYYY-MM-DDTHH:MM:SS[.ffffff]Z``."""
    moment = datetime.fromtimestamp(us / US, UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}"
    return text + "Z"


def whole_second(us: int) -> int:
    return us - us % US


# -- journeys used by several scenarios -------------------------------------------------------
ONBOARDING = """\
id: onboarding
name: Order thanks, tips, review ask
trigger:
  event: order_placed
entry:
  key: "trigger.data.order_id"
steps:
  - id: thanks
    email:
      subject: "Thanks for order {{ trigger.data.order_id }}"
      body: "Hi {{ customer.first_name }}, we got your order."
      transactional: true
  - id: wait_1d
    wait: 1d
  - id: tips
    email:
      subject: "Getting the most out of your {{ trigger.data.items[0].name }}"
      body: "Brew it at 80 degrees."
  - id: mark
    set:
      customer.onboarded: "true"
  - id: ask
    emit:
      event: review_requested
      data:
        order_id: "trigger.data.order_id"
"""

REVIEW = """\
id: review
trigger:
  event: review_requested
steps:
  - id: await_review
    wait_for: {event: review_submitted, timeout: 2d, on_timeout: remind}
  - id: thank_review
    email:
      subject: "Thanks for your review, {{ customer.first_name }}"
      body: "It helps a lot."
    next: end
  - id: remind
    sms:
      body: "Got a minute to review order {{ trigger.data.order_id }}?"
"""

WINBACK = """\
id: big-spender
trigger:
  event: order_placed
  if: "event.data.total >= 40"
entry:
  reentry: never
steps:
  - id: vip
    email:
      subject: "Welcome to the club, {{ customer.first_name }}"
      body: "You spent {{ customer.total_spent }}."
"""

JOURNEYS = {"onboarding": ONBOARDING, "review": REVIEW, "big-spender": WINBACK}


def workload(
    n: int, *, first_us: int, last_us: int, seed: int, review_share: float = 0.4
) -> list[dict[str, Any]]:
    """Events of ``n`` customers with orders spread over ``[first_us, last_us]``: each places
    an order; some review it after the review request (order + 1d) and before the 2d
    timeout; every event has an id. Deterministic for a seed."""
    rng = random.Random(seed)
    step = max((last_us - first_us) // max(n, 1), 1)
    out: list[dict[str, Any]] = []
    for i in range(n):
        cid = f"c{i:06d}"
        at = whole_second(first_us + i * step + rng.randrange(step))
        total = 10 + rng.randrange(60)
        out.append(
            {
                "id": f"order-{i}",
                "type": "order_placed",
                "customer_id": cid,
                "at": iso(at),
                "customer": {
                    "email": f"{cid}@example.com",
                    "phone": f"+1555{i:07d}",
                    "first_name": rng.choice(["Ann", "Bo", "Cy", "Di"]),
                    "sms_consent": rng.random() < 0.7,
                },
                "data": {
                    "order_id": f"o{i}",
                    "total": total,
                    "currency": "USD",
                    "items": [
                        {
                            "sku": "TEA-1",
                            "name": "Green tea",
                            "category": "tea",
                            "quantity": 1,
                            "price": total,
                        }
                    ],
                },
            }
        )
        if rng.random() < review_share:
            out.append(
                {
                    "id": f"review-{i}",
                    "type": "review_submitted",
                    "customer_id": cid,
                    "at": iso(at + DAY + rng.randrange(1, 40) * HOUR),
                    "data": {"order_id": f"o{i}", "rating": rng.randrange(1, 6)},
                }
            )
    out.sort(key=lambda e: e["at"])
    return out


# -- a project on disk ----------------------------------------------------------------------
class Project:
    """A postflow project in a temporary directory, driven through the real CLI."""

    def __init__(
        self,
        root: Path,
        *,
        db_url: str | None = None,
        batch: int = 200,
        poll: str = "1s",
        lease: str = "5s",
        journeys: dict[str, str] | None = None,
    ) -> None:
        self.root = root
        self.journeys = root / "journeys"
        self.journeys.mkdir(parents=True, exist_ok=True)
        (root / "templates").mkdir(exist_ok=True)
        self.outbox = root / "out.jsonl"
        self.config = root / "postflow.yaml"
        self.db_url = db_url or f"sqlite:///{root / 'postflow.db'}"
        self.batch = batch
        self.config.write_text(
            textwrap.dedent(
                f"""\
                timezone: UTC
                templates: templates
                worker: {{batch: {batch}, poll: {poll}, lease: {lease}}}
                channels:
                  email: {{provider: file, path: {self.outbox.name}}}
                  sms: {{provider: file, path: {self.outbox.name}}}
                log: {{format: json}}
                """
            ),
            encoding="utf-8",
        )
        for name, text in (JOURNEYS if journeys is None else journeys).items():
            self.journey(name, text)

    @property
    def sqlite_path(self) -> Path:
        assert self.db_url.startswith("sqlite:///")
        return Path(self.db_url.removeprefix("sqlite:///"))

    def journey(self, name: str, text: str) -> Path:
        path = self.journeys / f"{name}.yaml"
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    def events_file(self, evts: Iterable[dict[str, Any]], name: str = "events.jsonl") -> Path:
        path = self.root / name
        with path.open("w", encoding="utf-8") as out:
            for e in evts:
                out.write(json.dumps(e) + "\n")
        return path

    # -- the CLI ----------------------------------------------------------------------------
    def cli(self, *args: str, timeout: float = 300.0, check: bool = True) -> Result:
        proc = subprocess.run(
            [*COMMAND, *args],
            cwd=self.root,
            env=clean_env(),
            capture_output=True,
            timeout=timeout,
        )
        result = Result(proc.returncode, proc.stdout.decode(), proc.stderr.decode())
        if check and proc.returncode != 0:
            raise AssertionError(f"postflow {' '.join(args)} exited {proc.returncode}:\n{result}")
        return result

    def db_args(self) -> list[str]:
        return ["--db", self.db_url, "--config", str(self.config)]

    def ingest(self, path: Path) -> Result:
        return self.cli("ingest", str(path), *self.db_args())

    def upgrade(self) -> Result:
        return self.cli("db", "upgrade", *self.db_args())

    def run_once(self, now_us: int) -> Result:
        return self.cli(
            "run", "--once", "--now", iso(now_us), "--journeys", str(self.journeys), *self.db_args()
        )

    def history(self) -> list[str]:
        out = self.cli("history", *self.db_args()).stdout
        return [line for line in out.splitlines() if line]

    def simulate(self, events: Path, until_us: int) -> list[str]:
        out = self.cli(
            "simulate",
            "--events",
            str(events),
            "--journeys",
            str(self.journeys),
            "--config",
            str(self.config),
            "--until",
            iso(until_us),
        ).stdout
        return [line for line in out.splitlines() if line]

    def daemon(self, name: str = "d") -> Daemon:
        return Daemon(self, name)

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        return query(self.db_url, sql, *params)

    def sent_lines(self) -> list[dict[str, Any]]:
        """Every message the file channel received (one JSON object per line)."""
        if not self.outbox.exists():
            return []
        lines = self.outbox.read_bytes().splitlines()
        return [json.loads(line) for line in lines if line.strip()]


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return f"--- stdout ---\n{self.stdout[-4000:]}\n--- stderr ---\n{self.stderr[-4000:]}"


def clean_env() -> dict[str, str]:
    """The environment without settings that would point the CLI elsewhere."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("POSTFLOW_CONFIG", "POSTFLOW_DATABASE_URL")
        and not k.startswith(("SENDGRID_", "TWILIO_"))
    }
    env["PYTHONUNBUFFERED"] = "1"
    return env


# -- reading the database --------------------------------------------------------------------
def query(url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Run one read query with the plain driver (sqlite3, or psycopg for PostgreSQL);
    ``?`` placeholders."""
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=30)
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()
    import psycopg

    dsn = url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(sql.replace("?", "%s"), params).fetchall()


@dataclass(frozen=True)
class Backlog:
    customers_due: int
    events_pending: int
    outbox_queued: int

    @property
    def empty(self) -> bool:
        return not (self.customers_due or self.events_pending or self.outbox_queued)


def backlog(url: str, now_us: int) -> Backlog:
    """What is still to do at ``now_us``: customers due, events not applied, queued mail."""
    return Backlog(
        query(url, "SELECT count(*) FROM customers WHERE due_at <= ?", now_us)[0][0],
        query(url, "SELECT count(*) FROM events WHERE applied = ? AND at <= ?", False, now_us)[0][
            0
        ],
        query(url, "SELECT count(*) FROM outbox WHERE status = 'queued'")[0][0],
    )


# -- the daemon ------------------------------------------------------------------------------
class Daemon:
    """One ``postflow run`` process. Its stderr (JSON logs) goes to a file per start, so a
    killed process's last words are kept and pipes never fill up."""

    def __init__(self, project: Project, name: str = "d") -> None:
        self.project = project
        self.name = name
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.log_paths: list[Path] = []

    def start(self, *extra: str) -> Daemon:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.starts += 1
        log_path = self.project.root / f"daemon-{self.name}-{self.starts}.log"
        self.log_paths.append(log_path)
        with log_path.open("wb") as err:
            self.proc = subprocess.Popen(
                [
                    *COMMAND,
                    "run",
                    "--journeys",
                    str(self.project.journeys),
                    *self.project.db_args(),
                    *extra,
                ],
                cwd=self.project.root,
                env=clean_env(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signum)

    def kill(self) -> int:
        """SIGKILL: no cleanup, no last batch; returns the exit status (-9)."""
        self.signal(signal.SIGKILL)
        return self.wait(30)

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM and wait for the exit status (0 expected: the batch in hand finishes)."""
        self.signal(signal.SIGTERM)
        return self.wait(timeout)

    def wait(self, timeout: float = 60.0) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(
                f"daemon {self.name} did not exit within {timeout}s\n{self.stderr()[-4000:]}"
            ) from None

    def stderr(self, which: int = -1) -> str:
        """The stderr of one start (default: the latest), or of all with ``which=None``."""
        paths = self.log_paths if which is None else [self.log_paths[which]]
        return "".join(p.read_text(encoding="utf-8", errors="replace") for p in paths)

    def logs(self, which: int | None = None) -> list[dict[str, Any]]:
        """The JSON log lines (other lines, e.g. a traceback, are returned as ``raw``)."""
        out: list[dict[str, Any]] = []
        for line in self.stderr(which).splitlines():
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"raw": line})
        return out

    def messages(self, which: int | None = None) -> list[str]:
        return [d.get("message", d.get("raw", "")) for d in self.logs(which)]

    def wait_for_log(
        self, predicate: Callable[[str], bool], timeout: float = 60.0, since: int = 0
    ) -> str:
        """Wait until a log message (after the first ``since`` of this start) satisfies
        ``predicate``; return it."""
        deadline = time.monotonic() + timeout
        while True:
            msgs = self.messages(-1)[since:]
            for m in msgs:
                if predicate(m):
                    return m
            if not self.alive():
                raise AssertionError(
                    f"daemon {self.name} exited ({self.proc and self.proc.returncode}) "
                    f"while waiting for a log line:\n{self.stderr()[-4000:]}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no matching log line within {timeout}s:\n{self.stderr()[-4000:]}"
                )
            time.sleep(0.1)

    def advanced(self) -> int:
        """Customers this daemon advanced, over all its starts (from its logs)."""
        total = 0
        for m in self.messages(None):
            if m.startswith("advanced ") and " customer(s)" in m:
                total += int(m.split()[1])
        return total

    def ensure_stopped(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait(10)


def wait_until_drained(
    project: Project,
    daemons: Sequence[Daemon],
    *,
    timeout: float = COMPLETION_TIMEOUT,
    settle: int = 2,
) -> float:
    """Poll the database until nothing is due, no event is pending and the outbox is empty,
    ``settle`` times in a row (a dispatch may be between claim and commit). Fails if every
    daemon died. Returns the seconds it took."""
    started = time.monotonic()
    clean = 0
    last: Backlog | None = None
    while clean < settle:
        if not any(d.alive() for d in daemons):
            logs = "\n".join(d.stderr()[-3000:] for d in daemons)
            raise AssertionError(f"every daemon exited before the work was done ({last}):\n{logs}")
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not drained after {timeout}s: {last}")
        last = backlog(project.db_url, wall_us())
        clean = clean + 1 if last.empty else 0
        time.sleep(0.5)
    return time.monotonic() - started


# -- the checks every scenario shares ----------------------------------------------------------
def record_key(line: str) -> tuple[Any, ...]:
    r = json.loads(line)
    return (r["instance"], r["kind"], r.get("step"), r["at"])


def duplicates(items: Iterable[Any]) -> dict[Any, int]:
    return {k: n for k, n in collections.Counter(items).items() if n > 1}


def assert_history_equals_simulate(history: list[str], simulated: list[str]) -> None:
    """Same records (as sets of JSON lines, and with no record twice)."""
    assert simulated, "simulate printed nothing: the scenario is broken"
    doubled = duplicates(record_key(line) for line in history)
    assert not doubled, f"{len(doubled)} record(s) written twice, e.g. {list(doubled)[:5]}"
    assert not duplicates(history), "a history line appears twice"
    hist, sim = set(history), set(simulated)
    missing, extra = sorted(sim - hist), sorted(hist - sim)
    assert not missing and not extra, (
        f"history != simulate: {len(missing)} missing (e.g. {missing[:3]}), "
        f"{len(extra)} extra (e.g. {extra[:3]})"
    )
    assert len(history) == len(simulated)


def assert_events_applied_once(project: Project, expected_ids: Iterable[str]) -> None:
    rows = project.query("SELECT event_id, applied FROM events WHERE origin = 'ingest'")
    ids = [r[0] for r in rows]
    assert not duplicates(ids), f"an event id stored twice: {list(duplicates(ids))[:5]}"
    assert set(ids) == set(expected_ids)
    unapplied = [r[0] for r in rows if not r[1]]
    assert not unapplied, f"{len(unapplied)} ingested event(s) never applied: {unapplied[:5]}"


@dataclass
class Delivery:
    """What the file channel got compared with the outbox."""

    outbox: dict[str, str]
    sent_counts: collections.Counter[str] = field(default_factory=collections.Counter)

    @property
    def duplicated(self) -> dict[str, int]:
        return {m: n for m, n in self.sent_counts.items() if n > 1}

    @property
    def extra_copies(self) -> int:
        return sum(n - 1 for n in self.duplicated.values())


def check_delivery(project: Project) -> Delivery:
    """Every outbox row is ``sent`` and reached the file at least once; nothing reached the
    file that the outbox does not hold. Returns the counts for the duplicate checks."""
    outbox = dict(project.query("SELECT message_id, status FROM outbox"))
    not_sent = {m: s for m, s in outbox.items() if s != "sent"}
    assert not not_sent, f"{len(not_sent)} outbox message(s) not sent: {list(not_sent.items())[:5]}"
    lines = project.sent_lines()
    counts = collections.Counter(line["message_id"] for line in lines)
    missing = set(outbox) - set(counts)
    assert not missing, (
        f"{len(missing)} message(s) never reached the channel: {sorted(missing)[:5]}"
    )
    unknown = set(counts) - set(outbox)
    assert not unknown, f"the channel got messages the outbox never held: {sorted(unknown)[:5]}"
    return Delivery(outbox, counts)


def message_records(history: list[str]) -> list[dict[str, Any]]:
    return [r for r in map(json.loads, history) if r["kind"] == "message"]


class SlowProvider:
    """A provider that accepts messages slowly: the file channel's path is a FIFO whose only
    reader (a thread here) takes ``pace_bytes`` every ``pace_seconds``, with the pipe shrunk to
    one page, so every ``write`` of the channel waits for it like a call to a slow API.
    ``fast()`` lifts the limit. Lines (< PIPE_BUF, written whole) never interleave."""

    def __init__(self, path: Path, *, pace_bytes: int = 300, pace_seconds: float = 0.01) -> None:
        import threading

        os.mkfifo(path)
        self.path = path
        self.pace_bytes = pace_bytes
        self.pace_seconds = pace_seconds
        self.data = bytearray()
        self._fast = threading.Event()
        self._stop = threading.Event()
        self._fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a reader before any writer
        try:
            import fcntl

            fcntl.fcntl(self._fd, fcntl.F_SETPIPE_SZ, 4096)
        except (ImportError, AttributeError, OSError):  # pragma: no cover - not Linux
            pass
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while True:
            size = 1 << 16 if self._fast.is_set() else self.pace_bytes
            try:
                chunk: bytes | None = os.read(self._fd, size)
            except BlockingIOError:  # writers, but nothing written yet
                chunk = None
            if chunk:
                self.data.extend(chunk)
            elif chunk == b"" and self._stop.is_set():  # no writer left, and we are done
                return
            if not chunk or not self._fast.is_set():
                time.sleep(self.pace_seconds)

    def fast(self) -> None:
        self._fast.set()

    def close(self) -> None:
        """Read what is left and stop (call it once every writer has exited)."""
        self.fast()
        self._stop.set()
        self._thread.join(30)
        os.close(self._fd)

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in bytes(self.data).splitlines() if line.strip()]
