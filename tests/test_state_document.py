"""The customer state as one stored document: a round trip changes nothing the engine sees,
the document holds no NUL (PostgreSQL jsonb refuses it), and its growth is bounded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import Project, pick
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from postflow import durations, engine, events, simulate
from postflow.state import MAX_KEYS_PER_JOURNEY, CustomerState, Instance, StateFormatError

T0 = durations.parse_instant("2027-01-10T12:00:00Z")
HOUR = 3_600_000_000

RICH = """
id: rich
trigger: {event: order_placed}
entry: {key: "trigger.data.order_id", reentry: never}
exit:
  - {event: refund, if: "event.data.order_id == trigger.data.order_id"}
goal: {event: review, within: 3d}
steps:
  - id: pick
    split:
      - {weight: 1, goto: pause, name: control}
      - {weight: 1, goto: pause, name: treat}
  - id: pause
    wait: {for: 5h, at: "10:00"}
  - id: mail
    email: {subject: "Order {{ trigger.data.order_id }}", body: "Hi {{ customer.name | default('you') }}"}
  - id: note
    set: {vars.count: "(vars.count or 0) + 1", customer.seen: "now"}
  - id: tell
    emit: {event: noted, data: {order: "trigger.data.order_id"}}
  - id: await
    wait_for: {event: review, timeout: 2d, if: "event.data.order_id == trigger.data.order_id"}
  - id: text
    sms: {body: "Thanks {{ last_event.data.stars | default(0) }}"}
"""

ECHO = """
id: echo
trigger: {event: noted}
steps:
  - id: hold
    wait: 1h
  - id: mail
    email: {subject: "noted {{ trigger.data.order }}", body: "x"}
"""


def _world(tmp: Path) -> engine.World:
    proj = Project(tmp)
    proj.journey("rich", RICH)
    proj.journey("echo", ECHO)
    proj.config(
        """
        timezone: Europe/Berlin
        limits: {email: {max: 2, per: 1d}}
        quiet_hours: {start: "21:00", end: "08:00", channels: [sms]}
        """
    )
    return proj.world()


_event = st.tuples(
    st.sampled_from(["order_placed", "refund", "review", "other"]),
    st.integers(0, 96),  # hours after T0
    st.sampled_from(["o1", "o2", "o3"]),
    st.integers(1, 5),
)


def _events(spec: list[tuple[str, int, str, int]]) -> list[events.Event]:
    out = []
    for i, (etype, hours, order, stars) in enumerate(sorted(spec, key=lambda s: s[1])):
        out.append(
            events.parse_event(
                {
                    "id": f"e{i}",
                    "type": etype,
                    "customer_id": "c1",
                    "at": durations.format_instant(T0 + hours * HOUR),
                    "customer": {"email": "a@x.com", "phone": "+15555550100", "sms_consent": True},
                    "data": {"order_id": order, "stars": stars},
                }
            )
        )
    return out


def _run(world: engine.World, evts: list[events.Event], cut: int, round_trip: bool) -> Any:
    """Advance to ``cut`` hours, optionally store and reload the state, then to the end."""
    seen: set[str] = set()

    def first(event_id: str) -> bool:
        fresh = event_id not in seen
        seen.add(event_id)
        return fresh

    middle = T0 + cut * HOUR
    first_half = engine.advance(
        world, CustomerState("c1"), middle, events=evts, first_sighting=first
    )
    state = first_half.state
    if round_trip:
        doc = state.to_document()
        assert b"\\u0000" not in doc and b"\x00" not in doc
        state = CustomerState.from_document(doc)
        assert state == first_half.state
    rest = engine.advance(
        world,
        state,
        T0 + 30 * 24 * HOUR,
        events=first_half.unapplied,
        first_sighting=first,
    )
    return first_half.records + rest.records, rest.state, [m.message_id for m in rest.messages]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(spec=st.lists(_event, min_size=1, max_size=8), cut=st.integers(0, 100))
def test_a_stored_and_reloaded_state_continues_exactly_the_same(
    tmp_path_factory: pytest.TempPathFactory, spec: list[tuple[str, int, str, int]], cut: int
) -> None:
    world = _world(tmp_path_factory.mktemp("doc"))
    evts = _events(spec)
    assert _run(world, evts, cut, True) == _run(world, evts, cut, False)


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(blacklist_characters="\x00", blacklist_categories=["Cs"])),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=5).filter(lambda k: "\x00" not in k), inner, max_size=3)
    ),
    max_leaves=10,
)


@settings(max_examples=100, deadline=None)
@given(
    profile=st.dictionaries(
        st.text(max_size=8).filter(lambda k: "\x00" not in k), _json, max_size=4
    ),
    trigger=st.dictionaries(st.sampled_from(["type", "data", "at"]), _json),
    wake=st.none() | st.integers(0, 2**62),
    sent=st.lists(
        st.tuples(
            st.sampled_from(["email", "sms"]),
            st.integers(0, 2**62),
            st.sampled_from([(), ("promo",), ("promo", "winback")]),
        ),
        max_size=3,
    ),
)
def test_any_state_survives_the_document(
    profile: dict[str, Any], trigger: dict[str, Any], wake: int | None, sent: list[Any]
) -> None:
    inst = Instance(
        "j:c:1", "j", "abc", 1, "k", 5, trigger, step="s", wake_at=wake, vars={"v": profile}
    )
    state = CustomerState(
        "c", profile=profile, processed_at=7, instances=[inst], entries={"j": 1}, sent=sent
    )
    again = CustomerState.from_document(state.to_document())
    assert again == state
    assert again.next_wake() == state.next_wake()


def test_documents_of_another_format_or_broken_ones_are_refused() -> None:
    doc = CustomerState("c1", profile={"a": 1}).to_document()
    assert CustomerState.from_document(doc).profile == {"a": 1}
    with pytest.raises(StateFormatError, match="format 2"):
        CustomerState.from_document(doc.replace(b'"v":1', b'"v":2'))
    with pytest.raises(StateFormatError, match="not JSON"):
        CustomerState.from_document(b"{")
    with pytest.raises(StateFormatError, match="broken"):
        CustomerState.from_document(b'{"v":1}')
    with pytest.raises(StateFormatError, match="instance"):
        CustomerState.from_document(b'{"v":1,"customer_id":"c","instances":[{"id":"x"}]}')


def test_reentry_never_remembers_a_bounded_number_of_keys(proj: Project) -> None:
    proj.journey(
        "once",
        """
        id: once
        trigger: {event: order_placed}
        entry: {key: "trigger.data.order_id", reentry: never}
        steps:
          - id: done
            goto: end
        """,
    )
    world = proj.world()
    many = [
        events.parse_event(
            {
                "type": "order_placed",
                "customer_id": "c1",
                "at": durations.format_instant(T0 + i),
                "data": {"order_id": f"o{i}"},
            }
        )
        for i in range(MAX_KEYS_PER_JOURNEY + 5)
    ]
    result = engine.advance(world, CustomerState("c1"), T0 + len(many), events=many)
    keys = result.state.keys["once"]
    assert len(keys) == MAX_KEYS_PER_JOURNEY
    assert keys[0] == "o5" and keys[-1] == f"o{MAX_KEYS_PER_JOURNEY + 4}"
    # The newest keys still refuse a second entry.
    again = engine.advance(
        world,
        result.state,
        T0 + len(many) + 1,
        events=[
            events.parse_event(
                {
                    "type": "order_placed",
                    "customer_id": "c1",
                    "at": durations.format_instant(T0 + len(many) + 1),
                    "data": {"order_id": "o7"},
                }
            )
        ],
    )
    assert pick([simulate.record_json(r) for r in again.records], "kind") == []


def test_send_history_stays_within_the_longest_cap_window(proj: Project) -> None:
    proj.config("timezone: UTC\nlimits: {email: {max: 5, per: 1d}}\n")
    proj.journey(
        "daily",
        """
        id: daily
        trigger: {event: go}
        entry: {reentry: always}
        steps:
          - id: mail
            email: {subject: "x", body: "x"}
        """,
    )
    world = proj.world()
    evts = [
        events.parse_event(
            {
                "type": "go",
                "customer_id": "c1",
                "at": durations.format_instant(T0 + i * 6 * HOUR),
                "customer": {"email": "a@x.com"},
            }
        )
        for i in range(40)
    ]
    result = engine.advance(world, CustomerState("c1"), T0 + 40 * 6 * HOUR, events=evts)
    assert 0 < len(result.state.sent) <= 5
    assert result.state.instances == []


def test_simulate_decides_alike_with_customers_kept_live_or_as_documents() -> None:
    # The repo's starter journeys over the bundled example events, once with every customer
    # kept as a live object and once with every customer stored as a document between inputs.
    from conftest import REPO

    from postflow import config, project
    from postflow.store.memory import MemoryStore

    settings = config.load_settings(REPO / "postflow.yaml")
    machines = project.require_journeys([REPO / "journeys"], settings.templates)
    world = engine.World.build(machines, settings)
    outputs = []
    for limit in (10**9, 0, 1):
        sim = simulate.Simulation(world, MemoryStore(live_limit=limit))
        sim.ingest(events.read_events(REPO / "examples" / "events.jsonl"))
        outputs.append(simulate.format_records(sim.run()))
    assert outputs[0].count(b"\n") > 10
    assert outputs[0] == outputs[1] == outputs[2]


def test_a_big_events_file_is_streamed_with_the_same_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Past KEEP_LIMIT events, ingest_file reads the file again instead of keeping it: lazily
    # when it is in time order, all at once when not. Records must not change either way.
    import json

    from conftest import REPO

    from postflow import config, project

    settings = config.load_settings(REPO / "postflow.yaml")
    world = engine.World.build(
        project.require_journeys([REPO / "journeys"], settings.templates), settings
    )
    lines = (REPO / "examples" / "events.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines if line.strip()]
    rows.append(dict(rows[0]))  # a duplicate id: ignored in every mode
    in_order = sorted(rows, key=lambda r: events.parse_event(r).at)
    # Newest first, but events of one instant keep their file order (it decides ties, §1).
    backwards = sorted(rows, key=lambda r: events.parse_event(r).at, reverse=True)
    outputs = {}
    for name, chosen in (("ordered", in_order), ("shuffled", backwards)):
        path = tmp_path / f"{name}.jsonl"
        path.write_text("\n".join(json.dumps(r) for r in chosen) + "\n")
        for limit in (10**9, 2):
            monkeypatch.setattr(simulate, "KEEP_LIMIT", limit)
            sim = simulate.Simulation(world)
            counts = sim.ingest_file(path)
            assert counts == (len(rows) - 1, 1)
            assert (sim._stream is not None) == (limit == 2 and name == "ordered")
            outputs[name, limit] = simulate.format_records(sim.run())
    assert len(set(outputs.values())) == 1
    assert next(iter(outputs.values())).count(b"\n") > 10
