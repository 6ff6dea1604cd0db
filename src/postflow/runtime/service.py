"""The runtime as a library: a store, the loaded journeys, a sweeper and a dispatcher.

``postflow run --once``, the daemon and ``postflow demo`` all drive one :class:`Runtime`:
load the journeys (keeping every version's source in the database), deploy them, write the
cron ticks that have come, drain the due customers, dispatch the outbox. Tests and users can
call it directly.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from postflow import config, durations, engine, events, project
from postflow.channels.base import Channel
from postflow.effects import OutboundMessage
from postflow.machine import Machine
from postflow.runtime.dispatcher import Dispatcher, DispatchStats, RetryPolicy
from postflow.runtime.sweep import Sweeper, SweepStats
from postflow.store.batches import Batches
from postflow.store.outbox import Outbox
from postflow.store.sql import SqlStore, wall_us
from postflow.suppression import change_event

log = logging.getLogger("postflow.runtime")


def database_url(settings: config.Settings, option: str | None) -> str:
    """``--db URL``, else ``POSTFLOW_DATABASE_URL``, else the configuration's ``database``
    (a relative SQLite path is relative to the configuration file), else the default."""
    url = option or settings.database
    if option is None and settings.path is not None and url.startswith("sqlite:///"):
        try:
            parsed = make_url(url)
        except Exception:
            return url
        db = parsed.database
        if (
            db
            and not os.path.isabs(db)
            and db != ":memory:"
            and "POSTFLOW_DATABASE_URL" not in os.environ
        ):
            return str(parsed.set(database=str(settings.base_dir / db)))
    return url


def worker_name() -> str:
    """A name unique to this process, for leases: host, pid and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class WorkerSettings:
    batch: int = 1000
    poll_us: int = 1_000_000
    lease_us: int = 60_000_000

    @classmethod
    def from_settings(cls, settings: config.Settings) -> WorkerSettings:
        raw = settings.raw.get("worker") or {}
        return cls(
            batch=int(raw.get("batch", 1000)),
            poll_us=durations.parse_duration(str(raw.get("poll", "1s"))),
            lease_us=durations.parse_duration(str(raw.get("lease", "60s"))),
        )


def retry_policy(settings: config.Settings) -> RetryPolicy:
    raw = settings.raw.get("dispatch") or {}
    return RetryPolicy(
        max_attempts=int(raw.get("max_attempts", 8)),
        backoff_us=durations.parse_duration(str(raw.get("backoff", "30s"))),
        max_backoff_us=durations.parse_duration(str(raw.get("max_backoff", "1h"))),
    )


def load_machines(settings: config.Settings, journeys_dir: Path) -> dict[str, Machine]:
    """The journeys of a directory; any error raises :class:`ProblemsError` (located)."""
    if not journeys_dir.exists():
        raise project.MissingPath(f"{journeys_dir} (the journeys directory)")
    return project.require_journeys([journeys_dir], settings.templates)


class Runtime:
    """One worker's view of the durable runtime."""

    def __init__(
        self,
        store: SqlStore,
        settings: config.Settings,
        machines: Mapping[str, Machine],
        channels: Mapping[str, Channel],
        *,
        owner: str | None = None,
        worker: WorkerSettings | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.owner = owner or worker_name()
        self.worker = worker or WorkerSettings.from_settings(settings)
        self.batches = Batches(store)
        self._lock = threading.Lock()
        self._world = self._build(machines)
        self.sweeper = Sweeper(
            self.batches,
            lambda: self.world,
            self.owner,
            batch=self.worker.batch,
            lease_us=self.worker.lease_us,
        )
        self.dispatcher = Dispatcher(
            Outbox(store),
            channels,
            self.owner,
            policy=retry_policy(settings),
            lease_us=self.worker.lease_us,
            concurrency=int((settings.raw.get("dispatch") or {}).get("concurrency", 4)),
            suppress=self.suppress,
        )
        self._deployed = False

    def _build(self, machines: Mapping[str, Machine]) -> engine.World:
        self.store.save_versions(machines.values())
        return engine.World.build(machines, self.settings, archive=self.store.versions)

    @property
    def world(self) -> engine.World:
        with self._lock:
            return self._world

    def reload(self, machines: Mapping[str, Machine], now: int) -> None:
        """New journey files: new entries take the new versions; instances in flight keep
        theirs (they are in the database, and the world asks it)."""
        world = self._build(machines)
        with self._lock:
            self._world = world
        self.store.deploy(machines.values(), now)

    def audience(self) -> list[Machine]:
        return list(self.world.tick_audience)

    def prepare(self, now: int) -> None:
        """Deploy journeys not yet deployed and write the cron ticks that have come."""
        self.store.deploy(self.world.machines.values(), now)
        self.batches.materialize_ticks(self.audience(), now, self.owner, self.worker.lease_us)

    def sweep(self, now: int, should_stop: Callable[[], bool] = lambda: False) -> SweepStats:
        self.prepare(now)
        return self.sweeper.run_until(now, should_stop=should_stop)

    def dispatch(self, should_stop: Callable[[], bool] = lambda: False) -> DispatchStats:
        return self.dispatcher.drain(should_stop=should_stop)

    def run_once(self, now: int) -> tuple[SweepStats, DispatchStats]:
        """Process everything due at ``now`` (inclusive), then dispatch what was decided."""
        try:
            swept = self.sweep(now)
        finally:
            self.batches.release_lease("cron", self.owner)
        return swept, self.dispatch()

    def suppress(self, message: OutboundMessage, reason: str) -> None:
        """A provider refused an address for good (Twilio 21610: the number replied STOP):
        raise ``address_suppressed`` as if it had been ingested, so every journey and
        ``history`` sees it. Its id is the message's, so a retried report adds nothing."""
        obj = change_event(
            message.to,
            reason,
            message.customer_id,
            wall_us(),
            event_id=f"postflow:suppress:{message.message_id}",
        )
        self.store.ingest([events.parse_event(obj)])
        log.warning("suppressed %s (%s) after the provider refused it", message.to, reason)

    def close(self) -> None:
        """Give back the leases this worker holds (a daemon stopping cleanly) and stop the
        dispatcher's send threads."""
        self.batches.release_lease("cron", self.owner)
        self.dispatcher.close()
