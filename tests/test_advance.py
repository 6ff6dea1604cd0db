"""engine.advance, the one per-customer entry point: input order, suppression over time,
pinned versions, and a bad step that must not stall anything else."""

from __future__ import annotations

import dataclasses
from typing import Any

from conftest import Project, pick

from postflow import compliance, durations, engine, events, machine, simulate
from postflow.state import CustomerState
from postflow.store.memory import SuppressionTimeline

T0 = "2027-01-10T12:00:00Z"
t0 = durations.parse_instant(T0)
HOUR = 3_600_000_000


def ev(type_: str, cid: str = "c1", at: str = T0, **extra: Any) -> events.Event:
    return events.parse_event({"type": type_, "customer_id": cid, "at": at, **extra})


def shown(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [simulate.record_json(r) for r in records]


MAILER = """
id: mailer
trigger: {event: go}
steps:
  - id: pause
    wait: 1h
  - id: mail
    email: {subject: "Hi", body: "Hello"}
"""


# -- suppression: a fact of an address over time ----------------------------------------------


def test_suppression_by_another_customer_at_the_same_instant_blocks_a_due_timer(
    proj: Project,
) -> None:
    # c1's timer is due at 13:00; c2's suppression of the same address is at 13:00 too.
    # Timers fire before events at one instant, but suppression belongs to the address and
    # takes effect at its `at` for every customer: the message is suppressed.
    proj.journey("mailer", MAILER)
    records = proj.simulate(
        [
            {"type": "go", "customer_id": "c1", "at": T0, "customer": {"email": "a@x.com"}},
            {
                "type": "address_suppressed",
                "customer_id": "c2",
                "at": "2027-01-10T13:00:00Z",
                "data": {"address": "A@X.com", "reason": "bounce"},
            },
        ]
    )
    assert pick(records, "customer_id", "status", "reason", kind="message") == [
        ("c1", "skipped", "suppressed")
    ]


def test_a_suppression_after_the_message_time_does_not_reach_back(proj: Project) -> None:
    proj.journey("mailer", MAILER)
    records = proj.simulate(
        [
            {"type": "go", "customer_id": "c1", "at": T0, "customer": {"email": "a@x.com"}},
            {
                "type": "address_suppressed",
                "customer_id": "c2",
                "at": "2027-01-10T13:00:00.000001Z",
                "data": {"address": "a@x.com", "reason": "bounce"},
            },
        ]
    )
    assert pick(records, "status", kind="message") == [("sent",)]


def test_customers_decide_alike_in_any_processing_order(proj: Project) -> None:
    proj.journey("mailer", MAILER)
    world = proj.world()
    inputs = {
        "c1": [ev("go", "c1", customer={"email": "a@x.com"})],
        "c2": [
            ev(
                "address_suppressed",
                "c2",
                at="2027-01-10T12:30:00Z",
                data={"address": "a@x.com", "reason": "spamreport"},
            )
        ],
    }
    timeline = SuppressionTimeline()
    for evts in inputs.values():
        for e in evts:
            change = compliance.suppression_change(e.type, e.data, e.at, None)
            if change is not None:
                timeline.add(change)
    until = t0 + 2 * HOUR
    runs = []
    for order in (["c1", "c2"], ["c2", "c1"]):
        out = {}
        for cid in order:
            result = engine.advance(
                world, CustomerState(cid), until, events=inputs[cid], suppressions=timeline
            )
            out[cid] = result.records
        runs.append(out)
    assert runs[0] == runs[1]
    assert pick(shown(runs[0]["c1"]), "reason", kind="message") == [("suppressed",)]


def test_timeline_follows_the_latest_change_at_or_before_t() -> None:
    timeline = SuppressionTimeline()

    def add(at: int, reason: str | None, seq: int) -> None:
        timeline.add(compliance.SuppressionChange("a@x.com", at, reason, seq))

    add(10, "unsubscribe", 2)
    add(20, None, 3)
    add(10, "bounce", 1)  # ingested earlier (seq 1), arrives late to the timeline
    add(30, "manual", 4)
    assert timeline.reasons_at("a@x.com", 9) == frozenset()
    assert timeline.reasons_at("a@x.com", 10) == {"bounce", "unsubscribe"}
    assert timeline.reasons_at("a@x.com", 19) == {"bounce", "unsubscribe"}
    assert timeline.reasons_at("a@x.com", 20) == frozenset()
    assert timeline.reasons_at("a@x.com", 31) == {"manual"}
    assert timeline.reasons_at("b@x.com", 31) == frozenset()


def test_suppression_change_normalises_the_address() -> None:
    change = compliance.suppression_change(
        "address_suppressed", {"address": "(555) 555-0100", "reason": "stop"}, 5, "US", 7
    )
    assert change == compliance.SuppressionChange("+15555550100", 5, "stop", 7)
    assert compliance.suppression_change("order_placed", {"address": "a@x.com"}, 5, None) is None
    gone = compliance.suppression_change("address_unsuppressed", {"address": "A@x.com"}, 5, None)
    assert gone is not None and (gone.address, gone.reason) == ("a@x.com", None)


# -- the order of one customer's inputs ---------------------------------------------------------


ORDER = """
id: {jid}
trigger: {{event: {event}}}
steps:
  - id: note
    set: {{customer.log: "(customer.log or '') ~ '{jid};'"}}
"""


def test_timers_fire_before_ticks_before_events_at_one_instant(proj: Project) -> None:
    proj.journey(
        "timer",
        """
        id: timer
        trigger: {event: start}
        steps:
          - id: pause
            wait: 1h
          - id: note
            set: {customer.log: "(customer.log or '') ~ 'timer;'"}
        """,
    )
    proj.journey(
        "tick",
        """
        id: tick
        trigger: {schedule: "0 13 * * *", audience: "true"}
        steps:
          - id: note
            set: {customer.log: "(customer.log or '') ~ 'tick;'"}
        """,
    )
    proj.journey("event", ORDER.format(jid="event", event="poke"))
    world = proj.world()
    at13 = t0 + HOUR
    first = engine.advance(world, CustomerState("c1"), t0, events=[ev("start")])
    assert first.next_wake == at13
    # Given in the "wrong" order on purpose: the engine orders them.
    result = engine.advance(
        world,
        first.state,
        at13,
        events=[ev("poke", at="2027-01-10T13:00:00Z")],
        ticks=[(at13, "tick")],
    )
    assert result.state.profile["log"] == "timer;tick;event;"
    assert first.state.profile.get("log") is None  # the input state was not changed


def test_events_beyond_until_are_returned_unapplied(proj: Project) -> None:
    proj.journey("event", ORDER.format(jid="event", event="poke"))
    later = ev("poke", at="2027-01-11T00:00:00Z")
    result = engine.advance(proj.world(), CustomerState("c1"), t0, events=[ev("poke"), later])
    assert result.unapplied == [later]
    assert result.state.profile["log"] == "event;"
    assert result.state.processed_at == t0


def test_emitted_events_come_after_the_stored_events_of_their_instant(proj: Project) -> None:
    proj.journey(
        "emitter",
        """
        id: emitter
        trigger: {event: first}
        steps:
          - id: raise
            emit: {event: echo}
        """,
    )
    proj.journey("echo", ORDER.format(jid="echo", event="echo"))
    proj.journey("second", ORDER.format(jid="second", event="second"))
    seen: set[str] = set()

    def first_sighting(event_id: str) -> bool:
        fresh = event_id not in seen
        seen.add(event_id)
        return fresh

    result = engine.advance(
        proj.world(),
        CustomerState("c1"),
        t0,
        events=[ev("first"), ev("second")],
        first_sighting=first_sighting,
    )
    assert result.state.profile["log"] == "second;echo;"
    assert [e.id for e in result.emitted] == ["emitter:c1:1:raise:1"]
    # The same id seen again (already ingested) is dropped, as ingestion would.
    again = engine.advance(
        proj.world(),
        CustomerState("c2"),
        t0,
        events=[ev("first", "c2")],
        first_sighting=lambda _: False,
    )
    assert again.emitted == [] and "log" not in again.state.profile


# -- versions -------------------------------------------------------------------------------------


V1 = """
id: flow
trigger: {event: go}
steps:
  - id: wait_a
    wait: 1d
  - id: hello
    email: {subject: "v1", body: "one"}
"""
V2 = """
id: flow
trigger: {event: go}
steps:
  - id: wait_b
    wait: 2d
  - id: hello
    email: {subject: "v2", body: "two"}
"""


class _Archive:
    def __init__(self, *machines: machine.Machine) -> None:
        self.machines = {(m.id, m.version): m for m in machines}
        self.asked: list[tuple[str, str]] = []

    def load_version(self, journey: str, version: str) -> machine.Machine | None:
        self.asked.append((journey, version))
        return self.machines.get((journey, version))


def _versions(proj: Project) -> tuple[engine.World, engine.World, machine.Machine]:
    proj.journey("flow", V1)
    old_world = proj.world()
    old = old_world.machines["flow"]
    proj.journey("flow", V2)
    return old_world, proj.world(), old


def test_an_instance_keeps_its_version_when_the_journey_changes(proj: Project) -> None:
    old_world, new_world, old = _versions(proj)
    go = ev("go", customer={"email": "a@x.com"})
    entered = engine.advance(old_world, CustomerState("c1"), t0, events=[go])
    later = t0 + 24 * HOUR
    kept = engine.World.build(new_world.machines, new_world.settings, older=[old])
    result = engine.advance(kept, entered.state, later)
    assert pick(shown(result.records), "subject", kind="message") == [("v1",)]
    archive = _Archive(old)
    from_archive = engine.World.build(new_world.machines, new_world.settings, archive=archive)
    result = engine.advance(from_archive, entered.state, later)
    assert pick(shown(result.records), "subject", kind="message") == [("v1",)]
    assert archive.asked == [("flow", old.version)]


def test_a_missing_pinned_version_ends_the_instance_with_error(proj: Project) -> None:
    old_world, new_world, old = _versions(proj)
    entered = engine.advance(old_world, CustomerState("c1"), t0, events=[ev("go")])
    result = engine.advance(new_world, entered.state, t0 + 24 * HOUR)
    (record,) = shown(result.records)
    assert (record["kind"], record["reason"]) == ("exit", "error")
    assert old.version in record["error"] and "not available" in record["error"]
    assert result.state.instances == [] and result.next_wake is None
    # A new entry takes the newest version and runs normally.
    fresh = engine.advance(
        new_world, result.state, t0 + 25 * HOUR, events=[ev("go", at="2027-01-11T13:00:00Z")]
    )
    assert fresh.state.instances[0].version == new_world.machines["flow"].version


def test_a_step_missing_from_the_pinned_version_ends_with_error(proj: Project) -> None:
    proj.journey("flow", V1)
    world = proj.world()
    entered = engine.advance(world, CustomerState("c1"), t0, events=[ev("go")])
    broken = entered.state.clone()
    broken.instances[0].step = "renamed"
    result = engine.advance(world, broken, t0 + 24 * HOUR)
    (record,) = shown(result.records)
    assert record["reason"] == "error" and "'renamed'" in record["error"]


def test_a_step_that_raises_ends_its_instance_and_others_go_on(proj: Project) -> None:
    proj.journey("flow", V1)
    proj.journey("other", MAILER)
    world = proj.world()
    flow = world.machines["flow"]

    def explode(scope: object) -> object:
        raise RuntimeError("boom")

    steps = dict(flow.steps)
    steps["wait_a"] = dataclasses.replace(steps["wait_a"], until=explode)
    bad = dataclasses.replace(flow, steps=steps)
    world = engine.World.build({"flow": bad, "other": world.machines["mailer"]}, world.settings)
    result = engine.advance(
        world,
        CustomerState("c1"),
        t0 + HOUR,
        events=[ev("go", customer={"email": "a@x.com"})],
    )
    records = shown(result.records)
    assert pick(records, "journey", "reason", "error", kind="exit") == [
        ("flow", "error", "RuntimeError: boom"),
        ("mailer", "completed", None),
    ]
    assert pick(records, "journey", "status", kind="message") == [("mailer", "sent")]
