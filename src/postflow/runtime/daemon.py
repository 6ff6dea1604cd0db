"""``postflow run``: the long-running daemon.

APScheduler 3 runs a handful of jobs, never one per customer: the due sweep (claims customers
with due work in batches and drains them), the outbox dispatcher, the cron-tick writer and
housekeeping (noticing changed journey files). Per-customer timers are rows with an indexed
wake time (``customers.due_at``), so a million waiting customers cost the daemon nothing.

Signals: SIGTERM and SIGINT finish the batch in hand and exit 0; SIGHUP reloads the journeys
(as does a change in the journeys directory). A reload that meets errors keeps the last good
versions and logs why; instances in flight always keep the version they entered with.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import types
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler

from postflow import config
from postflow.channels.base import Channel
from postflow.problems import ProblemsError
from postflow.runtime import logs
from postflow.runtime.clock import Clock, WallClock
from postflow.runtime.service import Runtime, WorkerSettings, load_machines
from postflow.store.sql import SqlStore

log = logging.getLogger("postflow.daemon")

HOUSEKEEPING_SECONDS = 2.0


def journeys_signature(directory: Path, templates: Path) -> tuple[Any, ...]:
    """What a reload depends on: names, sizes and mtimes of journey and template files."""
    found: list[tuple[str, int, int]] = []
    for root in (directory, templates):
        if not root.is_dir():
            continue
        for path in sorted(root.rglob("*")):
            if path.is_file():
                st = path.stat()
                found.append((str(path), st.st_size, st.st_mtime_ns))
    return tuple(found)


class Daemon:
    def __init__(
        self,
        store: SqlStore,
        settings: config.Settings,
        journeys_dir: Path,
        channels: Mapping[str, Channel],
        *,
        http: str | None = None,
        journeys_option: str | None = None,
        clock: Clock | None = None,
        poll: float | None = None,
        stop_when: Callable[[], bool] | None = None,
        install_signals: bool = True,
        log_level: int = logging.INFO,
    ) -> None:
        self.store = store
        self.settings = settings
        self.journeys_dir = journeys_dir
        self.channels = channels
        self.http = http
        self.clock = clock or WallClock()
        self.worker = WorkerSettings.from_settings(settings)
        self.poll = poll if poll is not None else self.worker.poll_us / 1_000_000
        self.stop_when = stop_when
        self.install_signals = install_signals
        self.log_level = log_level
        self.stopping = threading.Event()
        self._reload = threading.Event()
        self._signature: tuple[Any, ...] = ()
        self.runtime: Runtime | None = None
        self.scheduler: BackgroundScheduler | None = None
        self.server: Any = None

    # -- lifecycle ----------------------------------------------------------------------------
    def run(self) -> int:
        """Start, serve until stopped, and return the exit status."""
        logs.configure(self.settings, level=self.log_level)
        try:
            machines = load_machines(self.settings, self.journeys_dir)
        except ProblemsError as exc:
            for problem in exc.problems:
                log.error("%s", problem)
            return 1
        self._signature = journeys_signature(self.journeys_dir, self.settings.templates)
        self.runtime = Runtime(
            self.store, self.settings, machines, self.channels, worker=self.worker
        )
        if self.install_signals:
            self._install_signals()
        if self.http is not None and not self._start_http():
            return 1
        self.runtime.prepare(self.clock.now())
        self.scheduler = self._schedule()
        log.info(
            "postflow daemon %s started: %d journey(s), database %s%s, channels %s",
            self.runtime.owner,
            len(machines),
            self.store.url.split("@")[-1],
            f", HTTP on {self.http}" if self.http else "",
            ", ".join(f"{kind} → {ch.name}" for kind, ch in self.channels.items()),
        )
        try:
            while not self.stopping.wait(0.2):
                if self._reload.is_set():
                    self._reload.clear()
                    self.reload()
                if self.stop_when is not None and self.stop_when():
                    self.stopping.set()
        finally:
            self._shutdown()
        log.info("postflow daemon stopped")
        return 0

    def stop(self) -> None:
        self.stopping.set()

    def _install_signals(self) -> None:
        def on_stop(signum: int, _frame: types.FrameType | None) -> None:
            log.info("received %s: finishing the batch in hand", signal.Signals(signum).name)
            self.stopping.set()

        def on_hup(_signum: int, _frame: types.FrameType | None) -> None:
            self._reload.set()

        signal.signal(signal.SIGTERM, on_stop)
        signal.signal(signal.SIGINT, on_stop)
        if hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, on_hup)

    def _start_http(self) -> bool:
        from postflow.http.app import create_app
        from postflow.http.server import HttpServer, HttpServerError, http_options, parse_listen
        from postflow.http.webhooks import WebhookSettings

        try:
            host, port = parse_listen(self.http or "")
        except ValueError as exc:
            log.error("--http %s: %s", self.http, exc)
            return False
        options = http_options(self.settings)
        app = create_app(
            self.store,
            max_body=options["max_body"],
            api_token=options.get("api_token"),
            on_ingest=self.wake,
            webhooks=WebhookSettings.load(self.settings),
        )
        self.server = HttpServer(app, host, port)
        try:
            self.server.start()
        except HttpServerError as exc:
            log.error("%s", exc)
            return False
        return True

    def _schedule(self) -> BackgroundScheduler:
        scheduler = BackgroundScheduler(
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None}
        )
        start = datetime.now() + timedelta(milliseconds=10)
        every = {"seconds": self.poll}
        scheduler.add_job(self.cron_job, "interval", id="cron", next_run_time=start, **every)
        scheduler.add_job(self.sweep_job, "interval", id="sweep", next_run_time=start, **every)
        scheduler.add_job(
            self.dispatch_job, "interval", id="dispatch", next_run_time=start, **every
        )
        scheduler.add_job(
            self.housekeeping_job, "interval", id="housekeeping", seconds=HOUSEKEEPING_SECONDS
        )
        scheduler.start()
        return scheduler

    def _shutdown(self) -> None:
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=True)  # running jobs finish their batch
        if self.server is not None:
            self.server.stop()
        if self.runtime is not None:
            try:
                self.runtime.close()
            except Exception as exc:
                log.warning("could not release leases: %s", logs.one_line(exc))
        for channel in {id(c): c for c in self.channels.values()}.values():
            channel.close()

    # -- jobs --------------------------------------------------------------------------------
    def wake(self) -> None:
        """New input arrived (HTTP ingest): sweep now rather than at the next poll."""
        if self.scheduler is not None and not self.stopping.is_set():
            try:
                self.scheduler.modify_job("sweep", next_run_time=datetime.now())
            except Exception:  # the scheduler is shutting down
                pass

    def cron_job(self) -> None:
        runtime = self._runtime()
        self._guard(
            "cron",
            lambda: runtime.batches.materialize_ticks(
                runtime.audience(), self.clock.now(), runtime.owner, self.worker.lease_us
            ),
        )

    def sweep_job(self) -> None:
        runtime = self._runtime()

        def sweep() -> None:
            # Drain with a fresh "now" until a pass finds nothing: what comes due during a
            # long drain is taken at once, not at the next poll.
            stats = runtime.sweeper.run_until(self.clock.now(), should_stop=self.stopping.is_set)
            while stats.customers and not self.stopping.is_set():
                more = runtime.sweeper.run_until(self.clock.now(), should_stop=self.stopping.is_set)
                if not more.customers:
                    break
                stats.add(more)
            if stats.customers:
                log.info(
                    "advanced %d customer(s): %d record(s), %d message(s) queued",
                    stats.customers,
                    stats.records,
                    stats.messages,
                )
                if self.scheduler is not None and not self.stopping.is_set():
                    self.scheduler.modify_job("dispatch", next_run_time=datetime.now())

        self._guard("sweep", sweep)

    def dispatch_job(self) -> None:
        runtime = self._runtime()
        self._guard("dispatch", lambda: runtime.dispatch(should_stop=self.stopping.is_set))

    def housekeeping_job(self) -> None:
        signature = journeys_signature(self.journeys_dir, self.settings.templates)
        if signature != self._signature:
            self._signature = signature
            self._reload.set()

    def _runtime(self) -> Runtime:
        assert self.runtime is not None
        return self.runtime

    @staticmethod
    def _guard(name: str, job: Callable[[], Any]) -> None:
        """A failing job (the database gone away, a disk full) is logged and tried again at
        the next poll; it never kills the daemon."""
        try:
            job()
        except Exception as exc:
            log.error("%s job failed: %s", name, logs.one_line(exc))

    # -- reload ------------------------------------------------------------------------------
    def reload(self) -> None:
        try:
            machines = load_machines(self.settings, self.journeys_dir)
        except ProblemsError as exc:
            log.error(
                "journeys not reloaded (%d error(s)); still running the last good versions",
                len([p for p in exc.problems if p.is_error]),
            )
            for problem in exc.problems:
                log.error("%s", problem)
            return
        except Exception as exc:
            log.error("journeys not reloaded: %s", logs.one_line(exc))
            return
        self._runtime().reload(machines, self.clock.now())
        log.info(
            "journeys reloaded: %s",
            ", ".join(f"{m.id}@{m.version}" for m in sorted(machines.values(), key=lambda m: m.id)),
        )


def pid_alive(pid: int) -> bool:  # pragma: no cover - used by tests and tools
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True
