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
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from postflow import compliance, durations, engine, events
from postflow.events import Event
from postflow.problems import Problem, ProblemsError
from postflow.store.memory import MemoryStore

KEEP_LIMIT = 100_000
"""Events :meth:`Simulation.ingest_file` keeps from its first pass; beyond, it reads again."""
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
    for record in records:
        lines.append(dumps(record_json(record)))
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
        self._history: dict[str, list[tuple[str, int, dict[str, Any]]]] = {}
        self._tick_end: int | None = None
        self._events: list[tuple[int, int, Event]] = []
        self._stream: Iterator[tuple[int, int, Event]] | None = None
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
        push = heapq.heappush
        for event in events:
            if self._register(event):
                push(self._events, (event.at, event.seq, event))
                accepted += 1
            else:
                duplicates += 1
        return accepted, duplicates

    def ingest_file(self, path: str | Path) -> tuple[int, int]:
        """Store a JSON Lines events file, like :meth:`ingest` of :func:`events.read_events`,
        without holding a big file's events in memory. Returns (accepted, duplicates).

        Every line is validated first; any bad line raises ProblemsError listing every one
        (then discard this simulation). Up to :data:`KEEP_LIMIT` events are kept from that
        pass. A bigger file is read a second time instead: lazily, as the clock reaches each
        event, when the file is in time order (exports usually are), else all at once. The
        second pass only decodes lines the first one accepted."""
        problems: list[Problem] = []
        kept: list[Event] | None = []
        ordered = True
        latest = None
        skip: set[int] = set()
        accepted = duplicates = 0
        before = _signature(path)
        for number, event in events.scan_events(path, problems):
            if problems:
                continue  # the file will be refused: only its problems matter now
            if not self._register(event):
                duplicates += 1
                skip.add(number)
                continue
            accepted += 1
            if latest is not None and event.at < latest:
                ordered = False
            latest = event.at
            if kept is not None:
                kept.append(event)
                if len(kept) > KEEP_LIMIT:
                    kept = None
        if problems:
            raise ProblemsError(problems)
        if kept is not None:
            self._events.extend((e.at, e.seq, e) for e in kept)
            heapq.heapify(self._events)
            return accepted, duplicates
        again = _reread(path, skip, before, self._first_seq(accepted))
        if ordered:
            self._stream = again
        else:
            self._events.extend(again)
            heapq.heapify(self._events)
        return accepted, duplicates

    def _first_seq(self, accepted: int) -> int:
        return self._seq - accepted + 1

    def _register(self, event: Event) -> bool:
        """Take an event's id, ingestion number and suppression change; False for a
        duplicate id."""
        if not self.store.first_sighting(event.id):
            return False
        self._seq += 1
        event.seq = self._seq
        change = compliance.suppression_change(
            event.type, event.data, event.at, self.world.settings.default_region, self._seq
        )
        if change is not None:
            self.store.suppressions.add(change)
        at = event.at
        if self.first_at is None or at < self.first_at:
            self.first_at = at
        if self.last_at is None or at > self.last_at:
            self.last_at = at
        return True

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
            yield from chain.from_iterable(self._run(until))
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

    def _run(self, until: int | None) -> Iterator[list[dict[str, Any]]]:
        """The records of each instant with input, one list per instant."""
        if self.first_at is None or self.last_at is None:
            return
        tick_end = until if until is not None else self.last_at
        self._tick_end = tick_end
        self._timer_end = until if until is not None else _years_after(self.last_at, HORIZON)
        event_end = until if until is not None else NEVER
        ticks = self._cron(tick_end)
        pending = _Pending(self._events, self._stream)
        wakes, scheduled = self._wakes, self._scheduled
        pop = heapq.heappop
        while True:
            # The next instant with any input: a customer's timer, a cron tick, an event.
            while wakes and scheduled.get(wakes[0][1]) != wakes[0][0]:
                pop(wakes)  # stale: the customer's next wake moved
            now = wakes[0][0] if wakes else NEVER
            if ticks and ticks[0].at < now:
                now = ticks[0].at
            if pending.at < now and pending.at <= event_end:
                now = pending.at
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
            while pending.at == now:
                event = pending.pop()
                work.setdefault(event.customer_id, ([], []))[0].append(event)
            yield self._advance(now, work)

    def _advance(
        self, now: int, work: dict[str, tuple[list[Event], list[tuple[int, str]]]]
    ) -> list[dict[str, Any]]:
        """Advance every customer with work at ``now``; their records, by customer id."""
        records: list[dict[str, Any]] = []
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
                history=self._history.get(customer_id),
                tick_until=self._tick_end,
            )
            store.save(result.state)
            if result.history is not None:
                self._history[customer_id] = result.history
            if self.outbox is not None:
                self.outbox.extend(result.messages)
            wake = result.next_wake
            if wake is not None and wake <= self._timer_end:
                self._scheduled[customer_id] = wake
                heapq.heappush(self._wakes, (wake, customer_id))
            else:
                self._scheduled.pop(customer_id, None)
            records.extend(result.records)
        return records


class _Pending:
    """Stored events not yet applied, earliest first: a heap, or a stream in time order."""

    __slots__ = ("_heap", "_stream", "at", "_next")

    def __init__(
        self, heap: list[tuple[int, int, Event]], stream: Iterator[tuple[int, int, Event]] | None
    ) -> None:
        self._heap = heap
        self._stream = stream
        self._next: Event | None = None
        self.at = NEVER
        self._advance()

    def _advance(self) -> None:
        if self._heap:
            at, _, event = heapq.heappop(self._heap)
        elif self._stream is not None:
            item = next(self._stream, None)
            if item is None:
                self._stream = None
                self._next, self.at = None, NEVER
                return
            at, _, event = item
        else:
            self._next, self.at = None, NEVER
            return
        self._next, self.at = event, at

    def pop(self) -> Event:
        event = self._next
        assert event is not None
        self._advance()
        return event


def _signature(path: str | Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def _reread(
    path: str | Path, skip: set[int], before: tuple[int, int] | None, seq: int
) -> Iterator[tuple[int, int, Event]]:
    """The accepted events of a file read once already, numbered from ``seq`` as then."""
    if _signature(path) != before:
        raise ProblemsError(
            [Problem(str(path), 1, 1, "error", "the events file changed while it was read")]
        )
    for number, line in events.file_lines(path):
        if not line or line.isspace() or number in skip:
            continue
        event = events.parse_accepted(orjson.loads(line))
        event.seq = seq
        yield event.at, seq, event
        seq += 1


def simulate(
    world: engine.World, events: Iterable[Event], until: int | None = None
) -> list[dict[str, Any]]:
    """Run ``events`` through ``world`` in virtual time and return the records."""
    sim = Simulation(world)
    sim.ingest(events)
    return sim.run(until)
