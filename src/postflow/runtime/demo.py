"""``postflow demo``: the real daemon, on a temporary SQLite file, on a fast clock.

The bundled journeys (or a project's own) play over two months of a small shop
(:mod:`postflow.runtime.demo_stream`), or over any events file, through exactly the code
``postflow run`` uses (store, sweep, dispatcher). Two things differ: the clock is scaled (by
default a day and a half per real second, so two months take about forty seconds) and stops
at the end of the window, and every channel is :class:`DemoChannel`, which hands the
message to the view and sends nothing anywhere (contract §4: ``demo`` never calls a
provider). The view (:mod:`postflow.runtime.demo_view`) shows the messages as the dispatcher
delivers them and, from the records the daemon writes, the counts per journey and the
skipped messages with their reasons. The temporary database is deleted at the end.

The outcome does not depend on the speed: the clock stops at the end of the window and the
demo ends once the daemon has processed everything due up to it, so the records are those of
``run --once --now END`` over the same events.
"""

from __future__ import annotations

import logging
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import orjson
import sqlalchemy as sa

from postflow import config, events
from postflow.bundled import bundled_project
from postflow.channels.base import Delivery
from postflow.effects import OutboundMessage
from postflow.ingest import ingest_file
from postflow.machine import Machine
from postflow.runtime.clock import ScaledClock
from postflow.runtime.daemon import Daemon
from postflow.runtime.demo_stream import (
    DEFAULT_CUSTOMERS,
    DEFAULT_SEED,
    DemoStream,
    demo_stream,
)
from postflow.runtime.demo_view import (
    Board,
    JourneyTally,
    People,
    render_board,
    summary_renderable,
    summary_text,
    tally,
)
from postflow.runtime.service import load_machines
from postflow.store import schema as t
from postflow.store.sql import SqlStore

DAY = 86_400_000_000
DEFAULT_SPEED = 129_600.0
"""Simulated seconds per real second: a day and a half, so two months take ~40 seconds."""
FILE_TAIL_DAYS = 7
"""Playing an events file: by default, this long after its last event."""
STALL_SECONDS = 20.0
"""At the end of the window, stop anyway when no record came for this long (a daemon that
cannot settle, e.g. a job failing over and over, must not keep the demo running forever)."""
REFRESH = 0.2


def _copy_project(source: Path, target: Path) -> Path:
    """A snapshot of the bundled project (journeys without their tests, templates, catalog,
    configuration), so the demo plays what it started with."""
    for name in ("journeys", "templates"):
        shutil.copytree(source / name, target / name, ignore=shutil.ignore_patterns("*.test.y*ml"))
    for name in ("catalog.yaml", "postflow.yaml"):
        if (source / name).is_file():
            shutil.copy(source / name, target / name)
    return target / "postflow.yaml"


class DemoChannel:
    """Every channel of the demo: hands each message to ``deliver`` (the view) and reports
    it sent. Nothing leaves the process."""

    name = "demo"

    def __init__(self, deliver: Callable[[OutboundMessage], None]) -> None:
        self._deliver = deliver

    def send(self, message: OutboundMessage) -> Delivery:
        self._deliver(message)
        return Delivery("sent", self.name, provider_id=message.message_id)

    def close(self) -> None:
        pass


class _WindowClock:
    """A scaled clock that stops at ``end``."""

    def __init__(self, start: int, speed: float, end: int) -> None:
        self._clock = ScaledClock(start, speed)
        self.end = end

    def now(self) -> int:
        return min(self._clock.now(), self.end)


@dataclass
class DemoResult:
    """What a demo played: counts per journey (from the database's records), the window
    and how far the clock got."""

    journeys: dict[str, JourneyTally]
    senders: frozenset[str]  # the journeys with an email or SMS step
    start: int
    end: int
    reached: int
    customers: int
    events: int
    delivered: int
    settled: bool


@dataclass
class _Input:
    start: int  # of the window (the view's day 0)
    first: int  # the first live event: the clock starts here, whatever the speed
    last: int
    days: float
    profiles: dict[str, dict[str, Any]]
    events: int


def run_demo(
    *,
    config_path: str | Path | None = None,
    journeys_dir: str | Path | None = None,
    stream: DemoStream | None = None,
    events_file: str | Path | None = None,
    history_file: str | Path | None = None,
    customers: int = DEFAULT_CUSTOMERS,
    seed: int = DEFAULT_SEED,
    speed: float = DEFAULT_SPEED,
    days: float | None = None,
    out: TextIO | None = None,
    live: bool | None = None,
    poll: float = 0.05,
) -> DemoResult:
    """Play journeys over a stream with the real daemon and show it; return the counts.

    ``config_path`` None: the bundled project (a copy); else that project's configuration,
    with ``journeys_dir`` instead of its journeys when given. The stream: ``events_file``
    (and ``history_file``, ingested as a history import) when given, else ``stream``, else
    :func:`demo_stream` with ``customers`` and ``seed``. ``days``: how long to play from the
    start (default: the generated stream's two months; a file's span plus a week).
    ``live`` None: the rich view when ``out`` (default stdout) is a terminal, else one plain
    line per message. Raises ProblemsError for bad journeys, configuration or events."""
    if speed <= 0 or (days is not None and days <= 0):
        raise ValueError("speed and days must be positive")
    stream_out = out if out is not None else sys.stdout
    if live is None:
        live = _is_terminal(stream_out)
    with tempfile.TemporaryDirectory(prefix="postflow-demo-") as tmp:
        root = Path(tmp)
        if config_path is None:
            config_path = _copy_project(bundled_project(), root)
        settings = config.load_settings(config_path)
        directory = Path(journeys_dir) if journeys_dir is not None else settings.journeys
        machines = load_machines(settings, directory)
        store = SqlStore.open(f"sqlite:///{root / 'demo.db'}", settings)
        try:
            if events_file is not None:
                given = _ingest_files(store, events_file, history_file, days)
            else:
                if stream is None:
                    stream = demo_stream(
                        customers=customers, seed=seed, catalog=settings.catalog or None
                    )
                given = _ingest_stream(store, stream, days)
            return _play(store, settings, directory, machines, given, speed, stream_out, live, poll)
        finally:
            store.close()


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError, OSError):
        return False


def _ingest_stream(store: SqlStore, stream: DemoStream, days: float | None) -> _Input:
    history = [events.parse_event(e) for e in stream.history]
    live = [events.parse_event(e) for e in stream.events]
    store.ingest(history, backfill=True)
    store.ingest(live)
    start = int(stream.start.timestamp() * 1_000_000)
    first = min((e.at for e in live), default=start)
    last = max((e.at for e in live), default=start)
    return _Input(
        start,
        max(first, start),
        last,
        float(days if days is not None else stream.days),
        stream.customers(),
        len(live),
    )


def _ingest_files(
    store: SqlStore, events_file: str | Path, history_file: str | Path | None, days: float | None
) -> _Input:
    if history_file is not None:
        ingest_file(store, str(history_file), backfill=True)
    result = ingest_file(store, str(events_file))
    with store.engine.connect() as conn:
        first, last = conn.execute(
            sa.select(sa.func.min(t.events.c.at), sa.func.max(t.events.c.at)).where(
                t.events.c.backfill.is_(False)
            )
        ).one()
    if first is None:
        first = last = int(time.time() * 1_000_000)
    if days is None:
        days = (last - first) / DAY + FILE_TAIL_DAYS
    profiles: dict[str, dict[str, Any]] = {}
    for path in (history_file, events_file):
        if path is not None:
            _profiles_of(Path(path), profiles)
    return _Input(first, first, last, days, profiles, result.accepted)


def _profiles_of(path: Path, into: dict[str, dict[str, Any]]) -> None:
    """Customers' names and zones from an events file (it was validated already)."""
    with path.open("rb") as lines:
        for raw in lines:
            try:
                obj = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue
            if isinstance(obj, dict) and isinstance(obj.get("customer"), dict):
                into.setdefault(str(obj.get("customer_id")), {}).update(obj["customer"])


def _play(
    store: SqlStore,
    settings: config.Settings,
    directory: Path,
    machines: Mapping[str, Machine],
    given: _Input,
    speed: float,
    out: TextIO,
    live: bool,
    poll: float,
) -> DemoResult:
    end = given.start + int(given.days * DAY)
    clock = _WindowClock(min(given.first, end), speed, end)
    people = People(given.profiles, settings.timezone)
    board = Board(
        people,
        machines,
        given.start,
        end,
        customers=len(given.profiles),
        plain=None if live else out,
    )
    board.now = clock.now()
    cron = sorted(m.id for m in machines.values() if m.trigger.schedule and not m.trigger.local)
    feed = _RecordFeed(store)
    channel = DemoChannel(board.delivered)
    watch = _Watch(clock, end, given.last, lambda: _settled(store, end, cron))

    def tick() -> bool:
        board.now = clock.now()
        fresh = feed.poll()
        for record in fresh:
            board.record(record)
        return watch.done(bool(fresh))

    daemon = Daemon(
        store,
        settings,
        directory,
        {"email": channel, "sms": channel, "webhook": channel},
        clock=clock,
        poll=poll,
        install_signals=threading.current_thread() is threading.main_thread(),
        log_level=logging.WARNING,
    )
    intro = (
        f"postflow demo: {len(machines)} journeys, {len(given.profiles)} customers, "
        f"{given.events} events, {_day(given.start)} to {_day(end)}, "
        f"{speed / 86_400:g} simulated day(s) per second; nothing is sent anywhere"
    )
    with _restored_signals(), _restored_logging():
        if live:
            _run_live(daemon, board, tick, out, intro)
        else:
            _write(out, intro)
            daemon.stop_when = tick
            daemon.run()
    for record in feed.poll():
        board.record(record)
    counts = tally(store.history(), machines)
    senders = frozenset(
        m.id for m in machines.values() if any(s.kind in ("email", "sms") for s in m.steps.values())
    )
    result = DemoResult(
        counts,
        senders,
        given.start,
        end,
        clock.now(),
        len(given.profiles),
        given.events,
        board.delivered_count,
        watch.settled,
    )
    _print_summary(result, out, live)
    return result


def _run_live(
    daemon: Daemon, board: Board, tick: Callable[[], bool], out: TextIO, intro: str
) -> None:
    from rich.console import Console
    from rich.live import Live

    console = Console(file=out)
    console.print(intro, style="dim", highlight=False)

    def height() -> int:
        return max(console.size.height - 2, 16)

    with Live(
        render_board(board, height()),
        console=console,
        auto_refresh=False,
        redirect_stdout=True,
        redirect_stderr=True,
        vertical_overflow="crop",
    ) as view:

        def refresh() -> bool:
            done = tick()
            view.update(render_board(board, height()), refresh=True)
            return done

        daemon.stop_when = refresh
        daemon.run()
        view.update(render_board(board, height()), refresh=True)


def _print_summary(result: DemoResult, out: TextIO, live: bool) -> None:
    title = f"Summary (from the demo's database), {_day(result.start)} to {_day(result.reached)}:"
    if not result.settled:
        early = result.reached < result.end
        title += " (stopped early)" if early else " (the daemon had not caught up)"
    if live:
        from rich.console import Console

        Console(file=out).print(summary_renderable(result.journeys, title, result.senders))
        return
    _write(out, summary_text(result.journeys, title, result.senders))


def _write(out: TextIO, text: str) -> None:
    try:
        out.write(text + "\n")
        out.flush()
    except (OSError, ValueError):
        pass


def _day(us: int) -> str:
    return datetime.fromtimestamp(us / 1e6, UTC).strftime("%Y-%m-%d %H:%M UTC")


class _RecordFeed:
    """The records the daemon wrote since the last look (by their row id: cheap)."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store
        self.last = 0

    def poll(self) -> list[dict[str, Any]]:
        r = t.records
        with self.store.engine.connect() as conn:
            rows = conn.execute(
                sa.select(r.c.id, r.c.body).where(r.c.id > self.last).order_by(r.c.id)
            ).all()
        if rows:
            self.last = rows[-1].id
        return [orjson.loads(row.body) for row in rows]


def _settled(store: SqlStore, end: int, cron: list[str]) -> bool:
    """Everything due up to ``end`` was processed and dispatched: no customer due by then,
    the cron ticks written up to it, the outbox empty."""
    with store.engine.connect() as conn:
        due = conn.execute(sa.select(sa.func.min(t.customers.c.due_at))).scalar()
        if due is not None and due <= end:
            return False
        if cron:
            d = t.deployments
            marks = conn.execute(sa.select(d.c.ticks_until).where(d.c.journey.in_(cron))).scalars()
            found = list(marks)
            if len(found) < len(cron) or any(m is None or m < end for m in found):
                return False
        queued = conn.execute(
            sa.select(sa.func.count()).select_from(t.outbox).where(t.outbox.c.status == "queued")
        ).scalar_one()
    return bool(queued == 0)


class _Watch:
    """When the demo is over: the clock reached the end of the window (or, with no cron
    journey, the last event) and the daemon caught up; or, at the end, it stalled."""

    def __init__(
        self, clock: _WindowClock, end: int, last: int, settled: Callable[[], bool]
    ) -> None:
        self.clock = clock
        self.end = end
        self.last = last
        self._settled = settled
        self.settled = False
        self._quiet_since: float | None = None

    def done(self, progress: bool) -> bool:
        now = self.clock.now()
        if now < self.last and now < self.end:
            return False
        if self._settled():
            self.settled = True
            return True
        if now < self.end:
            return False
        wall = time.monotonic()
        if progress or self._quiet_since is None:
            self._quiet_since = wall
        return wall - self._quiet_since > STALL_SECONDS


@contextmanager
def _restored_signals() -> Iterator[None]:
    """The daemon installs its own handlers (Ctrl-C ends the demo early, with a summary);
    put back the caller's afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    names = [signal.SIGINT, signal.SIGTERM]
    if hasattr(signal, "SIGHUP"):
        names.append(signal.SIGHUP)
    saved = {s: signal.getsignal(s) for s in names}
    try:
        yield
    finally:
        for s, handler in saved.items():
            if handler is not None:
                signal.signal(s, handler)


@contextmanager
def _restored_logging() -> Iterator[None]:
    """The daemon configures postflow's loggers for a process of its own; the demo may run
    inside another program (tests), so put them back."""
    loggers = [logging.getLogger("postflow"), logging.getLogger("apscheduler")]
    saved = [(lg.handlers[:], lg.level, lg.propagate) for lg in loggers]
    try:
        yield
    finally:
        for lg, (handlers, level, propagate) in zip(loggers, saved, strict=True):
            lg.handlers[:] = handlers
            lg.setLevel(level)
            lg.propagate = propagate
