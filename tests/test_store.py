"""The SQL store and the runtime over it, on SQLite and PostgreSQL (the ``db_url`` fixture).

What a user of ``postflow ingest`` / ``run --once`` / ``history`` relies on: ingestion is
idempotent and all-or-nothing, backfills enter nothing, late and future events are applied at
the right logical time, suppression is a fact of an address over time, instances keep the
journey version they entered with, one broken customer does not stop the others, leases hand a
dead worker's customers over exactly once, concurrent workers never double a record, history
filters and orders, and every decided message leaves the outbox once.
"""

from __future__ import annotations

import io
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa
from databases import PG_URL, fresh_pg_url

from postflow import durations, events, simulate
from postflow.channels.base import Channel, Delivery, DeliveryStatus
from postflow.channels.registry import build_channels, close_channels
from postflow.effects import OutboundMessage
from postflow.ingest import ingest_file
from postflow.problems import ProblemsError
from postflow.runtime.service import Runtime, WorkerSettings, load_machines
from postflow.runtime.sweep import SweepStats
from postflow.store import schema
from postflow.store.batches import Batches, Outcome
from postflow.store.sql import IngestResult, SqlStore

T0 = durations.parse_instant("2027-03-01T12:00:00Z")


def us(offset: str = "0s") -> int:
    """T0 plus (or, with a leading ``-``, minus) a duration, in microseconds."""
    if offset.startswith("-"):
        return T0 - durations.parse_duration(offset[1:])
    return T0 + durations.parse_duration(offset)


def at(offset: str = "0s") -> str:
    """:func:`us` as an event's ``at``."""
    return durations.format_instant(us(offset))


def order(
    cid: str, when: str, oid: str, total: float = 10, event_id: str | None = None, **customer: Any
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "order_placed",
        "customer_id": cid,
        "at": at(when),
        "data": {"order_id": oid, "total": total},
    }
    if event_id is not None:
        event["id"] = event_id
    event["customer"] = {"email": f"{cid}@example.com", **customer}
    return event


THANKS = """
    id: thanks
    trigger: {event: order_placed}
    entry: {key: "trigger.data.order_id"}
    steps:
      - id: later
        wait: 1d
      - id: note
        email: {subject: "Thanks for {{ trigger.data.order_id }}", body: "Hi."}
    """


class Durable:
    """A project's journeys and configuration over one database, driven like ``run --once``."""

    def __init__(self, proj: Any, url: str) -> None:
        self.proj = proj
        self.url = url
        self.settings = proj.settings()
        self.store = SqlStore.open(url, self.settings, upgrade=True)
        self.console = io.StringIO()
        self.channels = build_channels(self.settings, console_stream=self.console)

    def runtime(
        self,
        *,
        owner: str | None = None,
        batch: int = 1000,
        channels: dict[str, Channel] | None = None,
    ) -> Runtime:
        machines = load_machines(self.settings, self.proj.root / "journeys")
        return Runtime(
            self.store,
            self.settings,
            machines,
            self.channels if channels is None else channels,
            owner=owner,
            worker=WorkerSettings(batch=batch),
        )

    def run(self, when: str, **kwargs: Any) -> SweepStats:
        return self.runtime(**kwargs).run_once(us(when))[0]

    def ingest(self, evts: list[dict[str, Any]], **kwargs: Any) -> IngestResult:
        return self.store.ingest([events.parse_event(e) for e in evts], **kwargs)

    def history(self, **kwargs: Any) -> list[dict[str, Any]]:
        return [simulate.record_json(r) for r in self.store.history(**kwargs)]

    def count(self, table: sa.Table) -> int:
        with self.store.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())

    def close(self) -> None:
        close_channels(self.channels.values())
        self.store.close()


@pytest.fixture
def durable(proj: Any, db_url: str) -> Iterator[Any]:
    """``durable()`` opens the project as it is now (write journeys and config first)."""
    opened: list[Durable] = []

    def open_() -> Durable:
        opened.append(Durable(proj, db_url))
        return opened[-1]

    yield open_
    for d in opened:
        d.close()


def messages(records: list[dict[str, Any]]) -> list[tuple[str, str, str, str | None]]:
    return [
        (r["customer_id"], r["at"], r["status"], r.get("subject") or r.get("reason"))
        for r in records
        if r["kind"] == "message"
    ]


# -- ingestion ------------------------------------------------------------------------------


def test_ingesting_a_file_twice_stores_its_events_once(proj: Any, durable: Any) -> None:
    proj.journey("thanks", THANKS)
    evts = [
        order("c1", "0s", "o1", event_id="e1"),
        order("c2", "1h", "o2", event_id="e2"),
        order("c1", "2h", "o3", event_id="e3"),
    ]
    path = proj.events_file(evts)
    d = durable()
    assert ingest_file(d.store, str(path)) == IngestResult(accepted=3, duplicates=0)
    assert ingest_file(d.store, str(path)) == IngestResult(accepted=0, duplicates=3)
    assert d.count(schema.events) == 3
    d.run("10d")
    assert d.history() == proj.simulate(evts, until=at("10d"))
    assert len(messages(d.history())) == 3  # one thank-you per order, not two


def test_an_id_already_ingested_keeps_its_first_content(proj: Any, durable: Any) -> None:
    proj.journey("thanks", THANKS)
    d = durable()
    assert d.ingest([order("c1", "0s", "o1", event_id="same")]) == IngestResult(1, 0)
    # Ids are global: another customer, type and content under the same id is ignored.
    other = {"id": "same", "type": "order_refunded", "customer_id": "c2", "at": at("1h")}
    assert d.ingest([other, order("c1", "2h", "o9", event_id="same")]) == IngestResult(0, 2)
    assert d.count(schema.events) == 1
    d.run("5d")
    assert messages(d.history()) == [("c1", at("1d"), "sent", "Thanks for o1")]


def test_a_file_with_bad_lines_is_refused_whole_and_every_bad_line_is_named(
    proj: Any, durable: Any
) -> None:
    proj.journey("thanks", THANKS)
    good = json.dumps(order("c1", "0s", "o1", event_id="g1"))
    path = proj.root / "mixed.jsonl"
    path.write_text(
        "\n".join(
            [
                good,
                '{"type": "order_placed", "customer_id": "c2", "at": "2027-03-01T12:00:00Z"',
                json.dumps(order("c3", "1h", "o3")),
                '{"type": "order_placed", "at": "2027-03-01T12:00:00Z"}',
                '{"type": "order_placed", "customer_id": "c4", "at": "2027-03-01T12:00:00"}',
                json.dumps(order("c5", "2h", "o5")),
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    d = durable()
    with pytest.raises(ProblemsError) as raised:
        ingest_file(d.store, str(path))
    problems = raised.value.problems
    assert [(p.file, p.line, p.severity) for p in problems] == [
        (str(path), 2, "error"),
        (str(path), 4, "error"),
        (str(path), 5, "error"),
    ]
    assert all(p.col >= 1 for p in problems)
    assert "customer_id" in problems[1].message and "UTC offset" in problems[2].message
    assert str(problems[0]).startswith(f"{path}:2:")
    assert d.count(schema.events) == 0  # not even the good lines
    assert d.count(schema.customers) == 0
    d.run("5d")
    assert d.history() == []


def test_backfill_updates_purchase_facts_and_enters_no_journey(proj: Any, durable: Any) -> None:
    proj.journey(
        "count",
        """
        id: count
        trigger: {event: order_placed}
        entry: {key: "trigger.data.order_id"}
        steps:
          - id: note
            email: {subject: "Order number {{ customer.orders_count }}", body: "Spent {{ customer.total_spent }}"}
        """,
    )
    d = durable()
    history = [order("c1", "-30d", "old1", 20), order("c1", "-10d", "old2", 30.5)]
    assert d.ingest(history, backfill=True) == IngestResult(2, 0)
    d.run("0s")
    view = d.store.customer_view("c1")
    assert view is not None
    assert view["profile"]["orders_count"] == 2
    assert view["profile"]["total_spent"] == 50.5
    assert view["instances"] == [] and view["records"] == []
    assert d.history() == []
    # The next real order counts the imported ones.
    d.ingest([order("c1", "1h", "new", 9.5)])
    d.run("2h")
    assert [(r["kind"], r.get("subject")) for r in d.history()] == [
        ("enter", None),
        ("message", "Order number 3"),
        ("exit", None),
    ]
    assert d.store.customer_view("c1")["profile"]["total_spent"] == 60.0  # type: ignore[index]


WINBACK = """
    id: winback
    trigger:
      schedule: "0 9 * * 1"
      audience: "customer.orders_count >= 1"
    steps:
      - id: miss_you
        email: {subject: "We miss you", body: "x"}
    """


def test_importing_order_history_does_not_make_an_audience_journey_fire_the_past(
    proj: Any, durable: Any
) -> None:
    proj.journey("winback", WINBACK)  # Mondays 09:00 UTC; T0 is Monday 2027-03-01 12:00
    d = durable()
    d.ingest([order("c1", "-60d", "old1", 20), order("c1", "-30d", "old2", 30.5)], backfill=True)
    d.run("0s")
    assert d.history() == []  # not a "We miss you" email for every Monday gone by
    assert d.console.getvalue() == ""


def test_a_journey_added_to_a_live_shop_fires_only_ticks_after_its_deployment(
    proj: Any, durable: Any
) -> None:
    proj.journey("thanks", THANKS)
    d = durable()
    runtime = d.runtime()
    d.ingest([order("c1", "0s", "o1")])
    runtime.run_once(us("30d"))
    proj.journey("winback", WINBACK)
    d.ingest([order("c2", "31d", "o2")])
    # As on SIGHUP: the journeys are read again; winback is deployed at c2's order (+31d).
    runtime.reload(load_machines(d.settings, proj.root / "journeys"), us("31d"))
    runtime.run_once(us("45d"))
    winback = [(r["at"], r["customer_id"]) for r in d.history(journey="winback")]
    mondays = ["2027-04-05T09:00:00Z", "2027-04-12T09:00:00Z"]
    assert sorted(set(winback)) == [(m, c) for m in mondays for c in ("c1", "c2")]


# -- logical time ---------------------------------------------------------------------------

LATE = """
    id: late
    trigger: {event: review_submitted}
    steps:
      - id: ack
        email: {subject: "Thanks for the review", body: "x"}
    """


def test_a_late_event_is_applied_at_the_customers_processed_time(proj: Any, durable: Any) -> None:
    proj.journey("thanks", THANKS)
    proj.journey("late", LATE)
    d = durable()
    d.ingest([order("c1", "0s", "o1")])
    d.run("2d")  # c1's timer fired at +1d: c1 is processed up to +1d
    # A review that happened at +12h arrives only now: history is not rewritten.
    d.ingest([{"type": "review_submitted", "customer_id": "c1", "at": at("12h")}])
    d.run("3d")
    late = [r for r in d.history() if r["journey"] == "late"]
    assert [(r["kind"], r["at"]) for r in late] == [
        ("enter", at("1d")),
        ("message", at("1d")),
        ("exit", at("1d")),
    ]


def test_an_event_in_the_future_waits_until_the_run_reaches_it(proj: Any, durable: Any) -> None:
    proj.journey("late", LATE)
    d = durable()
    d.ingest([{"type": "review_submitted", "customer_id": "c1", "at": at("5d")}])
    d.run("1d")
    assert d.history() == []
    d.run("4d23h59m59s")
    assert d.history() == []
    d.run("5d")  # the run's time is inclusive
    assert [(r["kind"], r["at"]) for r in d.history()] == [
        ("enter", at("5d")),
        ("message", at("5d")),
        ("exit", at("5d")),
    ]


def test_a_suppression_raised_by_another_customer_blocks_messages_from_its_time_on(
    proj: Any, durable: Any
) -> None:
    proj.journey(
        "later",
        """
        id: later
        trigger: {event: order_placed}
        steps:
          - id: pause
            wait: 2d
          - id: note
            email: {subject: "Hello", body: "x"}
        """,
    )
    evts = [
        # Two customers of one household share an address; their notes are due at +2d and +3d.
        order("c_a", "0s", "o1", email="home@example.com"),
        order("c_d", "1d", "o2", email="home@example.com"),
        # A third customer's bounce suppresses the address (written differently) at +2d12h.
        {
            "type": "address_suppressed",
            "customer_id": "c_b",
            "at": at("2d12h"),
            "data": {"address": "HOME@Example.com", "reason": "bounce"},
        },
    ]
    d = durable()
    d.ingest(evts)
    d.run("2d1h", batch=1)
    d.run("5d", batch=1)
    assert messages(d.history()) == [
        ("c_a", at("2d"), "sent", "Hello"),
        ("c_d", at("3d"), "skipped", "suppressed"),
    ]
    assert d.history() == proj.simulate(evts, until=at("5d"))


# -- journey versions -----------------------------------------------------------------------

VERSIONED = """
    id: pinned
    trigger: {event: order_placed}
    steps:
      - id: pause
        wait: 3d
      - id: note
        email: {subject: "%s", template: note}
    """


def test_an_instance_keeps_the_version_it_entered_with(proj: Any, durable: Any) -> None:
    proj.journey("pinned", VERSIONED % "A")
    proj.template("note.html", "Body A\n")
    d = durable()
    d.ingest([order("c_old", "0s", "o1")])
    d.run("1d")
    # The journey and its template change while c_old waits; a new customer enters after.
    proj.journey("pinned", VERSIONED % "B")
    proj.template("note.html", "Body B\n")
    d.ingest([order("c_new", "1d1h", "o2")])
    d.run("10d")
    sent = {
        r["customer_id"]: (r["subject"], r["body"]) for r in d.history() if r.get("step") == "note"
    }
    assert sent == {"c_old": ("A", "Body A\n"), "c_new": ("B", "Body B\n")}


def test_an_instance_finishes_from_the_stored_version_after_its_file_is_deleted(
    proj: Any, durable: Any
) -> None:
    path = proj.journey("pinned", VERSIONED % "A")
    proj.template("note.html", "Body A\n")
    d = durable()
    d.ingest([order("c1", "0s", "o1")])
    d.run("1d")
    path.unlink()
    d.ingest([order("c2", "1d", "o2")])  # nobody enters a journey that is gone
    d.run("10d")
    assert [
        (r["customer_id"], r["kind"], r.get("subject"), r.get("reason")) for r in d.history()
    ] == [
        ("c1", "enter", None, None),
        ("c1", "message", "A", None),
        ("c1", "exit", None, "completed"),
    ]


def test_a_pinned_version_with_a_template_in_a_subdirectory_still_runs(
    proj: Any, durable: Any
) -> None:
    (proj.root / "templates" / "mail").mkdir()
    proj.template("mail/note.html", "Body A\n")
    proj.journey("pinned", (VERSIONED % "A").replace("template: note", "template: mail/note"))
    d = durable()
    d.ingest([order("c1", "0s", "o1")])
    d.run("1d")
    proj.template("mail/note.html", "Body B\n")  # a new version; c1 stays on A
    d.run("10d")
    assert [(r["subject"], r["body"]) for r in d.history() if r["kind"] == "message"] == [
        ("A", "Body A\n")
    ]


# -- robustness -----------------------------------------------------------------------------


def test_a_customer_with_a_corrupted_state_is_set_aside_and_the_batch_goes_on(
    proj: Any, durable: Any
) -> None:
    proj.journey("thanks", THANKS)
    d = durable()
    d.ingest([order(f"c{n}", "0s", f"o{n}") for n in range(1, 4)])
    d.run("1h")
    with d.store.engine.begin() as conn:
        conn.execute(
            sa.update(schema.customers)
            .where(schema.customers.c.customer_id == "c2")
            .values(state=b"garbage")
        )
    stats = d.run("2d")
    assert stats.errors == 1
    assert [(c, s) for c, _, s, _ in messages(d.history())] == [("c1", "sent"), ("c3", "sent")]
    with d.store.engine.connect() as conn:
        row = conn.execute(
            sa.select(schema.customers.c.error, schema.customers.c.due_at).where(
                schema.customers.c.customer_id == "c2"
            )
        ).one()
    assert row.error and "JSON" in row.error
    assert row.due_at is None  # not claimed again and again
    assert d.run("3d").errors == 0


def test_a_dead_workers_customers_are_taken_over_once_its_lease_expires(
    proj: Any, durable: Any
) -> None:
    proj.journey("thanks", THANKS)
    evts = [order(f"c{n}", "0s", f"o{n}") for n in range(6)]
    d = durable()
    d.ingest(evts)
    batches = Batches(d.store)
    # Two workers claimed customers and stopped: one with a long lease, one with a short one.
    stuck = {c.customer_id for c in batches.claim("stuck", us("2d"), 2, 600_000_000)}
    dead_claim = batches.claim("dead", us("2d"), 2, 300_000)
    dead = {c.customer_id for c in dead_claim}
    assert len(stuck) == len(dead) == 2 and stuck.isdisjoint(dead)
    live = d.runtime(owner="live")
    live.run_once(us("2d"))
    time.sleep(0.4)  # the short lease runs out
    live.run_once(us("2d"))
    # The dead worker's customers were taken over and advanced exactly once; the customers
    # under a lease still running were left alone.
    others = [e for e in evts if e["customer_id"] not in stuck]
    assert d.history() == proj.simulate(others, until=at("2d"))
    # The dead worker coming back cannot write what it had in hand.
    stale = [Outcome(c.customer_id, None, None, None, None) for c in dead_claim]
    assert batches.write_back("dead", stale) == []
    assert d.history() == proj.simulate(others, until=at("2d"))


def test_two_workers_share_the_work_and_never_double_a_record(proj: Any, durable: Any) -> None:
    proj.journey("thanks", THANKS)
    evts = [order(f"c{n:04d}", f"{n % 60}m", f"o{n}") for n in range(2000)]
    first, second = durable(), durable()  # two engines on one database
    first.ingest(evts)
    runtimes = [
        first.runtime(owner="w1", batch=50),
        Runtime(
            second.store,
            second.settings,
            load_machines(second.settings, proj.root / "journeys"),
            second.channels,
            owner="w2",
            worker=WorkerSettings(batch=50),
        ),
    ]
    stats: dict[str, SweepStats] = {}
    failures: list[BaseException] = []

    def work(runtime: Runtime) -> None:
        try:
            stats[runtime.owner] = runtime.sweep(us("2d"))
        except BaseException as exc:  # reported below
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(r,)) for r in runtimes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert stats["w1"].customers > 0 and stats["w2"].customers > 0
    assert stats["w1"].customers + stats["w2"].customers == 2000
    with first.store.engine.connect() as conn:
        r = schema.records
        doubled = conn.execute(
            sa.select(r.c.instance, r.c.kind, sa.func.count())
            .group_by(r.c.instance, r.c.kind)
            .having(sa.func.count() > 1)
        ).all()
    assert doubled == []
    assert first.count(schema.records) == 3 * 2000
    assert Counter(r["kind"] for r in first.history()) == {
        "enter": 2000,
        "message": 2000,
        "exit": 2000,
    }


# -- reading --------------------------------------------------------------------------------


def test_history_filters_by_customer_and_journey_and_keeps_the_contract_order(
    proj: Any, durable: Any
) -> None:
    proj.journey("thanks", THANKS)
    proj.journey("late", LATE)
    evts = [
        order("c2", "0s", "o1"),
        order("c1", "0s", "o2"),
        {"type": "review_submitted", "customer_id": "c2", "at": at("1d")},
        order("c1", "1d", "o3"),
    ]
    d = durable()
    d.ingest(evts)
    d.run("3d")
    everything = d.history()
    assert everything == proj.simulate(evts, until=at("3d"))
    keys = [(r["at"], r["customer_id"]) for r in everything]
    assert keys == sorted(keys)
    # Production order within one instant: c1 at +1d finishes o2 and enters o3.
    assert [
        (r["kind"], r["instance"])
        for r in everything
        if r["customer_id"] == "c1" and r["at"] == at("1d")
    ] == [
        ("message", "thanks:c1:1"),
        ("exit", "thanks:c1:1"),
        ("enter", "thanks:c1:2"),
    ]
    assert d.history(customer="c1") == [r for r in everything if r["customer_id"] == "c1"]
    assert d.history(journey="late") == [r for r in everything if r["journey"] == "late"]
    assert d.history(customer="c2", journey="thanks") == [
        r for r in everything if r["customer_id"] == "c2" and r["journey"] == "thanks"
    ]
    assert d.history(customer="nobody") == []
    # Read in pages of two, it is the same history.
    assert [simulate.record_json(r) for r in d.store.history(batch=2)] == everything


# -- the outbox and channels ----------------------------------------------------------------


def test_every_decided_message_is_sent_once_through_the_outbox(proj: Any, durable: Any) -> None:
    proj.journey("thanks", THANKS)
    proj.journey("late", LATE)
    evts = [
        order("c1", "0s", "o1"),
        order("c2", "1h", "o2", email_consent=False),  # marketing skipped: no outbox row
        {"type": "review_submitted", "customer_id": "c1", "at": at("2h")},
    ]
    d = durable()
    d.ingest(evts)
    d.run("1h")
    d.run("3d")
    d.run("4d")  # nothing new: nothing printed again
    sent = [r for r in d.history() if r["kind"] == "message" and r["status"] == "sent"]
    assert len(sent) == 2
    with d.store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(schema.outbox.c.customer_id, schema.outbox.c.step, schema.outbox.c.status)
        ).all()
    assert sorted(tuple(row) for row in rows) == [("c1", "ack", "sent"), ("c1", "note", "sent")]
    printed = d.console.getvalue()
    heads = [line for line in printed.splitlines() if line.startswith("── ")]
    assert sorted(heads) == sorted(
        f"── email → {r['to']} · {r['journey']}/{r['step']} · {r['at']}" for r in sent
    )
    assert printed.count("Subject: Thanks for o1") == 1


def test_the_file_channel_gets_one_json_line_per_message(proj: Any, durable: Any) -> None:
    proj.journey(
        "both",
        """
        id: both
        trigger: {event: order_placed}
        steps:
          - id: mail
            email: {subject: "Order {{ trigger.data.order_id }}", body: "x", transactional: true}
          - id: text
            sms: {body: "Order {{ trigger.data.order_id }}", transactional: true}
        """,
    )
    proj.config(
        """
        timezone: UTC
        channels:
          email: {provider: file, path: sent.jsonl}
          sms: {provider: file, path: sent.jsonl}
        """
    )
    d = durable()
    d.ingest([order(f"c{n}", f"{n}h", f"o{n}", phone=f"+1555555010{n}") for n in range(3)])
    d.run("1d")
    d.run("2d")
    written = [json.loads(line) for line in (proj.root / "sent.jsonl").read_text().splitlines()]
    assert sorted((m["customer_id"], m["channel"], m["to"]) for m in written) == [
        (f"c{n}", channel, to)
        for n in range(3)
        for channel, to in (("email", f"c{n}@example.com"), ("sms", f"+1555555010{n}"))
    ]
    with d.store.engine.connect() as conn:
        ids = set(conn.execute(sa.select(schema.outbox.c.message_id)).scalars())
    assert {m["message_id"] for m in written} == ids
    assert d.console.getvalue() == ""


class Answering:
    """A provider that gives every message the same answer, and counts the attempts."""

    name = "fake"

    def __init__(self, status: DeliveryStatus, error: str | None = None) -> None:
        self.status, self.error = status, error
        self.attempts: list[str] = []

    def send(self, message: OutboundMessage) -> Delivery:
        self.attempts.append(message.message_id)
        return Delivery(self.status, self.name, error=self.error)

    def close(self) -> None:
        pass


def test_a_refused_delivery_turns_the_record_into_a_provider_error(proj: Any, durable: Any) -> None:
    proj.journey("thanks", THANKS)
    d = durable()
    d.ingest([order("c1", "0s", "o1")])
    refusing = Answering("failed", "400 bad address")
    d.runtime(channels={"email": refusing, "sms": refusing, "webhook": refusing}).run_once(us("2d"))
    assert len(refusing.attempts) == 1
    [message] = [r for r in d.history() if r["kind"] == "message"]
    assert message == {
        "kind": "message",
        "at": at("1d"),
        "customer_id": "c1",
        "journey": "thanks",
        "instance": "thanks:c1:1",
        "step": "note",
        "channel": "email",
        "status": "failed",
        "reason": "provider_error",
        "error": "400 bad address",
        "to": "c1@example.com",
        "subject": "Thanks for o1",
        "body": "Hi.",
    }
    keys = [k for k in simulate.FIELD_ORDER if k in message]
    assert list(message) == keys  # printed in the contract's field order
    with d.store.engine.connect() as conn:
        status = conn.execute(sa.select(schema.outbox.c.status)).scalar_one()
    assert status == "failed"


def test_a_transient_failure_is_retried_later_and_the_record_still_says_sent(
    proj: Any, durable: Any
) -> None:
    proj.journey("thanks", THANKS)
    d = durable()
    d.ingest([order("c1", "0s", "o1")])
    busy = Answering("retry", "503 busy")
    channels: dict[str, Channel] = {"email": busy, "sms": busy, "webhook": busy}
    d.runtime(channels=channels).run_once(us("2d"))
    d.runtime(channels=channels).run_once(us("3d"))  # the backoff (30s) has not passed
    assert len(busy.attempts) == 1
    [message] = [r for r in d.history() if r["kind"] == "message"]
    assert message["status"] == "sent" and "reason" not in message
    with d.store.engine.connect() as conn:
        row = conn.execute(
            sa.select(schema.outbox.c.status, schema.outbox.c.attempts, schema.outbox.c.error)
        ).one()
    assert tuple(row) == ("queued", 1, "503 busy")


# -- PostgreSQL only ------------------------------------------------------------------------


@contextmanager
def linguistic_pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database whose default collation is en-US (ICU), as on the many
    servers initialised with an en_US.UTF-8 locale; dropped afterwards."""
    name = f"pf_t_icu_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(
                sa.text(
                    f'CREATE DATABASE "{name}" TEMPLATE template0 LOCALE_PROVIDER icu '
                    "ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'"
                )
            )
        yield sa.make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_history_orders_customer_ids_as_simulate_does_whatever_the_collation(
    proj: Any,
) -> None:
    proj.journey("late", LATE)
    evts = [
        {"type": "review_submitted", "customer_id": cid, "at": at("0s")}
        for cid in ("b1", "C1", "c-2", "c_b")
    ]
    with linguistic_pg_url() as url:
        d = Durable(proj, url)
        try:
            d.ingest(evts)
            d.run("1d")
            got = d.history()
        finally:
            d.close()
    assert [r["customer_id"] for r in got if r["kind"] == "enter"] == ["C1", "b1", "c-2", "c_b"]
    assert got == proj.simulate(evts, until=at("1d"))


def test_a_running_worker_sees_a_suppression_from_an_ingest_that_committed_late(
    proj: Any,
) -> None:
    proj.journey(
        "later",
        """
        id: later
        trigger: {event: order_placed}
        steps:
          - id: pause
            wait: 2d
          - id: note
            email: {subject: "Hello", body: "x"}
        """,
    )

    def suppression(cid: str, address: str) -> events.Event:
        return events.parse_event(
            {
                "type": "address_suppressed",
                "customer_id": cid,
                "at": at("1d"),
                "data": {"address": address, "reason": "bounce"},
            }
        )

    with fresh_pg_url() as url:
        d = Durable(proj, url)
        try:
            d.ingest([order("c1", "0s", "o1", email="ann@example.com")])
            worker = d.runtime()  # one long-running daemon
            worker.run_once(us("1d"))
            # A big import streams in one transaction; its first line suppresses ann@.
            inserted, release = threading.Event(), threading.Event()

            def big_file() -> Iterator[events.Event]:
                yield suppression("importer", "ann@example.com")
                inserted.set()  # asked for the next line: the first is in the table
                release.wait(30)

            importer = threading.Thread(target=lambda: d.store.ingest(big_file(), chunk=1))
            importer.start()
            assert inserted.wait(30)
            # Meanwhile another suppression is ingested and committed, and the worker runs.
            d.store.ingest([suppression("other", "bob@example.com")])
            worker.run_once(us("1d1h"))
            release.set()
            importer.join(30)
            worker.run_once(us("5d"))  # c1's note is due at +2d, after ann@ was suppressed
            got = messages(d.history())
        finally:
            release.set()
            d.close()
    assert got == [("c1", at("2d"), "skipped", "suppressed")]
