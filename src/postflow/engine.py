"""The engine: journey semantics as one pure function per customer.

    advance(world, customer state, inputs, up to T) -> (new state, effects, next wake)

Inputs are the customer's events, the due timers of their instances (held in the state) and
cron ticks of audience journeys. The engine reads no clock and does no I/O: ``simulate``
drives it with a virtual clock and an in-memory store, the daemon with the wall clock and SQL,
and both must print the same records. :func:`advance` is the only place the order of inputs
is decided (contract section 1, "Order at one instant"):

- inputs go in logical-time order; at one instant, due timers fire first (instances by
  journey id, then entry), then cron ticks (by journey id), then events in ingestion order;
- an event older than what the customer has processed is applied at the processed time;
- an event a journey emits is applied at the step's time, after the events already given for
  that time; a timer that an input sets for the same instant fires before the next event.

The unit of work is one customer, because caps, ``set``, exits and ``emit`` span journeys.
The only thing customers share is the suppression list, asked of a
:class:`~postflow.world.SuppressionLookup` as a fact of an address over time, so customers
can be advanced in any order, by any number of workers. What one input does is in
:mod:`postflow.transitions`.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from postflow import durations
from postflow.effects import Advance, OutboundMessage
from postflow.events import Event
from postflow.machine import Machine
from postflow.state import ACTIVE, CustomerState, Instance
from postflow.transitions import MAX_EMIT_CHAIN, MAX_STEPS_PER_INSTANT, Transition, split_point
from postflow.world import NO_SUPPRESSIONS, JourneyVersions, SuppressionLookup, World

__all__ = [
    "MAX_EMIT_CHAIN",
    "MAX_STEPS_PER_INSTANT",
    "Advance",
    "JourneyVersions",
    "OutboundMessage",
    "SuppressionLookup",
    "World",
    "advance",
    "split_point",
]

_NEVER = 1 << 62


def advance(
    world: World,
    state: CustomerState | bytes,
    until: int,
    *,
    events: Iterable[Event] = (),
    ticks: Iterable[tuple[int, str]] = (),
    suppressions: SuppressionLookup = NO_SUPPRESSIONS,
    first_sighting: Callable[[str], bool] | None = None,
    owned: bool = False,
    history: Sequence[tuple[str, int, dict[str, Any]]] | None = None,
    tick_until: int | None = None,
    local_since: Mapping[str, int] | None = None,
) -> Advance:
    """Apply every input of one customer that is due at or before ``until``.

    ``events`` are the customer's stored, not yet applied events in ingestion order;
    ``ticks`` are ``(at, journey id)`` cron ticks this customer takes part in. Due timers come
    from ``state``, which is a :class:`CustomerState` or its stored document (bytes, as a
    store keeps it: decoding it makes the private copy the engine works on, so nothing is
    cloned twice). ``owned=True`` says the caller hands a :class:`CustomerState` over and will
    not use it again, so the engine works on it instead of a copy. ``first_sighting`` keeps
    ids global: an emitted event whose id was already ingested is dropped, as ingestion
    would. ``local_since`` (the durable runtime) gives, per ``timezone: customer`` journey,
    the instant from which this customer knows it, for a customer who has not seen it yet:
    a customer who existed when the journey was deployed (processed before, or imported with
    ``--backfill``) takes its ticks from the deployment on, as every customer takes a
    UTC audience's ticks, even with no input of their own since (a lapsed customer is
    quiet by definition). Otherwise ``state`` is not changed; the result
    holds the new state, the effects in production order, the events left for later and the
    customer's next wake time.
    """
    if isinstance(state, bytes):
        private = CustomerState.from_document(state)
    else:
        private = state if owned else state.clone()
    run = Transition(world, private, suppressions)
    if world.uses_history:
        # Owned: the caller hands the list over (simulate keeps one per customer), so events
        # are appended in place instead of copying a long history on every call.
        run.history = history if owned and isinstance(history, list) else list(history or ())
    queue = [(event.at, order, event) for order, event in enumerate(events)]
    if len(queue) > 1:
        heapq.heapify(queue)
    order = len(queue)
    pending_ticks = sorted(ticks, reverse=True) if ticks else []
    local = world.local_audience
    tick_limit = until if tick_until is None else min(until, tick_until)
    if local and local_since:
        _learn_local(private, local, local_since)
    emitted = run.outcome.emitted
    handled = 0
    instances = private.instances
    while True:
        # The next input, at its effective time: never before what was already processed.
        processed = private.processed_at
        floor = -_NEVER if processed is None else processed
        timer: Instance | None = None
        timer_at = _NEVER
        for inst in instances:
            wake = inst.wake_at
            if wake is not None and wake < timer_at and inst.status == ACTIVE:
                timer, timer_at = inst, wake
        if timer_at < floor:
            timer_at = floor
        tick_at = _NEVER
        if pending_ticks:
            tick_at = max(pending_ticks[-1][0], floor)
        local_at, local_journey = _NEVER, ""
        if local and private.local_ticks:  # a journey this customer knows (else none due)
            local_at, local_journey = _next_local_tick(run, local)
            if local_at > tick_limit:
                local_at = _NEVER
        event_at = _NEVER
        if queue:
            event_at = max(queue[0][0], floor)
        if timer is not None and timer_at <= min(tick_at, local_at) and timer_at <= event_at:
            if timer_at > until:
                break
            run.begin(timer_at)
            run.on_timer(timer)
        elif local_at <= event_at and (local_at, local_journey) < (tick_at, _last(pending_ticks)):
            run.begin(local_at)
            private.local_ticks[local_journey] = local_at
            run.on_tick(local_journey, local_at)
        elif tick_at <= event_at and pending_ticks:
            if tick_at > until:
                break
            at, journey = pending_ticks.pop()
            run.begin(at)
            run.on_tick(journey, at)
        elif queue:
            if event_at > until:
                break
            event = heapq.heappop(queue)[2]
            if event.backfill:  # history import: profile facts only, at no logical time
                run.on_backfill(event)
                if run.history is not None:
                    run.outcome.applied_at.append((event.seq, event.at))
                continue
            run.begin(event.at, event.depth)
            run.on_event(event)
            if run.history is not None:
                run.outcome.applied_at.append((event.seq, run.now))
        else:
            break
        if local:
            for machine in local:  # first seen with the journey: its ticks start after now
                private.local_ticks.setdefault(machine.id, run.now)
        instances = private.instances  # prune may have replaced the list
        # Emitted events join the queue behind every event already given for their time.
        while handled < len(emitted):
            new = emitted[handled]
            if first_sighting is not None and new.id is not None and not first_sighting(new.id):
                del emitted[handled]
                continue
            handled += 1
            heapq.heappush(queue, (new.at, order, new))
            order += 1
    outcome = run.outcome
    if queue:
        outcome.unapplied = [item[2] for item in sorted(queue)]
    outcome.next_wake = private.next_wake()
    if local and private.local_ticks:
        at, _ = _next_local_tick(run, local)
        if at != _NEVER and (tick_until is None or at <= tick_until):
            wake = outcome.next_wake
            outcome.next_wake = at if wake is None or at < wake else wake
    if run.history is not None:
        latest = max(until if until < _NEVER else 0, private.processed_at or 0)
        floor = latest - world.settings.history_keep
        kept = run.history
        if any(entry[1] <= floor for entry in kept[:8]):  # old entries lead: drop them
            kept = [entry for entry in kept if entry[1] > floor]
        outcome.history = kept
    return outcome


def _learn_local(
    state: CustomerState, local: tuple[Machine, ...], since: Mapping[str, int]
) -> None:
    """Start the ticks of local-time journeys this customer has not seen at the instant the
    shell says they became known to it, never before what the customer already processed
    (a tick is an input: history is never rewritten)."""
    processed = state.processed_at
    for machine in local:
        at = since.get(machine.id)
        if at is not None and machine.id not in state.local_ticks:
            state.local_ticks[machine.id] = at if processed is None else max(at, processed)


def _last(pending: list[tuple[int, str]]) -> str:
    return pending[-1][1] if pending else ""


def _next_local_tick(run: Transition, local: tuple[Machine, ...]) -> tuple[int, str]:
    """The customer's next ``timezone: customer`` tick: (instant, journey id), in the zone
    their profile has now (§9); ties by journey id."""
    best = (_NEVER, "")
    zone = run.zone()
    seen = run.state.local_ticks
    for machine in local:
        after = seen.get(machine.id)
        schedule = machine.trigger.schedule
        if after is None or schedule is None:
            continue
        at = durations.next_cron_tick(schedule, zone, after)
        if at is not None and (at, machine.id) < best:
            best = (at, machine.id)
    return best
