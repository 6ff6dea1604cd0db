"""What one input does to one customer: the journey semantics of contract sections 1 and 2.

:class:`Transition` is the engine's working context for one call of
:func:`postflow.engine.advance`: a private copy of the customer's state, the logical time of
the input being applied, and the effects produced so far. The engine decides *which* input
comes next (the order rules live there and only there); this module decides what an event, a
due timer or a cron tick does: profile merge and purchase facts, goals, exits, ``wait_for``,
triggers and entry, and stepping an instance until it blocks or ends.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from postflow import durations, expressions, messages, waits
from postflow.effects import Advance
from postflow.events import Event
from postflow.machine import END, Machine, Step
from postflow.state import ACTIVE, ENDED, CustomerState, Instance
from postflow.world import SuppressionLookup, World

MAX_EMIT_CHAIN = 32
MAX_SEEN = 64
"""Events kept per instance for ``since: entry`` (the newest win)."""
MAX_STEPS_PER_INSTANT = 10_000
_MAX_INT = (1 << 63) - 1


def split_point(journey: str, step: str, customer_id: str) -> float:
    """The contract's deterministic split draw u in [0, 1)."""
    digest = hashlib.sha256(f"{journey}\0{step}\0{customer_id}".encode()).hexdigest()
    return int(digest[:16], 16) / 2**64


def _jsonable(value: Any) -> Any:
    """Values written by ``set``/``emit`` must survive a JSON store unchanged: no NaN or
    infinity (JSON has none), no integers beyond 64 bits (orjson and SQL refuse them)."""
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, int):
        if not -_MAX_INT - 1 <= value <= _MAX_INT:
            raise expressions.EvalError("the integer is too large to store (64 bits at most)")
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise expressions.EvalError("the number is not finite")
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


class StepError(Exception):
    """A runtime error that ends the instance with reason ``error``."""


class Transition:
    """Working context: the state being changed, the current input's logical time, and the
    effects so far. ``state`` must already be the caller's private copy."""

    def __init__(self, world: World, state: CustomerState, suppressions: SuppressionLookup):
        self.world = world
        self.settings = world.settings
        self.state = state
        self.suppressions = suppressions
        self.outcome = Advance(state)
        self.depth = 0
        self.now = state.processed_at or 0
        self._now_dt: datetime | None = None
        self._helpers: expressions.Helpers | None = None
        self._zone: Any = None
        self._scopes: dict[str, dict[str, Any]] = {}
        self.history: list[tuple[str, int, dict[str, Any]]] | None = None
        """The customer's applied events (§9), when some journey uses history."""

    def begin(self, at: int, depth: int = 0) -> None:
        """Start an input due at ``at``. It is applied at the customer's processed time when
        that is later (history is never rewritten)."""
        processed = self.state.processed_at
        now = at if processed is None or at > processed else processed
        self.state.processed_at = now
        self.depth = depth
        self._scopes.clear()
        if now != self.now:
            self.now = now
            self._now_dt = None

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

    @property
    def now_dt(self) -> datetime:
        """``now`` as a datetime, for expressions; made only when a scope needs it."""
        if self._now_dt is None:
            self._now_dt = durations.to_datetime(self.now)
        return self._now_dt

    def reset_zone(self) -> None:
        """The profile's time zone may have changed: scopes and helpers carry it."""
        self._helpers = None
        self._zone = None
        self._scopes.clear()

    def helpers(self) -> expressions.Helpers:
        if self._helpers is None:
            self._helpers = self.world.helpers_for(self.zone())
        return self._helpers

    def zone(self) -> Any:
        """The customer's zone: ``customer.timezone``, else the configured one."""
        if self._zone is None:
            zone = self.settings.zone
            name = self.state.profile.get("timezone")
            if isinstance(name, str) and name:
                try:
                    zone = durations.load_zone(name)
                except durations.DurationError:
                    pass
            self._zone = zone
        return self._zone

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
                "_history": self.history,
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
            "_history": self.history,
        }
        if event is None:
            self._scopes[inst.id] = scope
        return scope

    def suppressed_reasons(self, address: str) -> frozenset[str]:
        return self.suppressions.reasons_at(address, self.now)

    # -- inputs --------------------------------------------------------------------------
    def on_event(self, event: Event) -> None:
        """Profile merge and purchase facts, then goals, exits and ``wait_for`` of existing
        instances (journeys by id, instances by entry), then triggers."""
        profile = self.state.profile
        if event.customer:
            profile.update(event.customer)
            self.reset_zone()
        if event.type == self.settings.purchase_event:
            self.purchase_facts(event)
        if self.history is not None:  # the event being applied counts too
            self.history.append((event.type, self.now, event.data))
        view = event.view()
        etype = event.type
        for inst in list(self.state.instances):
            machine = self.pinned(inst)
            if machine is None:
                continue
            self.check_goal(machine, inst, view, etype)
            if inst.status != ACTIVE:
                continue
            if self.check_exit(machine, inst, view, etype):
                continue
            resumed = False
            if inst.waiting == "wait_for" and inst.step is not None:
                step = self.step_of(machine, inst, inst.step)
                if step is not None and self.now < inst.step_started + step.timeout:
                    goto = waits.matching(self, inst, step, view)
                    if goto is not None:
                        resumed = True
                        inst.last_event = view
                        inst.wake_at = None
                        inst.waiting = None
                        self.advance(machine, inst, goto)
            elif inst.waiting == "wait_until" and inst.step is not None:
                step = self.step_of(machine, inst, inst.step)
                if (
                    step is not None
                    and self.now < inst.step_started + step.timeout
                    and step.condition is not None
                    and step.condition(self.scope(inst))
                ):
                    inst.wake_at = None
                    inst.waiting = None
                    self.advance(machine, inst, step.next)
            if not resumed and etype in machine.since_types:
                inst.seen.append(view)
                if len(inst.seen) > MAX_SEEN:
                    del inst.seen[: len(inst.seen) - MAX_SEEN]
        for machine in self.world.by_event.get(etype, ()):
            trigger = machine.trigger
            if trigger.condition is not None:
                scope = self.scope(None, view)
                if not trigger.condition(scope):
                    continue
            self.try_enter(machine, view)
        self.prune()

    def on_backfill(self, event: Event) -> None:
        """An imported past event (``ingest --backfill``): merge the profile and purchase
        facts; start, exit and resume nothing, and leave the processed time alone."""
        if event.customer:
            self.state.profile.update(event.customer)
            self.reset_zone()
        if event.type == self.settings.purchase_event:
            self.purchase_facts(event)
        if self.history is not None:
            self.history.append((event.type, event.at, event.data))

    def on_timer(self, inst: Instance) -> None:
        """Fire ``inst``'s timer (due now): end a wait, time a ``wait_for`` out, or release a
        message held by quiet hours."""
        machine = self.pinned(inst)
        step = None
        if machine is not None and inst.step is not None:
            step = self.step_of(machine, inst, inst.step)
        if machine is not None and step is not None:
            waiting = inst.waiting
            inst.wake_at = None
            inst.waiting = None
            if waiting == "wait_for":
                self.advance(machine, inst, step.on_timeout or step.next)
            elif waiting == "wait_until":
                waits.check_until(self, machine, inst, step)
            elif waiting == "hold":
                outcome = self.safe_step(machine, inst, step, released=True)
                if outcome is not False:
                    self.advance(machine, inst, outcome if isinstance(outcome, str) else step.next)
            else:
                self.advance(machine, inst, step.next)
        self.prune()

    def on_tick(self, journey: str, tick: int) -> None:
        """An audience journey's cron tick: enter when ``audience`` holds."""
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

    # -- versions --------------------------------------------------------------------------
    def pinned(self, inst: Instance) -> Machine | None:
        """The version ``inst`` entered with. When it cannot be had, an active instance ends
        with reason ``error`` (never run on another version); an ended one is left to prune."""
        machine = self.world.machine_of(inst)
        if machine is None and inst.status == ACTIVE:
            self.finish(
                inst,
                "error",
                f"journey {inst.journey!r} version {inst.version} is not available",
            )
        return machine

    def step_of(self, machine: Machine, inst: Instance, step_id: str) -> Step | None:
        step = machine.steps.get(step_id)
        if step is None:
            self.finish(inst, "error", f"step {step_id!r} is not in version {machine.version}")
        return step

    # -- profile facts ---------------------------------------------------------------------
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
        if machine.filter is not None and not machine.filter(self.scope(None, view)):
            return  # §9: filtered before entry key, reentry and cooldown; no record
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
                state.remember_key(jid, key)
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
        state = self.state
        if any(i.status == ENDED for i in state.instances):
            keep = []
            for inst in state.instances:
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
            state.instances = keep
        sent = state.sent
        if sent and sent[0][1] <= self.now - self.world.cap_horizon:
            floor = self.now - self.world.cap_horizon
            state.sent = [entry for entry in sent if entry[1] > floor]

    # -- stepping ------------------------------------------------------------------------
    def safe_step(
        self, machine: Machine, inst: Instance, step: Step, *, released: bool = False
    ) -> bool | str:
        """Run one step; any error ends the instance with reason ``error`` (a step that
        raises must never stall the customer, nor the batch a worker holds)."""
        try:
            return self.run_step(machine, inst, step, released=released)
        except StepError as exc:
            self.finish(inst, "error", str(exc))
        except Exception as exc:  # noqa: BLE001 - the backstop: one broken step, one instance
            self.finish(inst, "error", f"{type(exc).__name__}: {exc}")
        return False

    def advance(self, machine: Machine, inst: Instance, step_id: str) -> None:
        """Run steps from ``step_id`` until the instance blocks or ends, all at ``now``.

        Steps are counted per instance and instant, across inputs, so no loop can spin
        forever at one logical time (``validate`` rejects such loops; this is the backstop)."""
        if inst.steps_at != self.now:
            inst.steps_at = self.now
            inst.steps = 0
        while inst.steps < MAX_STEPS_PER_INSTANT:
            inst.steps += 1
            if inst.status != ACTIVE:
                return
            if step_id == END:
                self.finish(inst, "completed")
                return
            step = self.step_of(machine, inst, step_id)
            if step is None:
                return
            inst.step = step_id
            inst.step_started = self.now
            outcome = self.safe_step(machine, inst, step)
            if outcome is False:
                return  # blocked, or ended by an error
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
                release = waits.held_until(self, machine, kind)
                if release is not None:
                    inst.wake_at = release
                    inst.waiting = "hold"
                    return False
            if machine.filter is not None and not machine.filter(self.scope(inst)):
                self.finish(inst, "filtered")  # §9: re-checked as each message is decided
                return False
            if messages.message(self, inst, step) or step.on_skip is None:
                return True
            return step.on_skip
        if kind == "wait":
            due = self.wait_until(inst, step)
            if due is not None and due > now:
                inst.wake_at = due
                inst.waiting = "wait"
                return False
            return True
        if kind == "wait_for":
            if step.since == "entry":
                goto = waits.already_happened(self, inst, step)
                if goto is not None:
                    return goto
            inst.wake_at = now + step.timeout
            inst.waiting = "wait_for"
            return False
        if kind == "wait_until":
            if step.condition is not None and step.condition(self.scope(inst)):
                return True
            if waits.until_next(self, inst, step):
                return False
            return step.on_timeout or True  # timeout 0s: timed out at once
        if kind == "branch":
            scope = self.scope(inst)
            for condition, goto in step.branches:
                if condition is None or condition(scope):
                    return goto
            return True
        if kind == "split":
            return self.split(machine, inst, step)
        if kind == "goto":
            return step.goto or END
        if kind == "set":
            self.assign(inst, step)
            return True
        if kind == "emit":
            self.emit(inst, step)
            return True
        if kind == "webhook":
            messages.webhook(self, inst, step)
            return True
        raise StepError(f"unknown step kind {kind!r}")  # pragma: no cover - schema forbids

    def split(self, machine: Machine, inst: Instance, step: Step) -> str:
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

    def assign(self, inst: Instance, step: Step) -> None:
        scope = self.scope(inst)
        for target, name, value in step.assignments:
            try:
                result = _jsonable(value(scope))
            except expressions.EvalError as exc:
                raise StepError(f"set {target}.{name}: {exc}") from None
            bucket = self.state.profile if target == "customer" else inst.vars
            if result is None:
                bucket.pop(name, None)
            else:
                bucket[name] = result
            if target == "customer" and name == "timezone":
                self.reset_zone()
                scope = self.scope(inst)

    def wait_until(self, inst: Instance, step: Step) -> int | None:
        if step.until is not None:
            try:
                value = step.until(self.scope(inst))
            except expressions.EvalError as exc:
                raise StepError(f"wait until: {exc}") from None
            if value is None:
                return None
            if isinstance(value, datetime):
                if value.tzinfo is None:
                    raise StepError("wait until: the datetime has no time zone")
                return durations.from_datetime(value)
            if isinstance(value, str):
                try:
                    return durations.parse_instant(value)
                except durations.DurationError as exc:
                    raise StepError(f"wait until: {exc}") from None
            raise StepError(f"wait until: expected a datetime, got {type(value).__name__}")
        due = self.now + step.duration
        if step.at is not None and step.days is not None:
            due = durations.next_local_at_on(due, step.at, self.zone(), step.days)
        elif step.at is not None:
            due = durations.next_local_at(due, step.at, self.zone())
        return due

    def emit(self, inst: Instance, step: Step) -> None:
        if self.depth + 1 > MAX_EMIT_CHAIN:
            raise StepError(f"more than {MAX_EMIT_CHAIN} chained emits")
        scope = self.scope(inst)
        data: dict[str, Any] = {}
        for name, value in step.emit_data:
            try:
                data[name] = _jsonable(value(scope))
            except expressions.EvalError as exc:
                raise StepError(f"emit {name}: {exc}") from None
        count = inst.emits.get(step.id, 0) + 1
        inst.emits[step.id] = count
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
