"""simulate == run: the durable runtime writes the records ``simulate`` prints.

Contract section 3: ingesting an events file and running ``run --once --now T`` yields the
same records as ``simulate --until T`` over that file, also when the durable run is split
into several ``run --once`` calls at intermediate times (a late worker writes the same history
as a punctual one), in any batch size, and when the events arrive in two parts. Every case
runs on SQLite and PostgreSQL (the ``db_url`` fixture); records are compared as the JSON
lines both print, byte for byte.
"""

from __future__ import annotations

import io
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from postflow import config, durations, engine, events, simulate
from postflow.channels.registry import build_channels
from postflow.ingest import ingest_file
from postflow.machine import Machine
from postflow.runtime.service import Runtime, WorkerSettings, load_machines
from postflow.store.sql import SqlStore

REPO = Path(__file__).resolve().parent.parent
DAY = durations.parse_duration("1d")


def instant(text: str) -> int:
    return durations.parse_instant(text)


def lines(records: Iterator[dict[str, Any]] | list[dict[str, Any]]) -> list[str]:
    """Records as the JSON lines ``simulate`` and ``history`` print."""
    return [orjson.dumps(simulate.record_json(r)).decode() for r in records]


class Parity:
    """One project (journeys + configuration) run both ways over one events file."""

    def __init__(self, settings: config.Settings, journeys: Path, url: str) -> None:
        self.settings = settings
        self.machines: dict[str, Machine] = load_machines(settings, journeys)
        self.store = SqlStore.open(url, settings, upgrade=True)
        self.console = io.StringIO()

    def simulated(self, events_path: Path, until: int) -> list[str]:
        sim = simulate.Simulation(engine.World.build(self.machines, self.settings))
        sim.ingest_file(events_path)
        return lines(sim.stream(until))

    def runtime(self, batch: int = 1000) -> Runtime:
        channels = build_channels(self.settings, console_stream=self.console)
        return Runtime(
            self.store, self.settings, self.machines, channels, worker=WorkerSettings(batch=batch)
        )

    def history(self) -> list[str]:
        return lines(self.store.history())


@pytest.fixture
def starter(db_url: str) -> Iterator[Parity]:
    """The bundled project: starter journeys, postflow.yaml, templates, catalog."""
    settings = config.load_settings(REPO / "postflow.yaml")
    parity = Parity(settings, REPO / "journeys", db_url)
    yield parity
    parity.store.close()


EXAMPLE = REPO / "examples" / "events.jsonl"
EXAMPLE_EVENTS = [json.loads(line) for line in EXAMPLE.read_text().splitlines() if line.strip()]
LAST_EVENT = max(instant(e["at"]) for e in EXAMPLE_EVENTS)
T = LAST_EVENT + 30 * DAY  # every timer of the starter journeys has fired by then

# Intermediate run times: an event's own instant (evt_4), a timer's due instant (c_ann's
# review request: 3 days after delivery, at 10:00 in New York), and times between.
SPLIT = [
    "2027-03-01T16:00:00Z",
    "2027-03-04T17:00:00Z",
    "2027-03-07T15:00:00Z",
    "2027-03-09T00:00:00Z",
    "2027-03-26T12:00:00Z",
]


@pytest.mark.parametrize(
    ("times", "batch"),
    [([], 1000), (SPLIT, 1000), ([], 1), (SPLIT, 1)],
    ids=["one-run", "five-runs", "batch-1", "five-runs-batch-1"],
)
def test_starter_journeys_run_as_they_simulate(
    starter: Parity, times: list[str], batch: int
) -> None:
    ingest_file(starter.store, str(EXAMPLE))
    runtime = starter.runtime(batch)
    for when in times:
        runtime.run_once(instant(when))
        # At every stop the database already holds exactly what simulate --until prints.
        assert starter.history() == starter.simulated(EXAMPLE, instant(when)), when
    runtime.run_once(T)
    expected = starter.simulated(EXAMPLE, T)
    assert starter.history() == expected
    kinds = {json.loads(line)["kind"] for line in expected}
    assert kinds == {"enter", "message", "goal", "exit"}  # the comparison is not vacuous


def test_starter_journeys_with_events_arriving_in_two_parts(
    starter: Parity, tmp_path: Path
) -> None:
    middle = instant("2027-03-03T00:00:00Z")
    first = [e for e in EXAMPLE_EVENTS if instant(e["at"]) <= middle]
    rest = [e for e in EXAMPLE_EVENTS if instant(e["at"]) > middle]
    assert first and rest
    part1, part2 = tmp_path / "part1.jsonl", tmp_path / "part2.jsonl"
    part1.write_text("".join(json.dumps(e) + "\n" for e in first))
    part2.write_text("".join(json.dumps(e) + "\n" for e in rest))

    ingest_file(starter.store, str(part1))
    starter.runtime().run_once(middle)
    assert starter.history() == starter.simulated(part1, middle)
    ingest_file(starter.store, str(part2))
    starter.runtime().run_once(T)
    assert starter.history() == starter.simulated(EXAMPLE, T)


def _transactional_steps() -> set[tuple[str, str]]:
    """(journey, step) of every transactional message of the library: the console marks them."""
    found = set()
    for path in (REPO / "journeys").glob("*.yaml"):
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        if path.name.endswith(".test.yaml") or not isinstance(doc, dict):
            continue
        for step in doc.get("steps") or []:
            body = step.get("email") or step.get("sms")
            if isinstance(body, dict) and body.get("transactional"):
                found.add((doc["id"], step["id"]))
    return found


TRANSACTIONAL = _transactional_steps()


def test_starter_run_prints_each_sent_message_once(starter: Parity) -> None:
    ingest_file(starter.store, str(EXAMPLE))
    runtime = starter.runtime()
    for when in SPLIT:
        runtime.run_once(instant(when))
    runtime.run_once(T)
    sent = [
        r
        for r in map(json.loads, starter.history())
        if r["kind"] == "message" and r["status"] == "sent"
    ]
    heads = [line for line in starter.console.getvalue().splitlines() if line.startswith("── ")]
    assert sorted(heads) == sorted(
        f"── {r['channel']} → {r['to']} · {r['journey']}/{r['step']} · {r['at']}"
        + (" · transactional" if (r["journey"], r["step"]) in TRANSACTIONAL else "")
        for r in sent
    )


# -- randomized, seeded ---------------------------------------------------------------------
# A journey set using wait (duration, local time), wait_for with timeout, branch, split,
# email and sms, quiet hours (configured and per journey), caps, exit, goal, emit, set, a
# template file, a render error, and an audience cron journey.

JOURNEYS = {
    "welcome": """
        id: welcome
        trigger:
          event: order_placed
          if: "customer.orders_count == 1"
        entry: {reentry: never}
        exit:
          - event: order_refunded
        goal: {event: review_submitted, within: 14d}
        steps:
          - id: flag
            set: {customer.big_spender: "customer.total_spent > 100", vars.first_order: "trigger.data.order_id"}
          - id: pause
            wait: 1d
          - id: hello
            email:
              subject: "Welcome {{ customer.first_name | default('friend') }}"
              template: welcome
          - id: vip
            branch:
              - if: "customer.big_spender"
                goto: vip_text
              - goto: end
          - id: vip_text
            sms: {body: "VIP perks for order {{ vars.first_order }}"}
        """,
    "review": """
        id: review
        trigger:
          event: order_delivered
          if: "event.data.total > 0"
        entry: {key: "trigger.data.order_id", reentry: never}
        exit:
          - event: order_refunded
            if: "event.data.order_id == trigger.data.order_id"
        goal:
          event: review_submitted
          if: "event.data.order_id == trigger.data.order_id"
          within: 10d
        settings:
          quiet_hours: {start: "20:00", end: "08:00", channels: [email, sms]}
        steps:
          - id: settle
            wait: {for: 2d, at: "10:00"}
          - id: ask
            email: {subject: "How was order {{ trigger.data.order_id }}?", body: "Tell us, {{ customer.first_name | default('there') }}."}
          - id: await_review
            wait_for:
              event: review_submitted
              timeout: 5d
              on_timeout: remind
              if: "event.data.order_id == trigger.data.order_id"
          - id: by_rating
            branch:
              - if: "last_event.data.rating >= 4"
                goto: thanks
              - goto: support
          - id: remind
            sms: {body: "Review order {{ trigger.data.order_id }}?"}
            next: end
          - id: thanks
            emit: {event: happy_customer, data: {rating: "last_event.data.rating", order: "trigger.data.order_id"}}
            next: end
          - id: support
            email: {subject: "Sorry about {{ trigger.data.order_id }}", body: "We will fix it.", transactional: true}
        """,
    "fan": """
        id: fan
        trigger: {event: happy_customer}
        entry: {reentry: always}
        steps:
          - id: mark
            set: {customer.fan: "true", customer.last_rating: "trigger.data.rating"}
          - id: pick
            split: [{weight: 1, goto: coupon, name: control}, {weight: 1, goto: coupon_sms, name: texted}]
          - id: coupon
            email: {subject: "A coupon for {{ trigger.data.rating }} stars", body: "Thanks!"}
            next: end
          - id: coupon_sms
            sms: {body: "Coupon for order {{ trigger.data.order }}"}
        """,
    "winback": """
        id: winback
        trigger:
          schedule: "0 9 * * 1"
          timezone: America/New_York
          audience: "customer.orders_count >= 1 and days_since(customer.last_order_at) >= 10"
        entry: {reentry: after_exit, cooldown: 20d}
        exit:
          - event: order_placed
        goal: {event: order_placed, within: 7d}
        steps:
          - id: miss_you
            email: {subject: "We miss you, {{ customer.first_name | default('friend') }}", body: "Come back."}
          - id: later
            wait: 3d
          - id: nudge
            sms: {body: "Still here for you"}
        """,
    "refund": """
        id: refund
        trigger: {event: order_refunded}
        entry: {key: "trigger.data.order_id"}
        steps:
          - id: confirm
            email: {subject: "Refund for {{ trigger.data.order_id }}", body: "Done.", transactional: true}
          - id: listen
            wait_for: {event: order_placed, timeout: 3d, on_timeout: sorry}
          - id: back
            email: {subject: "Glad you are back", body: "Yay."}
            next: end
          - id: sorry
            sms: {body: "Sorry to see you go {{ customer.nickname }}"}
        """,
}
CONFIG = """
    timezone: America/New_York
    default_region: US
    quiet_hours: {start: "21:00", end: "09:00", channels: [sms]}
    limits:
      email: {max: 2, per: 1d}
      sms: {max: 1, per: 1d}
    channels:
      email: {provider: console}
      sms: {provider: console}
    """
START = instant("2027-03-01T00:00:00Z")
STEP = durations.parse_duration("15m")  # a coarse grid, so that many inputs share an instant
ZONES = ["America/New_York", "Europe/Berlin", "Asia/Tokyo", None]


def generate(seed: int, customers: int = 200) -> list[dict[str, Any]]:
    """Orders, deliveries, reviews, refunds and suppressions of ``customers`` customers over
    about two months, in shuffled file order, with a few replayed event ids."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    addresses: list[str] = []

    def when(lo: int, hi: int) -> int:
        return lo + rng.randrange(max(1, (hi - lo) // STEP)) * STEP

    for n in range(customers):
        cid = f"c{n:03d}"
        profile: dict[str, Any] = {}
        if rng.random() < 0.9:
            profile["email"] = f"{cid}@Shop.test" if rng.random() < 0.3 else f"{cid}@shop.test"
        if rng.random() < 0.6:  # E.164, or read in the default region
            profile["phone"] = f"+1555555{n:04d}" if rng.random() < 0.7 else f"(555) 555-{n:04d}"
        if rng.random() < 0.7:
            profile["first_name"] = f"Name{n}"
        zone = rng.choice(ZONES)
        if zone:
            profile["timezone"] = zone
        if rng.random() < 0.3:
            profile["email_consent"] = rng.random() < 0.5
        if rng.random() < 0.6:
            profile["sms_consent"] = rng.random() < 0.8
        addresses.append(profile.get("email") or profile.get("phone") or f"{cid}@none.test")
        t = when(START, START + 40 * DAY)
        for k in range(1 + (rng.random() < 0.35)):
            oid = f"o{n}_{k}"
            total = rng.choice([0, 15.5, 60, 140.25])
            order: dict[str, Any] = {
                "id": f"{cid}-p{k}",
                "type": "order_placed",
                "customer_id": cid,
                "at": durations.format_instant(t),
                "data": {"order_id": oid, "total": total, "items": [{"sku": "TEA-1"}]},
            }
            if k == 0:
                order["customer"] = profile
            out.append(order)
            delivered = when(t + DAY, t + 5 * DAY)
            if rng.random() < 0.85:
                out.append(
                    {
                        "id": f"{cid}-d{k}",
                        "type": "order_delivered",
                        "customer_id": cid,
                        "at": durations.format_instant(delivered),
                        "data": {"order_id": oid, "total": total},
                    }
                )
                if rng.random() < 0.6:
                    out.append(
                        {
                            "type": "review_submitted",
                            "customer_id": cid,
                            "at": durations.format_instant(
                                when(delivered + DAY, delivered + 12 * DAY)
                            ),
                            "data": {
                                "order_id": oid if rng.random() < 0.85 else "other",
                                "rating": rng.randint(1, 5),
                            },
                        }
                    )
            if rng.random() < 0.15:
                out.append(
                    {
                        "id": f"{cid}-r{k}",
                        "type": "order_refunded",
                        "customer_id": cid,
                        "at": durations.format_instant(when(t + DAY, t + 9 * DAY)),
                        "data": {"order_id": oid},
                    }
                )
            t = when(t + 3 * DAY, t + 30 * DAY)
    # Suppressions raised by one customer's event for (often) another customer's address.
    for m in range(customers // 12):
        victim = rng.choice(addresses)
        if "@" in victim and rng.random() < 0.5:
            victim = victim.upper()
        out.append(
            {
                "id": f"sup{m}",
                "type": "address_suppressed",
                "customer_id": f"c{rng.randrange(customers):03d}",
                "at": durations.format_instant(when(START, START + 50 * DAY)),
                "data": {
                    "address": victim,
                    "reason": rng.choice(["bounce", "unsubscribe", "stop", "manual"]),
                },
            }
        )
    out.extend(dict(e) for e in rng.sample([e for e in out if "id" in e], 5))  # duplicates
    rng.shuffle(out)
    return out


@pytest.fixture
def generated(proj: Any, db_url: str) -> Iterator[Parity]:
    for name, text in JOURNEYS.items():
        proj.journey(name, text)
    proj.template("welcome.html", "Hello {{ customer.first_name | default('friend') }}.\n")
    proj.config(CONFIG)
    parity = Parity(proj.settings(), proj.root / "journeys", db_url)
    yield parity
    parity.store.close()


def write_events(path: Path, evts: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in evts), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("seed", "mode", "batch"),
    [(1, "one-run", 1000), (2, "four-runs", 25), (3, "two-parts", 1000)],
)
def test_random_customers_run_as_they_simulate(
    generated: Parity, tmp_path: Path, seed: int, mode: str, batch: int
) -> None:
    evts = generate(seed)
    path = write_events(tmp_path / "events.jsonl", evts)
    times = [instant(e["at"]) for e in evts]
    first, last = min(times), max(times)
    until = last + 30 * DAY
    runtime = generated.runtime(batch)
    if mode == "one-run":
        ingest_file(generated.store, str(path))
    elif mode == "four-runs":
        ingest_file(generated.store, str(path))
        rng = random.Random(seed)
        for stop in sorted(rng.randrange(first, until) for _ in range(3)):
            runtime.run_once(stop)
            assert generated.history() == generated.simulated(path, stop)
    else:
        # Events arrive in two parts: everything up to the middle, a run, then the rest.
        middle = first + (last - first) // 2
        early = write_events(
            tmp_path / "early.jsonl", [e for e in evts if instant(e["at"]) <= middle]
        )
        late = write_events(tmp_path / "late.jsonl", [e for e in evts if instant(e["at"]) > middle])
        ingest_file(generated.store, str(early))
        runtime.run_once(middle)
        assert generated.history() == generated.simulated(early, middle)
        ingest_file(generated.store, str(late))
    runtime.run_once(until)

    expected = generated.simulated(path, until)
    got = generated.history()
    assert len(got) == len(expected)
    assert got == expected
    # The set is rich enough to mean something: every kind of outcome occurs.
    outcomes = {(r["kind"], r.get("status"), r.get("reason")) for r in map(json.loads, expected)}
    for outcome in [
        ("message", "sent", None),
        ("message", "skipped", "suppressed"),
        ("message", "skipped", "no_consent"),
        ("message", "skipped", "no_address"),
        ("message", "failed", "render_error"),
        ("goal", None, None),
        ("exit", None, "exit_event"),
    ]:
        assert outcome in outcomes
    journeys = {r["journey"] for r in map(json.loads, expected)}
    assert journeys == set(JOURNEYS)


def test_ids_replayed_within_one_ingest_count_as_duplicates(generated: Parity) -> None:
    evts = generate(7, customers=30)  # five events appear twice
    result = generated.store.ingest([events.parse_event(e) for e in evts])
    assert (result.accepted, result.duplicates) == (len(evts) - 5, 5)


def test_separate_run_once_processes_fire_the_audience_ticks_in_between(
    generated: Parity, tmp_path: Path
) -> None:
    evts = generate(4, customers=40)
    path = write_events(tmp_path / "events.jsonl", evts)
    times = [instant(e["at"]) for e in evts]
    until = max(times) + 30 * DAY
    ingest_file(generated.store, str(path))
    for stop in [min(times) + 10 * DAY, min(times) + 30 * DAY, until]:
        generated.runtime().run_once(stop)  # a new process each time, as `run --once` is
        assert generated.history() == generated.simulated(path, stop)
