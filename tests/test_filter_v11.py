"""§9 ``filter``: who stays eligible, checked at entry and again before every message.

As Klaviyo re-checks flow filters before each message: a customer who no longer qualifies
(unsubscribed from the loyalty program, refunded) gets nothing more and the instance ends
with reason ``filtered``; one who never qualified never enters (no record at all). Every
case runs through ``simulate`` and the durable runtime, which must print the same records.
"""

from __future__ import annotations

from typing import Any

from conftest import Project, pick
from shells import both_ways

VIP = """
id: vip
trigger: {event: order_placed}
filter: "customer.vip == true"
steps:
  - id: welcome
    email: {subject: "Welcome", body: "Hi"}
  - id: pause
    wait: 2d
  - id: perks
    email: {subject: "Perks", body: "More"}
"""


def order(at: str, customer: str = "c_1", **profile: Any) -> dict[str, Any]:
    return {
        "type": "order_placed",
        "customer_id": customer,
        "at": at,
        "customer": {"email": f"{customer}@example.com", **profile},
        "data": {"total": 10},
    }


def profile(at: str, customer: str = "c_1", **changes: Any) -> dict[str, Any]:
    return {"type": "profile_updated", "customer_id": customer, "at": at, "customer": changes}


def test_false_at_entry_means_no_entry_and_no_record(proj: Project, db_url: str) -> None:
    proj.journey("vip", VIP)
    records = both_ways(proj, db_url, [order("2027-03-01T10:00:00Z", vip=False)])
    assert records == []


def test_false_before_the_second_message_exits_filtered(proj: Project, db_url: str) -> None:
    proj.journey("vip", VIP)
    records = both_ways(
        proj,
        db_url,
        [order("2027-03-01T10:00:00Z", vip=True), profile("2027-03-02T10:00:00Z", vip=False)],
        until="2027-03-10T00:00:00Z",
    )
    assert pick(records, "kind", "at", "step", "reason") == [
        ("enter", "2027-03-01T10:00:00Z", None, None),
        ("message", "2027-03-01T10:00:00Z", "welcome", None),
        ("exit", "2027-03-03T10:00:00Z", None, "filtered"),
    ]


def test_still_true_sends_everything(proj: Project, db_url: str) -> None:
    proj.journey("vip", VIP)
    records = both_ways(
        proj, db_url, [order("2027-03-01T10:00:00Z", vip=True)], until="2027-03-10T00:00:00Z"
    )
    assert pick(records, "kind", "step", "reason") == [
        ("enter", None, None),
        ("message", "welcome", None),
        ("message", "perks", None),
        ("exit", None, "completed"),
    ]


def test_an_error_counts_as_false(proj: Project, db_url: str) -> None:
    proj.journey("vip", VIP.replace('"customer.vip == true"', '"customer.vip.level > 1"'))
    assert both_ways(proj, db_url, [order("2027-03-01T10:00:00Z", vip=True)]) == []


def test_a_held_message_is_filtered_at_its_release(proj: Project, db_url: str) -> None:
    """Quiet hours hold the SMS overnight; the customer stops qualifying before 09:00, so
    at release the instance ends ``filtered`` and no message record is written."""
    proj.config('timezone: UTC\nquiet_hours: {start: "21:00", end: "09:00", channels: [sms]}\n')
    proj.journey(
        "vip",
        """
        id: vip
        trigger: {event: order_placed}
        filter: "customer.vip == true"
        steps:
          - id: text
            sms: {body: "Thanks"}
        """,
    )
    records = both_ways(
        proj,
        db_url,
        [
            order("2027-03-01T22:00:00Z", vip=True, phone="+15555550100", sms_consent=True),
            profile("2027-03-02T07:00:00Z", vip=False),
        ],
        until="2027-03-03T00:00:00Z",
    )
    assert pick(records, "kind", "at", "reason") == [
        ("enter", "2027-03-01T22:00:00Z", None),
        ("exit", "2027-03-02T09:00:00Z", "filtered"),
    ]


def test_filter_is_checked_before_cooldown_and_reentry(proj: Project, db_url: str) -> None:
    """A filtered-out attempt does not start the cooldown: the next qualifying order enters."""
    proj.journey(
        "vip",
        VIP.replace("filter:", "entry: {cooldown: 30d}\nfilter:").replace(
            '  - id: pause\n    wait: 2d\n  - id: perks\n    email: {subject: "Perks", body: "More"}\n',
            "",
        ),
    )
    records = both_ways(
        proj,
        db_url,
        [order("2027-03-01T10:00:00Z", vip=False), order("2027-03-02T10:00:00Z", vip=True)],
    )
    assert pick(records, "kind", "at") == [
        ("enter", "2027-03-02T10:00:00Z"),
        ("message", "2027-03-02T10:00:00Z"),
        ("exit", "2027-03-02T10:00:00Z"),
    ]


def test_filter_errors_are_located(proj: Project) -> None:
    from postflow import project as project_module

    proj.journey("vip", VIP.replace('"customer.vip == true"', '"customer.vip =="'))
    loaded = project_module.load_journeys([proj.root / "journeys"], proj.root / "templates")
    assert [(p.line, p.col) for p in loaded.errors] == [(4, 9)]


def test_graph_shows_the_filter_on_the_way_in(proj: Project) -> None:
    from postflow import graph
    from postflow import project as project_module

    proj.journey("vip", VIP)
    machines = project_module.require_journeys([proj.root / "journeys"], proj.root / "templates")
    (start,) = [e for e in graph.edges(machines["vip"]) if e[0] == graph.START]
    assert start[2] == "order_placed · filter customer.vip == true"
