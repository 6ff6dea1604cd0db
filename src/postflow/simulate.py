"""Time travel: the engine driven by a virtual clock over an in-memory store.

All events are ingested (stored, de-duplicated by id) before the clock starts; then inputs are
applied in logical-time order: at one instant, due instance timers first, then cron ticks,
then events in ingestion order. Events emitted by journeys are ingested as they happen, after
the events already stored for that instant. Output is byte-for-byte deterministic.
"""

from __future__ import annotations

import gc
import heapq
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from postflow import durations, engine
from postflow.events import Event
from postflow.store.memory import MemoryStore

HORIZON_YEARS = 5  # without --until, timers fire at most this many years after the last event
FIELD_ORDER = (
    "kind",
    "at",
    "customer_id",
    "journey",
    "instance",
    "key",
    "step",
    "channel",
    "status",
    "reason",
    "error",
    "to",
    "subject",
    "body",
    "variant",
)


def record_json(record: dict[str, Any]) -> dict[str, Any]:
    """A record in its printed shape: ``at`` as ISO-8601 UTC. The engine builds records with
    their keys already in :data:`FIELD_ORDER`, so only ``at`` changes."""
    return {**record, "at": durations.format_instant(record["at"])}


def format_records(records: Iterable[dict[str, Any]]) -> bytes:
    """JSON Lines, one record per line."""
    return b"".join(orjson.dumps(record_json(r)) + b"\n" for r in records)


def _years_after(us: int, years: int) -> int:
    """The same calendar instant ``years`` later (29 February becomes 28 February)."""
    moment = durations.to_datetime(us)
    try:
        later = moment.replace(year=moment.year + years)
    except ValueError:
        later = moment.replace(year=moment.year + years, day=28)
    return min(durations.from_datetime(later), durations.MAX_INSTANT)


@dataclass(order=True)
class _Tick:
    at: int
    journey: str
    ticks: Iterator[int]


class Simulation:
    """A virtual-time run. ``ingest`` events, then ``run``; records come back sorted by
    ``at``, then ``customer_id``, then the order they were produced."""

    def __init__(self, world: engine.World, store: MemoryStore | None = None) -> None:
        self.world = world
        self.store = store or MemoryStore()
        self._events: list[tuple[int, int, Event]] = []
        self._timers: list[tuple[int, str, str, int, str]] = []
        self._scheduled: dict[str, int] = {}
        self._records: list[tuple[int, str, int, dict[str, Any]]] = []
        self._seq = 0
        self._produced = 0
        self.first_at: int | None = None
        self.last_at: int | None = None
        self.messages: list[engine.OutboundMessage] = []

    def ingest(self, events: Iterable[Event]) -> tuple[int, int]:
        """Store events (idempotently by id). Returns (accepted, duplicates)."""
        accepted = duplicates = 0
        for event in events:
            if not self.store.first_sighting(event.id):
                duplicates += 1
                continue
            self._seq += 1
            event.seq = self._seq
            heapq.heappush(self._events, (event.at, self._seq, event))
            accepted += 1
            if event.depth == 0:
                self.first_at = event.at if self.first_at is None else min(self.first_at, event.at)
                self.last_at = event.at if self.last_at is None else max(self.last_at, event.at)
        return accepted, duplicates

    # -- the clock ---------------------------------------------------------------------------
    def run(self, until: int | None = None) -> list[dict[str, Any]]:
        """Advance the clock: up to ``until`` (inclusive) for everything; without it, cron
        ticks up to the last event and other timers until none is due (at most five years
        after the last event)."""
        # A run allocates many small containers that live on (customer states, records);
        # Python's default young-generation threshold (700) then rescans them constantly.
        # A larger threshold for the run's duration saves ~10-20% and still collects cycles.
        threshold = gc.get_threshold()
        gc.set_threshold(max(threshold[0], 50_000), *threshold[1:])
        try:
            return self._run(until)
        finally:
            gc.set_threshold(*threshold)

    def _run(self, until: int | None) -> list[dict[str, Any]]:
        if self.first_at is None:
            return []
        assert self.last_at is not None
        tick_end = until if until is not None else self.last_at
        timer_end = until if until is not None else _years_after(self.last_at, HORIZON_YEARS)
        ticks: list[_Tick] = []
        for machine in sorted(self.world.machines.values(), key=lambda m: m.id):
            trig = machine.trigger
            if trig.schedule is None or trig.zone is None:
                continue
            it = durations.cron_ticks(trig.schedule, trig.zone, self.first_at, tick_end)
            first = next(it, None)
            if first is not None:
                heapq.heappush(ticks, _Tick(first, machine.id, it))

        never = durations.MAX_INSTANT + 1
        event_end = until if until is not None else never
        pending = self._events
        while True:
            # The next input: timers before ticks before events at one instant.
            timer = self._peek_timer()
            if timer is None or timer > timer_end:
                timer = never
            tick_at = ticks[0].at if ticks else never
            event_at = pending[0][0] if pending else never
            if event_at > event_end:
                event_at = never
            if timer <= tick_at and timer <= event_at:
                if timer == never:
                    break
                which = 0
            else:
                which = 1 if tick_at <= event_at else 2
            if which == 0:
                due, customer_id, _, _, instance_id = heapq.heappop(self._timers)
                del self._scheduled[instance_id]
                self._handle(
                    engine.fire_timer(
                        self.world,
                        self.store.customer(customer_id),
                        instance_id,
                        due,
                        self.store.suppressions,
                    )
                )
            elif which == 1:
                tick = heapq.heappop(ticks)
                for customer_id in sorted(self.store.customers):
                    self._handle(
                        engine.apply_tick(
                            self.world,
                            self.store.customer(customer_id),
                            tick.journey,
                            tick.at,
                            self.store.suppressions,
                        )
                    )
                following = next(tick.ticks, None)
                if following is not None:
                    heapq.heappush(ticks, _Tick(following, tick.journey, tick.ticks))
            else:
                _, _, event = heapq.heappop(self._events)
                self._handle(
                    engine.apply_event(
                        self.world,
                        self.store.customer(event.customer_id),
                        event,
                        self.store.suppressions,
                    )
                )
        self._records.sort()  # (at, customer_id, production order): seq is unique
        return [r[3] for r in self._records]

    def _peek_timer(self) -> int | None:
        timers = self._timers
        while timers:
            due, _, _, _, instance_id = timers[0]
            if self._scheduled.get(instance_id) == due:
                return due
            heapq.heappop(timers)  # stale: the instance moved on
        return None

    def _handle(self, outcome: engine.Outcome) -> None:
        state = outcome.state
        self.store.save(state)
        if outcome.suppressions:
            self.store.apply_suppressions(outcome.suppressions)
        for record in outcome.records:
            self._produced += 1
            self._records.append((record["at"], record["customer_id"], self._produced, record))
        self.messages.extend(outcome.messages)
        if outcome.emitted:
            self.ingest(outcome.emitted)
        for inst in state.instances:
            wake = inst.wake_at
            if wake is not None and self._scheduled.get(inst.id) != wake:
                self._scheduled[inst.id] = wake
                heapq.heappush(
                    self._timers, (wake, state.customer_id, inst.journey, inst.n, inst.id)
                )


def simulate(
    world: engine.World, events: Iterable[Event], until: int | None = None
) -> list[dict[str, Any]]:
    """Run ``events`` through ``world`` in virtual time and return the records."""
    sim = Simulation(world)
    sim.ingest(events)
    return sim.run(until)
