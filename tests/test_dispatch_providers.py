"""The dispatcher with the real SendGrid and Twilio channels, on SQLite and PostgreSQL.

A shop's view of delivery: a transient failure is retried later (never sooner than the
provider's Retry-After) and then sent once; after ``max_attempts`` the record says
``failed``/``provider_error`` with the provider's ``"<code> <message>"``; a refusal that
cannot succeed fails at once, and Twilio's 21610 also suppresses the number for every later
message; a provider that is down is set aside for the pass instead of costing a timeout per
message; caps hold across journeys; sends are bounded by ``concurrency``.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from conftest import Project
from fakes import Fail, FakeSendGrid, FakeTwilio, Hang

from postflow import durations, events, project
from postflow.channels.registry import build_channels, close_channels
from postflow.runtime.ratelimit import TokenBucket
from postflow.runtime.service import Runtime, WorkerSettings
from postflow.store import schema as t
from postflow.store.sql import SqlStore, wall_us

HOUR = 3_600_000_000
T0 = durations.format_instant(wall_us() // 1_000_000 * 1_000_000 - HOUR)
"""An hour ago: suppressions a provider reports take effect now, between T0 and T0 + 1d."""

SHIPPING = """
id: shipping
trigger: {event: order_shipped}
steps:
  - id: mail
    email: {subject: "Shipped {{ trigger.data.order_id }}", body: "On its way.", transactional: true}
  - id: text
    sms: {body: "Order {{ trigger.data.order_id }} shipped", transactional: true}
  - id: pause
    wait: 1d
  - id: later
    sms: {body: "Did it arrive?", transactional: true}
"""


class Shop:
    """A project whose channels point at the fakes, over a real store."""

    def __init__(
        self, proj: Project, db_url: str, sg: FakeSendGrid, tw: FakeTwilio, extra: str = ""
    ) -> None:
        proj.config(
            "timezone: UTC\n"
            "channels:\n"
            '  email: {from: "Shop <hi@shop.example>"}\n'
            '  sms: {from: "+15005550006"}\n' + extra
        )
        self.settings = proj.settings()
        self.env = {
            "SENDGRID_API_KEY": sg.api_key,
            "POSTFLOW_SENDGRID_BASE_URL": sg.base_url,
            "TWILIO_ACCOUNT_SID": tw.account_sid,
            "TWILIO_AUTH_TOKEN": tw.auth_token,
            "POSTFLOW_TWILIO_BASE_URL": tw.base_url,
        }
        self.store = SqlStore.open(db_url, self.settings, upgrade=True)
        self.machines = project.require_journeys([proj.root / "journeys"], self.settings.templates)
        self.channels = build_channels(
            self.settings, environ=self.env, console_stream=io.StringIO()
        )
        self.runtime = Runtime(
            self.store, self.settings, self.machines, self.channels, worker=WorkerSettings()
        )

    def ingest(self, *objs: dict[str, Any]) -> None:
        self.store.ingest([events.parse_event(o) for o in objs])

    def run(self, at: str = T0) -> Any:
        return self.runtime.run_once(durations.parse_instant(at))[1]

    def outbox(self) -> list[Any]:
        o = t.outbox
        with self.store.engine.connect() as conn:
            return conn.execute(sa.select(o).order_by(o.c.message_id)).all()

    def messages(self) -> list[dict[str, Any]]:
        return [r for r in self.store.history() if r["kind"] == "message"]

    def close(self) -> None:
        self.runtime.close()
        close_channels(self.channels.values())
        self.store.close()


@pytest.fixture
def sg() -> Iterator[FakeSendGrid]:
    with FakeSendGrid() as fake:
        yield fake


@pytest.fixture
def tw() -> Iterator[FakeTwilio]:
    with FakeTwilio() as fake:
        yield fake


@pytest.fixture
def shop(proj: Project, db_url: str, sg: FakeSendGrid, tw: FakeTwilio) -> Iterator[Any]:
    made: list[Shop] = []

    def make(journeys: dict[str, str] | None = None, extra: str = "") -> Shop:
        for name, text in (journeys or {"shipping": SHIPPING}).items():
            proj.journey(name, text)
        made.append(Shop(proj, db_url, sg, tw, extra))
        return made[-1]

    yield make
    for s in made:
        s.close()


def shipped(
    customer: str = "c_1", phone: str = "+15555550100", order: str = "o_1"
) -> dict[str, Any]:
    return {
        "id": f"ship-{customer}-{order}",
        "type": "order_shipped",
        "customer_id": customer,
        "at": T0,
        "customer": {"email": f"{customer}@example.com", "phone": phone},
        "data": {"order_id": order},
    }


def test_both_providers_get_each_message_once(shop: Any, sg: FakeSendGrid, tw: FakeTwilio) -> None:
    s = shop()
    s.ingest(shipped())
    stats = s.run()
    assert (stats.sent, stats.retried, stats.failed) == (2, 0, 0)
    rows = {r.step: r for r in s.outbox()}
    assert [r.json["custom_args"]["postflow_message_id"] for r in sg.sent] == [
        rows["mail"].message_id
    ]
    assert [r.form["Body"] for r in tw.sent] == ["Order o_1 shipped"]
    assert rows["mail"].provider == "sendgrid" and rows["mail"].provider_id == sg.message_ids[0]
    assert rows["text"].provider == "twilio" and rows["text"].provider_id == tw.message_ids[0]
    assert rows["text"].to_address == "+15555550100"
    s.run()  # nothing is sent twice
    assert len(sg.requests) == 1 and len(tw.requests) == 1
    assert sg.violations == [] and tw.violations == []


def test_a_transient_failure_is_retried_then_sent(shop: Any, sg: FakeSendGrid) -> None:
    s = shop(extra="dispatch: {backoff: 1s, max_backoff: 1s}\n")
    sg.script(Fail(500, "Internal error"))
    s.ingest(shipped())
    before = wall_us()
    stats = s.run()
    assert (stats.sent, stats.retried) == (1, 1)  # the SMS went; the mail waits
    row = next(r for r in s.outbox() if r.step == "mail")
    assert (row.status, row.attempts, row.error) == ("queued", 1, "500 Internal error")
    assert row.next_attempt_at >= before + 800_000  # backoff 1s, jitter ±20%
    assert s.run().sent == 0  # not due yet: no second attempt at once
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and s.run().sent == 0:
        time.sleep(0.2)
    row = next(r for r in s.outbox() if r.step == "mail")
    assert (row.status, row.attempts, row.error) == ("sent", 2, None)
    assert len(sg.requests) == 2
    mail = next(r for r in s.messages() if r["step"] == "mail")
    assert mail["status"] == "sent"  # retries do not change the record


def test_retry_after_is_honoured(shop: Any, sg: FakeSendGrid) -> None:
    s = shop(extra="dispatch: {backoff: 1s, max_backoff: 2s}\n")
    sg.script(Fail(429, "too many requests", retry_after=120))
    s.ingest(shipped())
    before = wall_us()
    s.run()
    row = next(r for r in s.outbox() if r.step == "mail")
    assert row.status == "queued"
    assert row.next_attempt_at >= before + 120_000_000  # not the 1-2 s backoff


def test_retries_run_out_and_the_record_says_why(shop: Any, sg: FakeSendGrid) -> None:
    s = shop(extra="dispatch: {max_attempts: 2, backoff: 1s, max_backoff: 1s}\n")
    sg.script(Fail(503, "Service Unavailable"), Fail(503, "Service Unavailable"))
    s.ingest(shipped())
    s.run()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and s.run().failed == 0:
        time.sleep(0.2)
    mail = next(r for r in s.messages() if r["step"] == "mail")
    assert (mail["status"], mail["reason"], mail["error"]) == (
        "failed",
        "provider_error",
        "503 Service Unavailable",
    )
    assert len(sg.requests) == 2


def test_a_permanent_refusal_fails_at_once(shop: Any, sg: FakeSendGrid) -> None:
    s = shop()
    sg.script(Fail(403, "The from address does not match a verified Sender Identity"))
    s.ingest(shipped())
    assert s.run().failed == 1
    mail = next(r for r in s.messages() if r["step"] == "mail")
    assert mail["error"] == "403 The from address does not match a verified Sender Identity"
    assert len(sg.requests) == 1


def test_twilio_21610_suppresses_the_number_for_later_messages(shop: Any, tw: FakeTwilio) -> None:
    s = shop()
    s.ingest(shipped(phone="+15005550004"))  # Twilio's "replied STOP" number
    s.run()
    text = next(r for r in s.messages() if r["step"] == "text")
    assert (text["status"], text["reason"]) == ("failed", "provider_error")
    assert text["error"].startswith("21610 ")
    s.run(durations.format_instant(durations.parse_instant(T0) + 24 * HOUR))  # the follow-up
    later = next(r for r in s.messages() if r["step"] == "later")
    assert (later["status"], later["reason"]) == ("skipped", "suppressed")
    assert len(tw.requests) == 1
    with s.store.engine.connect() as conn:
        bodies = [orjson.loads(b) for (b,) in conn.execute(sa.select(t.events.c.body))]
    suppressed = [b for b in bodies if b["type"] == "address_suppressed"]
    assert [b["data"] for b in suppressed] == [{"address": "+15005550004", "reason": "stop"}]


def test_an_outage_sets_the_provider_aside_and_journeys_go_on(
    shop: Any, sg: FakeSendGrid, tw: FakeTwilio
) -> None:
    s = shop(extra="dispatch: {concurrency: 2, backoff: 1s}\n")
    tw.script(*[Fail(500, "down")] * 100)
    s.ingest(*[shipped(f"c_{n}", phone=f"+1555555{n:04d}") for n in range(30)])
    stats = s.run()
    assert len(sg.sent) == 30  # email is not held up by Twilio being down
    assert len(tw.requests) <= 4 * 2 + 2  # the outage streak, not one call per message
    assert stats.deferred > 0
    rows = [r for r in s.outbox() if r.step == "text"]
    assert all(r.status == "queued" for r in rows)
    untried = [r for r in rows if r.attempts == 0]
    assert len(untried) == stats.deferred  # deferred without burning an attempt
    records = [r for r in s.messages() if r["step"] == "text"]
    assert {r["status"] for r in records} == {"sent"}  # decided; delivery is pending
    view = s.store.customer_view("c_0")
    assert [(i["status"], i["step"]) for i in view["instances"]] == [("active", "pause")]


def test_an_outage_defers_no_sooner_than_retry_after(shop: Any, tw: FakeTwilio) -> None:
    s = shop(extra="dispatch: {concurrency: 1, backoff: 1s}\n")
    tw.script(*[Fail(503, "busy", retry_after=120)] * 20)
    s.ingest(*[shipped(f"c_{n}", phone=f"+1555555{n:04d}") for n in range(10)])
    before = wall_us()
    stats = s.run()
    assert stats.deferred > 0
    rows = [r for r in s.outbox() if r.step == "text"]
    assert all(r.next_attempt_at >= before + 120_000_000 for r in rows)


def test_an_absurd_retry_after_falls_back_to_the_backoff(shop: Any, sg: FakeSendGrid) -> None:
    s = shop(extra="dispatch: {max_attempts: 3, backoff: 1s, max_backoff: 2s}\n")
    sg.script(Fail(503, "busy", retry_after=10_000_000_000_000))
    s.ingest(shipped())
    before = wall_us()
    s.run()
    row = next(r for r in s.outbox() if r.step == "mail")
    assert (row.status, row.attempts) == ("queued", 1)  # counted: max_attempts still applies
    assert before + 800_000 <= row.next_attempt_at <= wall_us() + 1_200_000


def test_frequency_caps_hold_across_two_journeys(shop: Any, sg: FakeSendGrid) -> None:
    marketing = """
    id: {id}
    trigger: {{event: order_placed}}
    steps:
      - id: hello
        email: {{subject: "{id}", body: "Hi"}}
    """
    s = shop(
        {"a": marketing.format(id="a"), "b": marketing.format(id="b")},
        extra="limits: {email: {max: 1, per: 1d}}\n",
    )
    s.ingest(
        {
            "type": "order_placed",
            "customer_id": "c_1",
            "at": T0,
            "customer": {"email": "ann@example.com"},
            "data": {"total": 10},
        }
    )
    s.run()
    statuses = sorted((r["journey"], r["status"], r.get("reason")) for r in s.messages())
    assert statuses == [("a", "sent", None), ("b", "skipped", "frequency_cap")]
    assert [r.json["subject"] for r in sg.sent] == ["a"]


class Receiver:
    """A webhook receiver that answers slowly and remembers the most requests in flight."""

    def __init__(self, delay: float) -> None:
        self.delay, self.active, self.most, self.count = delay, 0, 0, 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                with receiver.lock:
                    receiver.active += 1
                    receiver.count += 1
                    receiver.most = max(receiver.most, receiver.active)
                self.rfile.read(int(self.headers.get("content-length", 0)))
                time.sleep(receiver.delay)
                with receiver.lock:
                    receiver.active -= 1
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_concurrency_bounds_the_sends_in_flight(shop: Any) -> None:
    receiver = Receiver(delay=0.15)
    try:
        hook = f"""
        id: hook
        trigger: {{event: order_placed}}
        steps:
          - id: call
            webhook: {{url: "{receiver.url}", json: {{order: "{{{{ trigger.customer_id }}}}"}}}}
        """
        s = shop({"hook": hook}, extra="dispatch: {concurrency: 3}\n")
        s.ingest(
            *[
                {"type": "order_placed", "customer_id": f"c_{n}", "at": T0, "data": {"total": 1}}
                for n in range(12)
            ]
        )
        assert s.run().sent == 12
        assert receiver.count == 12
        assert 1 < receiver.most <= 3
    finally:
        receiver.close()


def test_a_hanging_provider_times_out_and_is_retried(shop: Any, sg: FakeSendGrid) -> None:
    s = shop(
        extra="dispatch: {backoff: 1s}\n",
    )
    s.settings.raw["channels"]["email"]["timeout"] = "1s"
    s.channels = build_channels(s.settings, environ=s.env)
    s.runtime = Runtime(s.store, s.settings, s.machines, s.channels)
    sg.script(Hang(5))
    s.ingest(shipped())
    s.run()
    row = next(r for r in s.outbox() if r.step == "mail")
    assert row.status == "queued" and row.error.startswith("timeout")


def test_token_bucket_spaces_sends_after_the_burst() -> None:
    now = [0.0]
    bucket = TokenBucket(2.0, 3, clock=lambda: now[0])
    waits = [bucket.reserve() for _ in range(6)]
    assert waits == [0.0, 0.0, 0.0, 0.5, 1.0, 1.5]
    now[0] = 10.0  # idle for a while: the burst is back, no more
    assert [bucket.reserve() for _ in range(4)] == [0.0, 0.0, 0.0, 0.5]


def test_rate_setting_reaches_the_channel(shop: Any, proj: Project) -> None:
    s = shop(extra="")
    path = Path(proj.root / "postflow.yaml")
    assert path.exists()
    s.settings.raw["channels"]["email"]["rate"] = {"per_second": 5, "burst": 2}
    channels = build_channels(s.settings, environ=s.env)
    assert getattr(channels["email"], "rate", None) == (5.0, 2)
    close_channels(channels.values())


class FlakyOutbox:
    """The real outbox whose first lease renewal fails (the database blinked)."""

    def __init__(self, outbox: Any) -> None:
        self.outbox, self.failed_once = outbox, False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.outbox, name)

    def renew(self, *args: Any) -> Any:
        if not self.failed_once:
            self.failed_once = True
            raise sa.exc.OperationalError("renew", {}, Exception("database is locked"))
        return self.outbox.renew(*args)


def test_a_database_error_mid_drain_never_sends_twice(shop: Any) -> None:
    """Sends in flight when the main thread fails finish and record themselves before the
    rest is given back, so the next pass does not send them again."""
    receiver = Receiver(delay=0.3)
    try:
        hook = f"""
        id: hook
        trigger: {{event: order_placed}}
        steps:
          - id: call
            webhook: {{url: "{receiver.url}"}}
        """
        s = shop({"hook": hook}, extra="dispatch: {concurrency: 2}\n")
        s.ingest(
            *[
                {"type": "order_placed", "customer_id": f"c_{n}", "at": T0, "data": {"total": 1}}
                for n in range(6)
            ]
        )
        dispatcher = s.runtime.dispatcher
        dispatcher.outbox = FlakyOutbox(dispatcher.outbox)
        dispatcher.lease_us = 900_000  # renewed every 0.3 s: during the sends
        s.runtime.prepare(durations.parse_instant(T0))
        s.runtime.sweep(durations.parse_instant(T0))
        with pytest.raises(sa.exc.OperationalError):
            dispatcher.drain()
        dispatcher.drain()
        assert receiver.count == 6
        assert {r.status for r in s.outbox()} == {"sent"}
    finally:
        receiver.close()
