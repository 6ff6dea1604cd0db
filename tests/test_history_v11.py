"""§9 "Event history in expressions": ``count_events``, ``last_event_of``, ``purchased``.

"Bought filters but not the pump", "second order within 30 days", "last NPS score" without a
hand-kept list: the engine sees the customer's applied events (the one being applied too,
backfilled ones too) within ``history.keep``. Each case runs through ``simulate`` and the
durable runtime, which must print the same records.
"""

from __future__ import annotations

import io
from typing import Any

import pytest
from conftest import Project, pick
from shells import both_ways

from postflow import durations, simulate
from postflow.channels.registry import build_channels, close_channels
from postflow.events import parse_event
from postflow.runtime.service import Runtime, load_machines
from postflow.store.sql import SqlStore


def order(
    at: str, *items: tuple[str, str], customer: str = "c_1", oid: str = "o"
) -> dict[str, Any]:
    return {
        "type": "order_placed",
        "customer_id": customer,
        "at": at,
        "customer": {"email": f"{customer}@example.com"},
        "data": {"order_id": oid, "items": [{"sku": s, "category": c} for s, c in items]},
    }


REFILL = """
id: refill
trigger: {event: order_placed, if: "event.data.items | selectattr('category', 'equalto', 'filters') | list | length > 0"}
steps:
  - id: pause
    wait: 30d
  - id: check
    branch:
      - if: "CONDITION"
        goto: end
  - id: remind
    email: {subject: "Filters? {{ count_events('order_placed') }} orders", body: "x"}
"""


def test_purchased_with_a_window_skips_a_reorder(proj: Project, db_url: str) -> None:
    proj.journey(
        "refill", REFILL.replace("CONDITION", "purchased(category='filters', within='25d')")
    )
    records = both_ways(
        proj,
        db_url,
        [
            order("2027-01-01T10:00:00Z", ("F1", "filters"), customer="a"),
            order("2027-01-20T10:00:00Z", ("F1", "filters"), customer="a", oid="o2"),  # re-order
            order("2027-01-01T10:00:00Z", ("F1", "filters"), customer="b"),
        ],
        "2027-03-01T00:00:00Z",
    )
    assert pick(records, "customer_id", "subject", kind="message") == [("b", "Filters? 1 orders")]


def test_purchased_without_criteria_and_by_sku(proj: Project, db_url: str) -> None:
    proj.journey(
        "refill",
        REFILL.replace("CONDITION", "purchased(sku='PUMP') or not purchased(within='1d')"),
    )
    records = both_ways(
        proj,
        db_url,
        [
            order("2027-01-01T10:00:00Z", ("F1", "filters"), ("PUMP", "pumps"), customer="a"),
            order("2027-01-01T10:00:00Z", ("F1", "filters"), customer="b"),
        ],
        "2027-03-01T00:00:00Z",
    )
    # a bought the pump; b's only purchase is 30 days old, so "not purchased within 1d" ends it.
    assert pick(records, "customer_id", kind="message") == []


def test_count_events_and_last_event_of(proj: Project, db_url: str) -> None:
    proj.journey(
        "nps",
        """
        id: nps
        trigger: {event: nps_answered}
        steps:
          - id: mail
            email:
              subject: "{{ count_events('nps_answered') }} answers, {{ count_events('nps_answered', within='2d') }} lately, {{ count_events('nps_answered', where={'score': 9}) }} nines, last {{ last_event_of('nps_answered').data.score }}"
              body: "{{ last_event_of('review', where={'stars': 5}) is none }}"
        """,
    )
    answers = [
        {
            "type": "nps_answered",
            "customer_id": "c_1",
            "at": at,
            "customer": {"email": "a@x.com"},
            "data": {"score": score},
        }
        for at, score in (
            ("2027-01-01T10:00:00Z", 9),
            ("2027-01-05T10:00:00Z", 9),
            ("2027-01-06T10:00:00Z", 3),
        )
    ]
    records = both_ways(proj, db_url, answers)
    assert pick(records, "subject", "body", kind="message") == [
        ("1 answers, 1 lately, 1 nines, last 9", "True"),
        ("2 answers, 1 lately, 2 nines, last 9", "True"),
        ("3 answers, 2 lately, 2 nines, last 3", "True"),
    ]


def test_history_keep_limits_what_is_seen(proj: Project, db_url: str) -> None:
    proj.config("timezone: UTC\nhistory: {keep: 10d}\n")
    proj.journey("refill", REFILL.replace("CONDITION", "false"))
    records = both_ways(
        proj,
        db_url,
        [
            order("2027-01-01T10:00:00Z", ("F1", "filters")),
            order("2027-01-25T10:00:00Z", ("X", "other"), oid="o2"),
        ],
        "2027-03-01T00:00:00Z",
    )
    # At the reminder (31 Jan) only the 25 Jan order is within 10 days.
    assert pick(records, "subject", kind="message") == [("Filters? 1 orders",)]


def test_backfilled_orders_count(proj: Project, db_url: str, tmp_path: Any) -> None:
    """An imported order history (``ingest --backfill``) is seen by ``purchased``: the
    durable runtime here; simulate is given the same events as backfill."""
    proj.journey("refill", REFILL.replace("CONDITION", "purchased(sku='PUMP')"))
    settings = proj.settings()
    machines = load_machines(settings, proj.root / "journeys")
    past = parse_event(order("2026-12-20T10:00:00Z", ("PUMP", "pumps"), customer="a"))
    now = [
        parse_event(order("2027-01-01T10:00:00Z", ("F1", "filters"), customer="a")),
        parse_event(order("2027-01-01T10:00:00Z", ("F1", "filters"), customer="b")),
    ]
    until = durations.parse_instant("2027-03-01T00:00:00Z")
    store = SqlStore.open(db_url, settings, upgrade=True)
    try:
        store.ingest([past], backfill=True)
        store.ingest(now)
        channels = build_channels(settings, console_stream=io.StringIO(), environ={})
        runtime = Runtime(store, settings, machines, channels)
        runtime.run_once(until)
        runtime.close()
        close_channels(channels.values())
        durable = list(store.history())
    finally:
        store.close()
    assert pick(durable, "customer_id", kind="message") == [("b",)]
    sim = simulate.Simulation(__import__("postflow").engine.World.build(machines, settings))
    past.backfill = True
    sim.ingest([past, *now])
    assert pick(list(sim.stream(until)), "customer_id", kind="message") == [("b",)]


@pytest.mark.parametrize(
    "expression",
    ["count_events()", "purchased(within='soon')", "count_events('x', where='nope')"],
)
def test_bad_calls_count_as_false_in_conditions(
    proj: Project, db_url: str, expression: str
) -> None:
    proj.journey("refill", REFILL.replace("CONDITION", expression))
    records = both_ways(
        proj, db_url, [order("2027-01-01T10:00:00Z", ("F1", "filters"))], "2027-03-01T00:00:00Z"
    )
    assert pick(records, "kind", kind="message") == [("message",)]
