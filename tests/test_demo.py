"""``postflow demo``: the generated stream, the real daemon playing it, the live view.

The demo runs at a speed so high that the window's clock is at its end at once: the daemon
then processes everything due up to it, as ``run --once`` would, so no verdict here depends
on how fast the machine is (the clock stops at the end of the window, and the demo ends
when the database says everything due was processed and dispatched).
"""

from __future__ import annotations

import io
import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import phonenumbers
import pytest
import yaml
from click.testing import CliRunner
from rich.console import Console

from postflow import events
from postflow.bundled import bundled_project
from postflow.cli import main
from postflow.effects import OutboundMessage
from postflow.runtime.demo import DemoResult, run_demo
from postflow.runtime.demo_stream import DEFAULT_START, DemoStream, demo_stream
from postflow.runtime.demo_view import (
    Board,
    People,
    render_board,
    summary_renderable,
    summary_text,
    tally,
)

REPO = Path(__file__).resolve().parent.parent
FAST = 1e12  # simulated seconds per real second: the clock is at the window's end at once
DAY = timedelta(days=1)


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# -- the stream ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def stream() -> DemoStream:
    return demo_stream()


def test_the_stream_is_deterministic(stream: DemoStream) -> None:
    assert demo_stream() == stream
    assert demo_stream(seed=8) != stream
    again = demo_stream(DEFAULT_START, 40, 7)
    assert orjson.dumps(again.events) == orjson.dumps(stream.events)
    assert orjson.dumps(again.history) == orjson.dumps(stream.history)


def test_the_stream_is_valid_ordered_and_inside_its_window(stream: DemoStream) -> None:
    start, end = stream.start, stream.start + stream.days * DAY
    for part in (stream.history, stream.events):
        times = [instant(e["at"]) for e in part]
        assert times == sorted(times)
        for e in part:
            events.parse_event(e)  # raises on anything the contract rejects
    assert all(instant(e["at"]) < start for e in stream.history)
    assert all(start <= instant(e["at"]) < end for e in stream.events)
    ids = [e["id"] for e in (*stream.history, *stream.events)]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("customers", [1, 5, 16, 40, 75])
def test_the_stream_has_as_many_customers_as_asked(customers: int) -> None:
    assert len(demo_stream(customers=customers).customers()) == customers


def test_the_stream_speaks_the_library_vocabulary(stream: DemoStream) -> None:
    types = Counter(e["type"] for e in stream.events)
    for kind in (
        "order_placed",
        "order_shipped",
        "order_out_for_delivery",
        "order_delivered",
        "order_refunded",
        "order_cancelled",
        "review_submitted",
        "nps_submitted",
        "support_ticket_closed",
        "csat_submitted",
        "referral_converted",
    ):
        assert types[kind] >= 1, kind
    catalog = yaml.safe_load((REPO / "catalog.yaml").read_text(encoding="utf-8"))
    for e in (*stream.history, *stream.events):
        data = e["data"]
        for item in data.get("items", []):
            assert set(item) == {"sku", "name", "category", "quantity", "price"}
            assert item["sku"] in catalog and item["category"] == catalog[item["sku"]]["category"]
        if e["type"] == "order_placed":
            assert data["total"] == round(sum(i["quantity"] * i["price"] for i in data["items"]), 2)
        if e["type"] in ("order_shipped", "order_out_for_delivery", "order_delivered"):
            assert data["tracking_url"].startswith("https://")
    ratings = {e["data"]["rating"] for e in stream.events if e["type"] == "review_submitted"}
    assert max(ratings) == 5 and min(ratings) <= 2
    scores = {e["data"]["score"] for e in stream.events if e["type"] == "nps_submitted"}
    assert max(scores) >= 9 and min(scores) <= 6 and any(7 <= s <= 8 for s in scores)


def test_every_order_ships_then_goes_out_for_delivery_then_arrives(stream: DemoStream) -> None:
    steps = ("order_placed", "order_shipped", "order_out_for_delivery", "order_delivered")
    seen: dict[str, list[tuple[str, datetime]]] = {}
    for e in stream.events:
        if e["type"] in steps or e["type"] == "order_cancelled":
            seen.setdefault(e["data"]["order_id"], []).append((e["type"], instant(e["at"])))
    end = stream.start + stream.days * DAY
    for order, got in seen.items():
        kinds = [k for k, _ in got]
        if "order_cancelled" in kinds:
            assert kinds == ["order_placed", "order_cancelled"], order
            continue
        assert tuple(kinds) == steps[: len(kinds)], order
        if len(kinds) < 4:  # only an order late in the window may still be on its way
            assert got[0][1] > end - 12 * DAY, order
        times = [at for _, at in got]
        assert times == sorted(times) and len(set(times)) == len(times), order


def test_the_customers_are_a_realistic_mix(stream: DemoStream) -> None:
    profiles = stream.customers()
    zones = {p["timezone"].split("/")[0] for p in profiles.values()}
    assert {"America", "Europe", "Asia"} <= zones
    assert sum("phone" in p for p in profiles.values()) > len(profiles) / 2
    assert any(p.get("sms_consent") for p in profiles.values())
    assert any(p.get("sms_consent") is False for p in profiles.values())
    assert any(p["email_consent"] is False for p in profiles.values())
    for p in profiles.values():
        if "phone" in p:
            assert phonenumbers.is_possible_number(phonenumbers.parse(p["phone"])), p
    # Birthdays a week or more into the window: the birthday journey's week-ahead mail fires.
    start, end = stream.start.date(), (stream.start + stream.days * DAY).date()
    inside = []
    for p in profiles.values():
        if "birthday" in p:
            month, day = map(int, p["birthday"].split("-")[1:])
            this_year = start.replace(month=month, day=day)
            if start + 7 * DAY <= this_year < end:
                inside.append(p)
    assert len(inside) >= 2


def _orders(stream: DemoStream) -> dict[str, list[tuple[datetime, float, bool]]]:
    """Each customer's orders: (at, total, in the window)."""
    found: dict[str, list[tuple[datetime, float, bool]]] = {}
    for live, part in ((False, stream.history), (True, stream.events)):
        for e in part:
            if e["type"] == "order_placed":
                found.setdefault(e["customer_id"], []).append(
                    (instant(e["at"]), e["data"]["total"], live)
                )
    return found


def test_the_window_holds_milestones_tiers_a_lapse_and_an_anniversary(stream: DemoStream) -> None:
    start = stream.start
    crossings: set[str] = set()
    for orders in _orders(stream).values():
        spent = 0.0
        for n, (_at, total, live) in enumerate(orders, 1):
            before, spent = spent, spent + total
            if live:
                crossings.add(f"order {n}")
                for tier in (250, 600):
                    if before < tier <= spent:
                        crossings.add(f"spent {tier}")
    for wanted in (
        "order 1",
        "order 2",
        "order 3",
        "order 5",
        "order 10",
        "spent 250",
        "spent 600",
    ):
        assert wanted in crossings, wanted
    lapses = []
    for orders in _orders(stream).values():
        past = [at for at, _t, live in orders if not live]
        if len(past) >= 2 and start - 180 * DAY < max(past) < start - 150 * DAY:
            lapses.append(orders)
    assert lapses, "a repeat customer whose last order turns 180 days old in the window"
    assert any(any(live for *_x, live in o) for o in lapses), "one comes back"
    anniversaries = [
        first
        for first, *_ in (orders[0] for orders in _orders(stream).values())
        if start - 366 * DAY < first < start + stream.days * DAY - 366 * DAY
    ]
    assert anniversaries, "a first order one year before a day of the window"


# -- a tiny project through the demo machinery ------------------------------------------------
THANKS = """\
id: thanks
trigger: {event: order_delivered}
steps:
  - id: note
    email:
      subject: "Enjoy your {{ trigger.data.items[0].name }}, {{ customer.first_name }}"
      body: "Thank you!"
  - id: text
    sms: {body: "Delivered: order {{ trigger.data.order_id }}"}
"""


def tiny_project(root: Path) -> Path:
    (root / "journeys").mkdir()
    (root / "templates").mkdir()
    (root / "journeys" / "thanks.yaml").write_text(THANKS, encoding="utf-8")
    (root / "journeys" / "thanks.test.yaml").write_text("cases: []\n", encoding="utf-8")
    config = root / "postflow.yaml"
    config.write_text("timezone: Europe/Berlin\n", encoding="utf-8")
    return config


def delivered(cid: str, order: str, at: str, **profile: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "id": f"e-{order}",
        "type": "order_delivered",
        "customer_id": cid,
        "at": at,
        "data": {
            "order_id": order,
            "total": 12.5,
            "items": [{"sku": "TEA-1", "name": "Green tea"}],
        },
    }
    if profile:
        event["customer"] = profile
    return event


TINY = DemoStream(
    start=datetime(2027, 5, 1, tzinfo=UTC),
    days=3,
    history=[],
    events=[
        delivered(
            "c_ann",
            "o1",
            "2027-05-01T09:00:00Z",
            email="ann@example.com",
            first_name="Ann",
            last_name="Lee",
            phone="+15555550100",
            sms_consent=True,
            timezone="America/New_York",
        ),
        delivered(
            "c_bo",
            "o2",
            "2027-05-02T15:30:00Z",
            email="bo@example.com",
            first_name="Bo",
            phone="+15555550123",
        ),
        delivered("c_late", "o3", "2027-05-09T10:00:00Z", email="late@example.com"),  # after it
    ],
)


def play_tiny(tmp_path: Path, speed: float = FAST) -> tuple[DemoResult, str]:
    out = io.StringIO()
    result = run_demo(
        config_path=tiny_project(tmp_path), stream=TINY, speed=speed, out=out, live=False
    )
    return result, out.getvalue()


def test_a_tiny_project_plays_through_the_demo(tmp_path: Path) -> None:
    result, text = play_tiny(tmp_path)
    thanks = result.journeys["thanks"]
    assert list(result.journeys) == ["thanks"]
    assert thanks.entered == 2  # the third delivery falls after the window
    assert thanks.sent == Counter({"email": 2, "sms": 1})
    assert thanks.skipped == Counter({"no_consent": 1})  # Bo has no SMS consent
    assert thanks.exits == Counter({"completed": 2})
    assert result.settled and result.delivered == 3
    assert result.reached == result.end == int(datetime(2027, 5, 4, tzinfo=UTC).timestamp() * 1e6)
    lines = text.splitlines()
    # One plain line per message, in the customer's own time zone.
    assert (
        "2027-05-01 05:00 EDT  Ann L.  thanks/note  email → ann@example.com  Enjoy your Green tea, Ann"
        in lines
    )
    assert (
        "2027-05-01 05:00 EDT  Ann L.  thanks/text  sms → +15555550100  Delivered: order o1"
        in lines
    )
    assert "2027-05-02 17:30 CEST  Bo  thanks/text  sms skipped: no_consent" in lines  # opt-in
    assert (
        "  thanks: entered 2; sent email 2, sms 1; skipped no_consent 1; exits completed 2; goals 0"
        in lines
    )
    assert "nothing is sent anywhere" in lines[0]


def test_the_outcome_does_not_depend_on_the_speed(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    fast, _ = play_tiny(tmp_path / "a")
    slower, _ = play_tiny(tmp_path / "b", 8e6)  # about 30 simulated hours per tenth of a second
    assert fast.journeys == slower.journeys


def test_the_cli_plays_an_events_file(tmp_path: Path) -> None:
    config = tiny_project(tmp_path)
    events_file = tmp_path / "events.jsonl"
    events_file.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in TINY.events[:2]))
    result = CliRunner().invoke(
        main,
        ["demo", "--config", str(config), "--events", str(events_file), "--speed", "1e12"],
    )
    assert result.exit_code == 0, result.output
    assert "thanks/note  email → bo@example.com  Enjoy your Green tea, Bo" in result.output
    assert "thanks: entered 2; sent email 2, sms 1; skipped no_consent 1" in result.output


def test_the_cli_refuses_nonsense(tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(main, ["demo", "--speed", "0"]).exit_code == 2
    for option, value in [("--speed", "inf"), ("--speed", "nan"), ("--days", "nan")]:
        refused = runner.invoke(main, ["demo", option, value])
        assert refused.exit_code == 2 and "must be a positive number" in refused.output
    far = runner.invoke(main, ["demo", "--days", "1e12"])  # dates would leave their range
    assert far.exit_code == 2 and "at most 36,500" in far.output, far.output
    assert runner.invoke(main, ["demo", "--customers", "0"]).exit_code == 2
    assert runner.invoke(main, ["demo", "--history", str(tiny_project(tmp_path))]).exit_code == 2


def test_bad_journeys_stop_the_demo_with_located_errors(tmp_path: Path) -> None:
    config = tiny_project(tmp_path)
    (tmp_path / "journeys" / "thanks.yaml").write_text(THANKS.replace("steps:", "stepz:"))
    result = CliRunner().invoke(main, ["demo", "--config", str(config), "--speed", "1e12"])
    assert result.exit_code == 1
    assert re.search(r"thanks\.yaml:\d+:\d+: error", result.output), result.output


def test_demo_help_shows_an_example() -> None:
    result = CliRunner().invoke(main, ["demo", "--help"])
    assert result.exit_code == 0
    assert "Example:" in result.output
    assert "postflow demo --speed" in result.output
    for option in ("--speed", "--days", "--seed", "--customers", "--events", "--plain"):
        assert option in result.output


# -- the bundled library ---------------------------------------------------------------------
def library() -> dict[str, bool]:
    """The journeys in journeys/ (id -> whether it has an email or SMS step), read from the
    directory so the test keeps up as the library grows."""
    found = {}
    for path in sorted((bundled_project() / "journeys").glob("*.yaml")):
        if path.name.endswith(".test.yaml"):
            continue
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        found[doc["id"]] = any("email" in s or "sms" in s for s in doc.get("steps") or [])
    return found


@pytest.fixture(scope="module")
def bundled_run() -> tuple[DemoResult, str]:
    out = io.StringIO()
    result = run_demo(speed=FAST, out=out, live=False)
    return result, out.getvalue()


def test_every_program_of_the_library_plays_in_the_demo(
    bundled_run: tuple[DemoResult, str],
) -> None:
    result, text = bundled_run
    assert result.settled
    silent = []
    for journey, sends in library().items():
        counts = result.journeys.get(journey)
        assert counts is not None and counts.entered >= 1, f"{journey} never entered"
        if sends and not counts.messages_sent:
            silent.append(journey)
        assert f"  {journey}: entered " in text
    assert not silent, f"journeys that sent nothing: {silent}\n{text[-4000:]}"


def test_the_bundled_demo_shows_skips_with_reasons(bundled_run: tuple[DemoResult, str]) -> None:
    result, text = bundled_run
    reasons = Counter()
    for counts in result.journeys.values():
        reasons.update(counts.skipped)
    assert reasons["no_consent"] >= 1
    assert re.search(r"^\d{4}-\d\d-\d\d \d\d:\d\d \S+  .+  \S+/\S+  \w+ skipped: \w+$", text, re.M)


# -- the view --------------------------------------------------------------------------------
def message(**fields: Any) -> OutboundMessage:
    base: dict[str, Any] = {
        "message_id": "m1",
        "customer_id": "c_ann",
        "instance": "order-confirmation:c_ann:1",
        "journey": "order-confirmation",
        "step": "receipt",
        "channel": "email",
        "at": int(datetime(2027, 3, 1, 15, tzinfo=UTC).timestamp() * 1e6),
        "to": "ann@example.com",
        "subject": "Order o_1001 confirmed, Ann",
        "text": "Thanks!",
        "transactional": True,
    }
    return OutboundMessage(**(base | fields))


def record(kind: str, journey: str, **fields: Any) -> dict[str, Any]:
    at = int(datetime(2027, 3, 4, 15, tzinfo=UTC).timestamp() * 1e6)
    return {
        "kind": kind,
        "at": at,
        "customer_id": "c_bo",
        "journey": journey,
        "instance": f"{journey}:c_bo:1",
    } | fields


def board() -> Board:
    people = People(
        {"c_ann": {"first_name": "Ann", "last_name": "Lee", "timezone": "America/New_York"}},
        "UTC",
    )
    start = int(datetime(2027, 3, 1, tzinfo=UTC).timestamp() * 1e6)
    b = Board(
        people,
        ["order-confirmation", "review-request", "win-back"],
        start,
        start + 60 * 86_400_000_000,
        customers=2,
    )
    b.now = start + 3 * 86_400_000_000
    b.delivered(message())
    b.delivered(
        message(
            channel="sms",
            step="receipt_sms",
            to="+15555550100",
            subject=None,
            text="Leaf & Kettle: order o_1001 confirmed",
        )
    )
    for rec in (
        record("enter", "order-confirmation", key="o_1001"),
        record("message", "order-confirmation", step="receipt", channel="email", status="sent"),
        record("enter", "review-request", key="o_1002"),
        record(
            "message",
            "review-request",
            step="ask",
            channel="email",
            status="skipped",
            reason="no_consent",
            to="bo@example.com",
        ),
        record("exit", "review-request", reason="completed"),
    ):
        b.record(rec)
    return b


def test_the_live_view_renders() -> None:
    console = Console(file=io.StringIO(), width=120, height=40)
    console.print(render_board(board(), 40))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert len(text.splitlines()) == 40
    for journey in ("order-confirmation", "review-request", "win-back"):
        assert journey in text
    assert "no_consent" in text  # a skipped message and its reason
    assert "Order o_1001 conf" in text and "Ann L." in text
    assert "Mar 01 10:00" in text  # 15:00 UTC is 10:00 in New York
    assert "day  3.0 of 60" in text and "2027-03-04 00:00 UTC" in text


def test_the_live_view_keeps_a_usable_height_on_a_small_terminal() -> None:
    console = Console(file=io.StringIO(), width=80, height=12)
    console.print(render_board(board(), 12))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert len(text.splitlines()) == 16 and "no_consent" in text


def test_the_summary_names_every_journey_and_the_silent_ones() -> None:
    counts = tally(
        [
            record("enter", "a"),
            record("message", "a", channel="email", status="sent"),
            record("message", "a", channel="sms", status="skipped", reason="no_consent"),
            record("goal", "a"),
            record("exit", "a", reason="exit_event"),
        ],
        ["a", "b"],
    )
    console = Console(file=io.StringIO(), width=120)
    console.print(summary_renderable(counts, "Summary"))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "email 1" in text and "no_consent 1" in text and "exit_event 1" in text
    assert "No message from: b" in text
    plain = summary_text(counts, "Summary")
    assert (
        "  a: entered 1; sent email 1; skipped no_consent 1; exits exit_event 1; goals 1" in plain
    )
    assert "  b: entered 0; sent -; skipped -; exits -; goals 0" in plain
