"""The due sweep: claim customers with due work, advance them through the engine, write back.

This is a shell. What a customer's inputs do, and in which order, is decided by
:func:`postflow.engine.advance` alone, the very function ``simulate`` calls; the sweep only
gathers each claimed customer's inputs (unapplied events, the cron ticks since their last
advance) and stores what comes back. Records carry logical times, so a late sweep writes the
same history as a punctual one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from postflow import engine
from postflow.machine import Machine
from postflow.state import CustomerState, StateFormatError
from postflow.store.batches import NEVER, Batches, Claimed, Outcome

log = logging.getLogger("postflow.sweep")


@dataclass
class SweepStats:
    customers: int = 0
    records: int = 0
    messages: int = 0
    errors: int = 0

    def add(self, other: SweepStats) -> None:
        self.customers += other.customers
        self.records += other.records
        self.messages += other.messages
        self.errors += other.errors


class Sweeper:
    """Advances due customers in batches for one worker (``owner``)."""

    def __init__(
        self,
        batches: Batches,
        world: Callable[[], engine.World],
        owner: str,
        *,
        batch: int = 1000,
        lease_us: int = 60_000_000,
    ) -> None:
        self.batches = batches
        self.store = batches.store
        self.world = world
        self.owner = owner
        self.batch = batch
        self.lease_us = lease_us
        self._beyond: tuple[int, int | None] | None = None
        self._local: dict[str, int] = {}  # this batch's local-time journeys -> deployed at
        self._deployed: dict[str, int] = {}  # every deployment read so far (never changes)

    @staticmethod
    def audience(world: engine.World) -> list[Machine]:
        return list(world.tick_audience)

    def run_until(
        self, until: int, *, should_stop: Callable[[], bool] = lambda: False
    ) -> SweepStats:
        """Drain every customer due at or before ``until``, batch after batch."""
        total = SweepStats()
        while not should_stop():
            stats = self.sweep_once(until)
            if stats.customers == 0:
                break
            total.add(stats)
        return total

    def sweep_once(self, until: int) -> SweepStats:
        """Claim one batch, advance it, write it back. Returns what it did."""
        world = self.world()
        audience = self.audience(world)
        keep = world.settings.history_keep if world.uses_history else None
        claimed = self.batches.claim(self.owner, until, self.batch, self.lease_us, keep)
        stats = SweepStats()
        if not claimed:
            return stats
        self.store.suppressions.refresh()
        horizon = min(until, self.batches.tick_horizon(audience))
        names = [m.id for m in audience]
        marks = [self._mark(c, until) for c in claimed]
        floor = min((m for m in marks if m is not None), default=horizon)
        tick_log = self.batches.ticks(floor, horizon, names)
        self._local = self._local_deployments(world)
        self._beyond = None
        taken: set[str] = set()

        def first_sighting(event_id: str) -> bool:
            if event_id in taken or self.batches.event_id_taken(event_id):
                return False
            taken.add(event_id)
            return True

        outcomes: list[Outcome] = []
        for claim, mark in zip(claimed, marks, strict=True):
            try:
                outcome = self._advance(
                    world, claim, mark, until, horizon, tick_log, names, first_sighting
                )
            except StateFormatError as exc:
                log.error("customer %s: %s", claim.customer_id, exc)
                self.batches.mark_error(self.owner, claim.customer_id, str(exc))
                stats.errors += 1
                continue
            outcomes.append(outcome)
            stats.records += len(outcome.records)
            stats.messages += len(outcome.messages)
        versions = {m.id: m.version for m in world.machines.values()}
        written = self.batches.write_back(self.owner, outcomes, versions)
        stats.customers = len(claimed)
        if len(written) < len(outcomes):
            log.warning(
                "%d customer(s) of this batch were taken over by another worker (lease expired)",
                len(outcomes) - len(written),
            )
        return stats

    @staticmethod
    def _mark(claim: Claimed, until: int) -> int | None:
        """Cron ticks after this time may still be news to the customer. A customer becomes
        known (to audience ticks) at their first input: ticks at that very instant are not
        theirs, as in simulate."""
        known = claim.known_since
        if known is None:
            due = [e.at for e in claim.events if e.at <= until]
            return min(due) if due else None
        return max(claim.ticks_until if claim.ticks_until is not None else -NEVER, known)

    def _local_deployments(self, world: engine.World) -> dict[str, int]:
        """When each loaded ``timezone: customer`` journey was deployed. A journey's
        deployment time never changes once written, so only journeys not yet seen deployed
        are read, not every one on every batch."""
        ids = [m.id for m in world.local_audience]
        missing = [j for j in ids if j not in self._deployed]
        if missing:
            self._deployed.update(self.batches.deployed_at(missing))
        return {j: self._deployed[j] for j in ids if j in self._deployed}

    def _local_since(self, known: int | None) -> dict[str, int] | None:
        """When the customer became known to each deployed ``timezone: customer`` journey:
        at its deployment for a customer known before (processed, or imported with
        ``--backfill``), else at their first input, like the ticks of a UTC audience."""
        if known is None or not self._local:
            return None
        return {journey: max(at, known) for journey, at in self._local.items()}

    def _tick_after(self, watermark: int, horizon: int, names: list[str]) -> int | None:
        """The first materialised tick after ``watermark``, asked once per batch for the
        usual case (every customer's watermark is the batch's horizon)."""
        if watermark != horizon:
            return self.batches.next_tick_after(watermark, names)
        if self._beyond is None or self._beyond[0] != horizon:
            self._beyond = (horizon, self.batches.next_tick_after(horizon, names))
        return self._beyond[1]

    def _advance(
        self,
        world: engine.World,
        claim: Claimed,
        mark: int | None,
        until: int,
        horizon: int,
        tick_log: list[tuple[int, str]],
        names: list[str],
        first_sighting: Callable[[str], bool],
    ) -> Outcome:
        events = claim.events
        known = claim.known_since if claim.known_since is not None else mark
        ticks = []
        if mark is not None:
            ticks = [(at, j) for at, j in tick_log if mark < at <= horizon]
        state: CustomerState | bytes = (
            claim.state if claim.state is not None else CustomerState(claim.customer_id)
        )
        result = engine.advance(
            world,
            state,
            until,
            events=events,
            ticks=ticks,
            suppressions=self.store.suppressions,
            first_sighting=first_sighting,
            history=claim.history,
            local_since=self._local_since(known),
        )
        left = {e.seq for e in result.unapplied}
        applied = [e.seq for e in events if e.seq not in left]
        watermark = None if mark is None else max(mark, horizon)
        due_at = result.next_wake
        for e in result.unapplied:
            if due_at is None or e.at < due_at:
                due_at = e.at
        if watermark is not None and names:
            # The tick log ends at the horizon and the watermark is at or past it, so the
            # next tick is always beyond what the batch read.
            nxt = self._tick_after(watermark, horizon, names)
            if nxt is not None and (due_at is None or nxt < due_at):
                due_at = nxt
        if known is None and result.state.processed_at is None and not applied:
            state_doc = claim.state
        else:
            state_doc = result.state.to_document()
        return Outcome(
            customer_id=claim.customer_id,
            state=state_doc,
            due_at=due_at,
            known_since=known,
            ticks_until=watermark,
            applied=applied,
            applied_at=[(seq, at) for seq, at in result.applied_at if seq],
            emitted=result.emitted,
            records=result.records,
            messages=result.messages,
            state_obj=result.state,
        )
