"""A ``timezone: customer`` audience deployed on a live database reaches the customers it
already holds, as a UTC audience does (contract §2: at each tick *every* customer for whom
the audience holds enters; §9: the tick is read in each customer's own zone).

A lapsed customer is quiet by definition: win-back, birthday and anniversary journeys added
to a running shop, or run over history imported with ``ingest --backfill``, must find the
customers who sent nothing since. Each case runs the durable runtime (``run --once``) on
SQLite and PostgreSQL and compares the local-time journey with its UTC twin.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from conftest import Project, pick, write

from postflow import durations, events
from postflow.channels.registry import build_channels, close_channels
from postflow.runtime.service import Runtime, load_machines
from postflow.store.sql import SqlStore

LOCAL = """
id: lapsed-local
trigger:
  schedule: "0 9 * * *"
  timezone: customer
  audience: "customer.orders_count >= 2"
entry: {reentry: never}
steps:
  - id: mail
    email: {subject: "We miss you", body: "{{ trigger.at }}"}
"""
UTC = """
id: lapsed-utc
trigger:
  schedule: "0 9 * * *"
  audience: "customer.orders_count >= 2"
entry: {reentry: never}
steps:
  - id: mail
    email: {subject: "We miss you", body: "{{ trigger.at }}"}
"""
OTHER = """
id: receipt
trigger: {event: order_placed}
steps:
  - id: mail
    email: {subject: "Thanks", body: "Thanks", transactional: true}
"""


def order(customer: str, at: str, zone: str, n: int) -> dict[str, Any]:
    return {
        "type": "order_placed",
        "customer_id": customer,
        "at": at,
        "customer": {"email": f"{customer}@example.com", "timezone": zone},
        "data": {"order_id": f"{customer}-{n}", "total": 20},
    }


def run(store: SqlStore, journeys: Path, now: str) -> None:
    settings = store.settings
    channels = build_channels(settings, console_stream=io.StringIO(), environ={})
    try:
        runtime = Runtime(store, settings, load_machines(settings, journeys), channels)
        runtime.run_once(durations.parse_instant(now))
        runtime.close()
    finally:
        close_channels(channels.values())


def journeys_dir(root: Path, name: str, **files: str) -> Path:
    for stem, text in files.items():
        write(root, f"{name}/{stem}.yaml", text)
    return root / name


def entries(store: SqlStore) -> list[tuple[Any, ...]]:
    from postflow import simulate

    records = [simulate.record_json(r) for r in store.history()]
    got = pick(records, "journey", "customer_id", "at", kind="enter")
    return sorted(e for e in got if e[0] != "receipt")


SHOPPERS = [
    # Two orders each in the autumn; nothing since.
    order("ny", "2026-10-01T15:00:00Z", "America/New_York", 1),
    order("ny", "2026-10-20T15:00:00Z", "America/New_York", 2),
    order("tokyo", "2026-10-01T03:00:00Z", "Asia/Tokyo", 1),
    order("tokyo", "2026-10-20T03:00:00Z", "Asia/Tokyo", 2),
    order("once", "2026-10-01T15:00:00Z", "Europe/Berlin", 1),  # one order: never
]


def test_deployed_later_it_reaches_customers_with_no_input_since(
    proj: Project, db_url: str
) -> None:
    """Customers processed in October; the journeys are added on 1 March (deployed at that
    run's now) and nobody orders again: each customer enters at the first 09:00 of their own
    zone after the deployment (12:00 UTC: 07:00 in New York, 21:00 in Tokyo), as the UTC
    twin's customers enter at the first 09:00 UTC."""
    proj.config("timezone: UTC\n")
    before = journeys_dir(proj.root, "before", receipt=OTHER)
    after = journeys_dir(
        proj.root, "after", receipt=OTHER, **{"lapsed-local": LOCAL, "lapsed-utc": UTC}
    )
    store = SqlStore.open(db_url, proj.settings(), upgrade=True)
    try:
        store.ingest([events.parse_event(e) for e in SHOPPERS])
        run(store, before, "2026-11-01T00:00:00Z")
        run(store, after, "2027-03-01T12:00:00Z")  # deployed now: no past ticks fire
        assert entries(store) == []
        run(store, after, "2027-03-04T00:00:00Z")
        assert entries(store) == [
            ("lapsed-local", "ny", "2027-03-01T14:00:00Z"),  # 09:00 EST, after 12:00 UTC
            ("lapsed-local", "tokyo", "2027-03-02T00:00:00Z"),  # 09:00 JST, 2 March
            ("lapsed-utc", "ny", "2027-03-02T09:00:00Z"),
            ("lapsed-utc", "tokyo", "2027-03-02T09:00:00Z"),
        ]
    finally:
        store.close()


def test_customers_imported_with_backfill_are_reached(proj: Project, db_url: str) -> None:
    """History imported with ``--backfill`` starts nothing, but the imported customers exist:
    the local-time audience reaches them at their first local 09:00 after deployment."""
    proj.config("timezone: UTC\n")
    journeys = journeys_dir(proj.root, "j", **{"lapsed-local": LOCAL, "lapsed-utc": UTC})
    store = SqlStore.open(db_url, proj.settings(), upgrade=True)
    try:
        store.ingest([events.parse_event(e) for e in SHOPPERS], backfill=True)
        run(store, journeys, "2027-03-01T12:00:00Z")
        assert entries(store) == []  # an import never triggers, and no tick has come yet
        run(store, journeys, "2027-03-03T00:00:00Z")
        assert entries(store) == [
            ("lapsed-local", "ny", "2027-03-01T14:00:00Z"),
            ("lapsed-local", "tokyo", "2027-03-02T00:00:00Z"),
            ("lapsed-utc", "ny", "2027-03-02T09:00:00Z"),
            ("lapsed-utc", "tokyo", "2027-03-02T09:00:00Z"),
        ]
    finally:
        store.close()


def test_a_customer_first_seen_after_deployment_still_starts_at_their_first_input(
    proj: Project, db_url: str
) -> None:
    """Unchanged for new customers (as in simulate): ticks at or before their first input
    are not theirs, however long ago the journey was deployed."""
    proj.config("timezone: UTC\n")
    journeys = journeys_dir(proj.root, "j", **{"lapsed-local": LOCAL})
    store = SqlStore.open(db_url, proj.settings(), upgrade=True)
    try:
        run(store, journeys, "2027-01-01T00:00:00Z")  # deployed, nobody there
        store.ingest(
            [
                events.parse_event(order("ny", "2027-03-02T14:00:00Z", "America/New_York", 1)),
                events.parse_event(order("ny", "2027-03-02T14:00:00Z", "America/New_York", 2)),
            ]
        )
        run(store, journeys, "2027-03-05T00:00:00Z")
        assert entries(store) == [("lapsed-local", "ny", "2027-03-03T14:00:00Z")]
    finally:
        store.close()
