"""Time travel: the engine driven by a virtual clock over an in-memory store.

All events are ingested (stored, de-duplicated by id, suppression changes put on the
timeline) before the clock starts. The clock then visits every instant at which some customer
has input (a timer, a cron tick, an event) and hands each such customer's inputs to
:func:`postflow.engine.advance`, which alone decides their order. Customers share nothing but
the suppression timeline, so the records of one instant are those of each customer, in
customer-id order. Records stream out as the clock passes them; output is byte-for-byte
deterministic.
"""

from __future__ import annotations

import gc
import heapq
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import orjson

from postflow import compliance, durations, engine
from postflow.events import Event
from postflow.store.memory import MemoryStore

HORIZON = 5  # without --until, timers fire at most this many years after the last event
NEVER = durations.MAX_INSTANT + 1
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


def write_records(records: Iterable[dict[str, Any]], out: BinaryIO, chunk: int = 4096) -> None:
    """Write records as JSON Lines while they are produced, ``chunk`` records at a time (one
    write per chunk keeps the cost of a write call off each record)."""
    lines: list[bytes] = []
    dumps = orjson.dumps
    fmt = durations.format_instant
    for record in records:
        lines.append(dumps({**record, "at": fmt(record["at"])}))
        if len(lines) >= chunk:
            lines.append(b"")
            out.write(b"\n".join(lines))
            lines.clear()
    if lines:
        lines.append(b"")
        out.write(b"\n".join(lines))
    out.flush()


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
    """A virtual-time run. ``ingest`` events, then ``run``: it yields records ordered by
    ``at``, then ``customer_id``, then the order they were produced, as the clock passes them
    (nothing is kept once printed). ``outbox``, when given, receives every queued message."""

    def __init__(
        self,
        world: engine.World,
        store: MemoryStore | None = None,
        *,
        outbox: list[engine.OutboundMessage] | None = None,
    ) -> None:
        self.world = world
        self.store = store or MemoryStore()
        self.outbox = outbox
        self._events: list[tuple[int, int, Event]] = []
        self._wakes: list[tuple[int, str]] = []
        self._scheduled: dict[str, int] = {}
        self._seq = 0
        self._timer_end = NEVER
        self.first_at: int | None = None
        self.last_at: int | None = None

    def ingest(self, events: Iterable[Event]) -> tuple[int, int]:
        """Store events (idempotently by id) and their suppression changes. Returns
        (accepted, duplicates)."""
        accepted = duplicates = 0
        region = self.world.settings.default_region
        push = heapq.heappush
        for event in events:
            if not self.store.first_sighting(event.id):
                duplicates += 1
                continue
            self._seq += 1
            event.seq = self._seq
            push(self._events, (event.at, self._seq, event))
            accepted += 1
            change = compliance.suppression_change(
                event.type, event.data, event.at, region, self._seq
            )
            if change is not None:
                self.store.suppressions.add(change)
            at = event.at
            if self.first_at is None or at < self.first_at:
                self.first_at = at
            if self.last_at is None or at > self.last_at:
                self.last_at = at
        return accepted, duplicates

    # -- the clock ---------------------------------------------------------------------------
    def run(self, until: int | None = None) -> list[dict[str, Any]]:
        """:meth:`stream`, collected."""
        return list(self.stream(until))

    def stream(self, until: int | None = None) -> Iterator[dict[str, Any]]:
        """Advance the clock: up to ``until`` (inclusive) for everything; without it, cron
        ticks up to the last event and other timers until none is due (at most five years
        after the last event). Yields the records as the clock passes them."""
        # A run allocates many small containers that live on (customer states); Python's
        # default young-generation threshold (700) then rescans them constantly. A larger
        # threshold for the run's duration saves ~10-20% and still collects cycles.
        threshold = gc.get_threshold()
        gc.set_threshold(max(threshold[0], 50_000), *threshold[1:])
        try:
            yield from self._run(until)
        finally:
            gc.set_threshold(*threshold)

    def _cron(self, tick_end: int) -> list[_Tick]:
        assert self.first_at is not None
        ticks: list[_Tick] = []
        for machine in sorted(self.world.machines.values(), key=lambda m: m.id):
            trig = machine.trigger
            if trig.schedule is None or trig.zone is None:
                continue
            it = durations.cron_ticks(trig.schedule, trig.zone, self.first_at, tick_end)
            first = next(it, None)
            if first is not None:
                heapq.heappush(ticks, _Tick(first, machine.id, it))
        return ticks

    def _run(self, until: int | None) -> Iterator[dict[str, Any]]:
        if self.first_at is None or self.last_at is None:
            return
        tick_end = until if until is not None else self.last_at
        self._timer_end = until if until is not None else _years_after(self.last_at, HORIZON)
        event_end = until if until is not None else NEVER
        ticks = self._cron(tick_end)
        pending, wakes, scheduled = self._events, self._wakes, self._scheduled
        pop = heapq.heappop
        while True:
            # The next instant with any input: a customer's timer, a cron tick, an event.
            while wakes and scheduled.get(wakes[0][1]) != wakes[0][0]:
                pop(wakes)  # stale: the customer's next wake moved
            now = wakes[0][0] if wakes else NEVER
            if ticks and ticks[0].at < now:
                now = ticks[0].at
            if pending and pending[0][0] < now and pending[0][0] <= event_end:
                now = pending[0][0]
            if now == NEVER:
                return
            work: dict[str, tuple[list[Event], list[tuple[int, str]]]] = {}
            while wakes and wakes[0][0] == now:
                _, customer_id = pop(wakes)
                if scheduled.get(customer_id) == now:
                    del scheduled[customer_id]
                    work.setdefault(customer_id, ([], []))
            due_ticks: list[tuple[int, str]] = []
            while ticks and ticks[0].at == now:
                tick = pop(ticks)
                due_ticks.append((now, tick.journey))
                following = next(tick.ticks, None)
                if following is not None:
                    heapq.heappush(ticks, _Tick(following, tick.journey, tick.ticks))
            if due_ticks:
                # Audience journeys consider the customers known at the tick.
                for customer_id in self.store.known():
                    work.setdefault(customer_id, ([], []))[1].extend(due_ticks)
            while pending and pending[0][0] == now:
                event = pop(pending)[2]
                work.setdefault(event.customer_id, ([], []))[0].append(event)
            yield from self._advance(now, work)

    def _advance(
        self, now: int, work: dict[str, tuple[list[Event], list[tuple[int, str]]]]
    ) -> Iterator[dict[str, Any]]:
        """Advance every customer with work at ``now``; their records, by customer id."""
        store = self.store
        for customer_id in sorted(work):
            evts, ticks = work[customer_id]
            result = engine.advance(
                self.world,
                store.take(customer_id),
                now,
                events=evts,
                ticks=ticks,
                suppressions=store.suppressions,
                first_sighting=store.first_sighting,
                owned=True,
            )
            store.save(result.state)
            if self.outbox is not None:
                self.outbox.extend(result.messages)
            wake = result.next_wake
            if wake is not None and wake <= self._timer_end:
                self._scheduled[customer_id] = wake
                heapq.heappush(self._wakes, (wake, customer_id))
            else:
                self._scheduled.pop(customer_id, None)
            yield from result.records


def simulate(
    world: engine.World, events: Iterable[Event], until: int | None = None
) -> list[dict[str, Any]]:
    """Run ``events`` through ``world`` in virtual time and return the records."""
    sim = Simulation(world)
    sim.ingest(events)
    return sim.run(until)
