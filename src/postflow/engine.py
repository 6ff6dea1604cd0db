"""The engine: journey semantics as pure functions.

    (world, customer state, input, logical time) -> (new customer state, effects)

An input is an event, a due timer of one instance, or a cron tick of an audience journey. The
engine reads no clock and does no I/O: ``simulate`` drives it with a virtual clock and an
in-memory store, the daemon with the wall clock and SQL, and both must print the same records.

The unit of work is one customer, because caps, ``set``, exits and ``emit`` span journeys.
Effects are returned, never performed: records (contract section 3), outbound messages for the
outbox, emitted events for ingestion, and suppression-list changes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from postflow import compliance, durations, expressions, messages
from postflow.config import Settings
from postflow.effects import OutboundMessage, Outcome, SuppressionChange
from postflow.events import SUPPRESSED, UNSUPPRESSED, Event
from postflow.machine import END, Machine, Step
from postflow.state import ACTIVE, ENDED, CustomerState, Instance

__all__ = [
    "World",
    "Outcome",
    "OutboundMessage",
    "SuppressionChange",
    "apply_event",
    "apply_tick",
    "fire_timer",
    "split_point",
]

MAX_EMIT_CHAIN = 32
MAX_STEPS_PER_INSTANT = 10_000


@dataclass(frozen=True)
class World:
    """What the engine consults besides the customer: compiled journeys and settings.

    ``machines`` maps a journey id to its newest version (new entries take it); ``versions``
    keeps every loaded version so instances stay pinned to the one they entered with.
    """

    machines: Mapping[str, Machine]
    settings: Settings
    versions: Mapping[tuple[str, str], Machine] = field(default_factory=dict)
    by_event: Mapping[str, tuple[Machine, ...]] = field(default_factory=dict)
    cap_horizon: int = 0  # the longest frequency-cap window: older send history is dropped

    @classmethod
    def build(cls, machines: Mapping[str, Machine], settings: Settings) -> World:
        ordered = sorted(machines.values(), key=lambda m: m.id)
        by_event: dict[str, list[Machine]] = {}
        for m in ordered:
            if m.trigger.event is not None:
                by_event.setdefault(m.trigger.event, []).append(m)
        return cls(
            machines=dict(machines),
            settings=settings,
            versions={(m.id, m.version): m for m in ordered},
            by_event={k: tuple(v) for k, v in by_event.items()},
            cap_horizon=max((limit.per for limit in settings.limits.values()), default=0),
        )

    def machine_of(self, instance: Instance) -> Machine | None:
        return self.versions.get((instance.journey, instance.version)) or self.machines.get(
            instance.journey
        )


# -- public entry points -------------------------------------------------------------------


def apply_event(
    world: World,
    state: CustomerState,
    event: Event,
    suppressions: Mapping[str, frozenset[str]],
) -> Outcome:
    """Apply one event: profile merge and purchase facts, then goals, exits and ``wait_for``
    of existing instances (journeys by id, instances by entry), then triggers."""
    run = _Run(world, state, suppressions, event.at, depth=event.depth)
    run.on_event(event)
    return run.outcome


def fire_timer(
    world: World,
    state: CustomerState,
    instance_id: str,
    due: int,
    suppressions: Mapping[str, frozenset[str]],
) -> Outcome:
    """Fire one instance's timer due at ``due``. A stale timer (the instance moved on or
    ended) changes nothing."""
    inst = next((i for i in state.instances if i.id == instance_id), None)
    if inst is None or inst.status != ACTIVE or inst.wake_at != due or inst.step is None:
        return Outcome(state)
    run = _Run(world, state, suppressions, due)
    run.on_timer(instance_id, due)
    return run.outcome


def apply_tick(
    world: World,
    state: CustomerState,
    journey: str,
    tick: int,
    suppressions: Mapping[str, frozenset[str]],
) -> Outcome:
    """An audience journey's cron tick for one customer: enter when ``audience`` holds."""
    run = _Run(world, state, suppressions, tick)
    run.on_tick(journey, tick)
    return run.outcome


def split_point(journey: str, step: str, customer_id: str) -> float:
    """The contract's deterministic split draw u in [0, 1)."""
    digest = hashlib.sha256(f"{journey}\0{step}\0{customer_id}".encode()).hexdigest()
    return int(digest[:16], 16) / 2**64


def _jsonable(value: Any) -> Any:
    """Values written by ``set``/``emit`` must survive a JSON store."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, datetime):
        return durations.format_instant(durations.from_datetime(value))
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    raise expressions.EvalError(f"value of type {type(value).__name__} cannot be stored")


def _instant_or_none(value: Any) -> int | None:
    if isinstance(value, str):
        try:
            return durations.parse_instant(value)
        except durations.DurationError:
            return None
    return None


class _StepError(Exception):
    """A runtime error that ends the instance with reason ``error``."""


# -- one input ------------------------------------------------------------------------------


class _Run:
    """Working context for one input: a private copy of the state, the logical time, and the
    effects produced so far."""

    def __init__(
        self,
        world: World,
        state: CustomerState,
        suppressions: Mapping[str, frozenset[str]],
        at: int,
        *,
        depth: int = 0,
    ) -> None:
        self.world = world
        self.settings = world.settings
        self.state = state.clone()
        processed = self.state.processed_at
        self.now = at if processed is None or at > processed else processed
        self.state.processed_at = self.now
        self.now_dt = durations.to_datetime(self.now)
        self.suppressions = suppressions
        self.overlay: dict[str, frozenset[str] | None] = {}
        self.depth = depth
        self.outcome = Outcome(self.state)
        self._helpers: expressions.Helpers | None = None
        self._scopes: dict[str, dict[str, Any]] = {}

    # -- records and scope ---------------------------------------------------------------
    def record(self, kind: str, inst: Instance, **fields: Any) -> None:
        """Add a record. Callers pass fields in the contract's order (``simulate.FIELD_ORDER``),
        so printing never reorders keys."""
        rec: dict[str, Any] = {
            "kind": kind,
            "at": self.now,
            "customer_id": self.state.customer_id,
            "journey": inst.journey,
            "instance": inst.id,
        }
        for k, v in fields.items():
            if v is not None:
                rec[k] = v
        if inst.variant is not None:
            rec["variant"] = inst.variant
        self.outcome.records.append(rec)

    def reset_zone(self) -> None:
        """The profile's time zone may have changed: scopes carry it, rebuild them."""
        self._helpers = None
        self._scopes.clear()

    def helpers(self) -> expressions.Helpers:
        if self._helpers is None:
            self._helpers = expressions.Helpers(self.zone(), self.settings.catalog)
        return self._helpers

    def zone(self) -> Any:
        name = self.state.profile.get("timezone")
        if isinstance(name, str) and name:
            try:
                return durations.load_zone(name)
            except durations.DurationError:
                pass
        return self.settings.zone

    def scope(self, inst: Instance | None, event: dict[str, Any] | None = None) -> dict[str, Any]:
        if inst is None:
            return {
                "customer": self.state.profile,
                "trigger": event,
                "event": event,
                "last_event": event,
                "vars": {},
                "instance": None,
                "now": self.now_dt,
                "_helpers": self.helpers(),
            }
        last_event = inst.last_event or inst.trigger
        if event is None:
            # Steps of one instance share a scope within an input: profile and vars are live
            # dicts; only the variant, last_event or time zone can make it stale.
            cached = self._scopes.get(inst.id)
            if (
                cached is not None
                and cached["instance"]["variant"] == inst.variant
                and cached["last_event"] is last_event
            ):
                return cached
        scope = {
            "customer": self.state.profile,
            "trigger": inst.trigger,
            "event": event,
            "last_event": last_event,
            "vars": inst.vars,
            "instance": {
                "id": inst.id,
                "key": inst.key,
                "journey": inst.journey,
                "entered_at": durations.format_instant(inst.entered_at),
                "variant": inst.variant,
            },
            "now": self.now_dt,
            "_helpers": self.helpers(),
        }
        if event is None:
            self._scopes[inst.id] = scope
        return scope

    # -- inputs --------------------------------------------------------------------------
    def on_event(self, event: Event) -> None:
        profile = self.state.profile
        if event.customer:
            profile.update(event.customer)
            self.reset_zone()
        if event.type == self.settings.purchase_event:
            self.purchase_facts(event)
        if event.type in (SUPPRESSED, UNSUPPRESSED):
            self.suppression(event)
        view = event.view()
        etype = event.type
        for inst in list(self.state.instances):
            machine = self.world.machine_of(inst)
            if machine is None:
                continue
            self.check_goal(machine, inst, view, etype)
            if inst.status != ACTIVE:
                continue
            if self.check_exit(machine, inst, view, etype):
                continue
            if inst.waiting == "wait_for" and inst.step is not None:
                step = machine.steps[inst.step]
                if (
                    step.event == etype
                    and self.now < inst.step_started + step.timeout
                    and (step.condition is None or step.condition(self.scope(inst, view)))
                ):
                    inst.last_event = view
                    inst.wake_at = None
                    inst.waiting = None
                    self.advance(machine, inst, step.next)
        for machine in self.world.by_event.get(etype, ()):
            trigger = machine.trigger
            if trigger.condition is not None:
                scope = self.scope(None, view)
                if not trigger.condition(scope):
                    continue
            self.try_enter(machine, view)
        self.prune()

    def on_timer(self, instance_id: str, due: int) -> None:
        inst = next((i for i in self.state.instances if i.id == instance_id), None)
        if inst is None or inst.status != ACTIVE or inst.wake_at != due or inst.step is None:
            return
        machine = self.world.machine_of(inst)
        if machine is None:
            return
        step = machine.steps[inst.step]
        waiting = inst.waiting
        inst.wake_at = None
        inst.waiting = None
        if waiting == "wait_for":
            self.advance(machine, inst, step.on_timeout or step.next)
        elif waiting == "hold":
            if self.run_step(machine, inst, step, released=True):
                self.advance(machine, inst, step.next)
        else:
            self.advance(machine, inst, step.next)
        self.prune()

    def on_tick(self, journey: str, tick: int) -> None:
        machine = self.world.machines.get(journey)
        if machine is None or machine.trigger.audience is None:
            return
        view = {
            "type": "schedule",
            "at": durations.format_instant(tick),
            "customer_id": self.state.customer_id,
            "data": {},
        }
        if machine.trigger.audience(self.scope(None, view)):
            self.try_enter(machine, view)
        self.prune()

    # -- profile facts and suppressions ---------------------------------------------------
    def purchase_facts(self, event: Event) -> None:
        profile = self.state.profile
        count = profile.get("orders_count")
        profile["orders_count"] = (count if isinstance(count, int) else 0) + 1
        total = event.data.get("total")
        spent = profile.get("total_spent")
        spent = spent if isinstance(spent, (int, float)) and not isinstance(spent, bool) else 0
        if isinstance(total, (int, float)) and not isinstance(total, bool):
            spent = spent + total
            if isinstance(spent, float):  # 10.1 + 20.2 is 30.299999999999997 in binary
                spent = round(spent, 6)
        profile["total_spent"] = spent
        at = durations.format_instant(event.at)
        first = _instant_or_none(profile.get("first_order_at"))
        if first is None or event.at < first:
            profile["first_order_at"] = at
        last = _instant_or_none(profile.get("last_order_at"))
        if last is None or event.at > last:
            profile["last_order_at"] = at

    def suppression(self, event: Event) -> None:
        address = compliance.normalize_address(
            event.data.get("address"), self.settings.default_region
        )
        if address is None:
            return
        remove = event.type == UNSUPPRESSED
        reason = None if remove else str(event.data.get("reason") or "manual")
        self.outcome.suppressions.append(SuppressionChange(address, reason, remove))
        current = self.suppressed_reasons(address)
        self.overlay[address] = None if reason is None else current | {reason}

    def suppressed_reasons(self, address: str) -> frozenset[str]:
        if address in self.overlay:
            return self.overlay[address] or frozenset()
        return self.suppressions.get(address, frozenset())

    # -- goals, exits, entry --------------------------------------------------------------
    def check_goal(
        self, machine: Machine, inst: Instance, view: dict[str, Any], etype: str
    ) -> None:
        goal = machine.goal
        if goal is None or inst.converted or goal.event != etype:
            return
        if goal.within is not None:
            if not inst.entered_at <= self.now < inst.entered_at + goal.within:
                return
        elif inst.status != ACTIVE:
            return
        if goal.condition is not None and not goal.condition(self.scope(inst, view)):
            return
        inst.converted = True
        self.record("goal", inst, step=inst.step if inst.status == ACTIVE else None)

    def check_exit(
        self, machine: Machine, inst: Instance, view: dict[str, Any], etype: str
    ) -> bool:
        for rule in machine.exits:
            if rule.event != etype:
                continue
            if rule.condition is None or rule.condition(self.scope(inst, view)):
                self.finish(inst, "exit_event")
                return True
        return False

    def try_enter(self, machine: Machine, view: dict[str, Any]) -> None:
        state = self.state
        jid = machine.id
        entry = machine.entry
        if entry.cooldown is not None:
            last = state.last_entered.get(jid)
            if last is not None and self.now - last < entry.cooldown:
                return
        key: str | None = state.customer_id
        error: str | None = None
        if entry.key is not None:
            try:
                key = self.key_text(entry.key(self.scope(None, view)))
            except expressions.EvalError as exc:
                key, error = None, f"entry key: {exc}"
        if key is not None:
            if entry.reentry == "never" and key in state.keys.get(jid, ()):
                return
            if entry.reentry == "after_exit" and any(
                i.journey == jid and i.key == key and i.status == ACTIVE for i in state.instances
            ):
                return
        n = state.entries.get(jid, 0) + 1
        state.entries[jid] = n
        state.last_entered[jid] = self.now
        if key is not None:
            if entry.reentry == "never":
                state.keys.setdefault(jid, []).append(key)
            if entry.reentry == "always":
                key = f"{key}#{n}"
        inst = Instance(
            id=f"{jid}:{state.customer_id}:{n}",
            journey=jid,
            version=machine.version,
            n=n,
            key=key,
            entered_at=self.now,
            trigger=view,
        )
        self.insert(inst)
        self.record("enter", inst, key=key)
        if error is not None:
            self.finish(inst, "error", error)
            return
        self.advance(machine, inst, machine.first)

    @staticmethod
    def key_text(value: Any) -> str:
        if value is None:
            raise expressions.EvalError("the entry key is none")
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return str(value)

    def insert(self, inst: Instance) -> None:
        instances = self.state.instances
        index = len(instances)
        while index > 0 and instances[index - 1].journey > inst.journey:
            index -= 1
        instances.insert(index, inst)

    def finish(self, inst: Instance, reason: str, error: str | None = None) -> None:
        inst.status = ENDED
        inst.ended_at = self.now
        inst.exit_reason = reason
        inst.wake_at = None
        inst.waiting = None
        self.record("exit", inst, reason=reason, error=error)
        inst.step = None

    def prune(self) -> None:
        """Drop ended instances whose goal window has closed, and send history older than
        every frequency-cap window: state stays small however long a customer lives."""
        keep = []
        for inst in self.state.instances:
            if inst.status == ENDED:
                machine = self.world.machine_of(inst)
                goal = machine.goal if machine else None
                if (
                    goal is None
                    or goal.within is None
                    or inst.converted
                    or self.now >= inst.entered_at + goal.within
                ):
                    continue
            keep.append(inst)
        self.state.instances = keep
        sent = self.state.sent
        if sent and sent[0][1] <= self.now - self.world.cap_horizon:
            floor = self.now - self.world.cap_horizon
            self.state.sent = [(c, at) for c, at in sent if at > floor]

    # -- stepping ------------------------------------------------------------------------
    def advance(self, machine: Machine, inst: Instance, step_id: str) -> None:
        """Run steps from ``step_id`` until the instance blocks or ends, all at ``now``.

        Steps are counted per instance and instant, across inputs, so no loop can spin
        forever at one logical time (``validate`` rejects such loops; this is the backstop)."""
        counters = inst.counters
        if counters.get("\0instant") != self.now:
            counters["\0instant"] = self.now
            counters["\0steps"] = 0
        while counters["\0steps"] < MAX_STEPS_PER_INSTANT:
            counters["\0steps"] += 1
            if inst.status != ACTIVE:
                return
            if step_id == END:
                self.finish(inst, "completed")
                return
            step = machine.steps[step_id]
            inst.step = step_id
            inst.step_started = self.now
            try:
                outcome = self.run_step(machine, inst, step)
            except _StepError as exc:
                self.finish(inst, "error", str(exc))
                return
            if outcome is False:
                return  # blocked
            step_id = outcome if isinstance(outcome, str) else step.next
        self.finish(inst, "error", f"more than {MAX_STEPS_PER_INSTANT} steps at one instant")

    def run_step(
        self, machine: Machine, inst: Instance, step: Step, *, released: bool = False
    ) -> bool | str:
        """Execute one step. Returns False when the instance blocks, True to follow ``next``,
        or a step id to jump to."""
        kind = step.kind
        now = self.now
        if kind == "email" or kind == "sms":
            if not released:
                quiet = machine.quiet_hours_for(self.settings.quiet_hours)
                if quiet is not None and kind in quiet.channels:
                    release = durations.quiet_release(now, quiet.start, quiet.end, self.zone())
                    if release is not None:
                        inst.wake_at = release
                        inst.waiting = "hold"
                        return False
            messages.message(self, inst, step)
            return True
        if kind == "wait":
            due = self.wait_until(inst, step)
            if due is not None and due > now:
                inst.wake_at = due
                inst.waiting = "wait"
                return False
            return True
        if kind == "wait_for":
            inst.wake_at = now + step.timeout
            inst.waiting = "wait_for"
            return False
        if kind == "branch":
            scope = self.scope(inst)
            for condition, goto in step.branches:
                if condition is None or condition(scope):
                    return goto
            return True
        if kind == "split":
            u = split_point(machine.id, step.id, self.state.customer_id)
            total = sum(w for w, _, _ in step.splits)
            cumulative = 0.0
            chosen = step.splits[-1]
            for entry in step.splits:
                cumulative += entry[0]
                if cumulative / total > u:
                    chosen = entry
                    break
            if inst.variant is None:
                inst.variant = chosen[2]
            return chosen[1]
        if kind == "goto":
            return step.goto or END
        if kind == "set":
            scope = self.scope(inst)
            for target, name, value in step.assignments:
                try:
                    result = _jsonable(value(scope))
                except expressions.EvalError as exc:
                    raise _StepError(f"set {target}.{name}: {exc}") from None
                bucket = self.state.profile if target == "customer" else inst.vars
                if result is None:
                    bucket.pop(name, None)
                else:
                    bucket[name] = result
                if target == "customer" and name == "timezone":
                    self.reset_zone()
                    scope = self.scope(inst)
            return True
        if kind == "emit":
            self.emit(inst, step)
            return True
        if kind == "webhook":
            messages.webhook(self, inst, step)
            return True
        raise _StepError(f"unknown step kind {kind!r}")  # pragma: no cover - schema forbids

    def wait_until(self, inst: Instance, step: Step) -> int | None:
        if step.until is not None:
            try:
                value = step.until(self.scope(inst))
            except expressions.EvalError as exc:
                raise _StepError(f"wait until: {exc}") from None
            if value is None:
                return None
            if isinstance(value, datetime):
                if value.tzinfo is None:
                    raise _StepError("wait until: the datetime has no time zone")
                return durations.from_datetime(value)
            if isinstance(value, str):
                try:
                    return durations.parse_instant(value)
                except durations.DurationError as exc:
                    raise _StepError(f"wait until: {exc}") from None
            raise _StepError(f"wait until: expected a datetime, got {type(value).__name__}")
        due = self.now + step.duration
        if step.at is not None:
            due = durations.next_local_at(due, step.at, self.zone())
        return due

    def emit(self, inst: Instance, step: Step) -> None:
        if self.depth + 1 > MAX_EMIT_CHAIN:
            raise _StepError(f"more than {MAX_EMIT_CHAIN} chained emits")
        scope = self.scope(inst)
        data: dict[str, Any] = {}
        for name, value in step.emit_data:
            try:
                data[name] = _jsonable(value(scope))
            except expressions.EvalError as exc:
                raise _StepError(f"emit {name}: {exc}") from None
        count = inst.counters.get(step.id, 0) + 1
        inst.counters[step.id] = count
        self.outcome.emitted.append(
            Event(
                type=str(step.event),
                customer_id=self.state.customer_id,
                at=self.now,
                id=f"{inst.id}:{step.id}:{count}",
                data=data,
                depth=self.depth + 1,
            )
        )
