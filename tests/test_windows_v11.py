"""§9 "Weekdays and send windows": ``wait.days`` and ``settings.send_window``.

"Delay until Tuesday" must mean the customer's Tuesday, not UTC's; a B2B shop sends only on
weekday business hours; a send window and quiet hours together release a message at the first
moment allowed by both, across a DST change. Every case runs through ``simulate`` and the
durable runtime, which must print the same records.
"""

from __future__ import annotations

from typing import Any

import pytest
from conftest import Project, pick
from shells import both_ways

from postflow import project as project_module


def order(at: str, zone: str = "UTC", customer: str = "c_1") -> dict[str, Any]:
    return {
        "type": "order_placed",
        "customer_id": customer,
        "at": at,
        "customer": {
            "email": f"{customer}@example.com",
            "phone": "+15555550100",
            "sms_consent": True,
            "timezone": zone,
        },
    }


def test_days_are_the_customers_local_weekdays(proj: Project, db_url: str) -> None:
    """Sydney (UTC+11 in March): Tuesday 10:00 there is Monday 23:00 UTC."""
    proj.journey(
        "tips",
        """
        id: tips
        trigger: {event: order_placed}
        steps:
          - id: pause
            wait: {for: 1d, at: "10:00", days: [tue]}
          - id: tip
            email: {subject: "Tip", body: "Brew at 80C"}
        """,
    )
    # Monday 2027-03-01 23:30 UTC = Tuesday 10:30 in Sydney; a day later is Wednesday.
    records = both_ways(
        proj, db_url, [order("2027-03-01T23:30:00Z", "Australia/Sydney")], "2027-03-20T00:00:00Z"
    )
    assert pick(records, "at", kind="message") == [("2027-03-08T23:00:00Z",)]


def test_days_need_at_and_name_real_days(proj: Project) -> None:
    proj.journey(
        "bad",
        """
        id: bad
        trigger: {event: order_placed}
        steps:
          - id: pause
            wait: {for: 1d, days: [tue, funday]}
        """,
    )
    loaded = project_module.load_journeys([proj.root / "journeys"], proj.root / "templates")
    messages = [(p.line, p.message) for p in loaded.errors]
    assert any("funday" in m and "mon, tue" in m for _, m in messages), messages
    proj.journey("bad", (proj.root / "journeys" / "bad.yaml").read_text().replace(", funday", ""))
    loaded = project_module.load_journeys([proj.root / "journeys"], proj.root / "templates")
    assert [(p.line, p.message) for p in loaded.errors] == [
        (6, "days needs at: the time of day to wait for")
    ]


WINDOWED = """
id: news
trigger: {event: order_placed}
steps:
  - id: mail
    email: {subject: "News", body: "Hi"}
"""


@pytest.mark.parametrize(
    ("at", "sent_at"),
    [
        ("2027-03-01T09:00:00Z", "2027-03-01T09:00:00Z"),  # start is inside: at once
        ("2027-03-01T17:59:59Z", "2027-03-01T17:59:59Z"),
        ("2027-03-01T18:00:00Z", "2027-03-02T09:00:00Z"),  # end is outside: next opening
        ("2027-03-05T19:00:00Z", "2027-03-08T09:00:00Z"),  # Friday evening: Monday morning
        ("2027-03-06T12:00:00Z", "2027-03-08T09:00:00Z"),  # Saturday: Monday
    ],
)
def test_a_window_is_open_on_listed_days_in_start_end(
    proj: Project, db_url: str, at: str, sent_at: str
) -> None:
    proj.config(
        "timezone: UTC\n"
        'send_window: {days: [mon, tue, wed, thu, fri], start: "09:00", end: "18:00"}\n'
    )
    proj.journey("news", WINDOWED)
    records = both_ways(proj, db_url, [order(at)], "2027-03-20T00:00:00Z")
    assert pick(records, "kind", "at") == [("enter", at), ("message", sent_at), ("exit", sent_at)]


def test_a_window_past_midnight_belongs_to_the_day_it_opens(proj: Project, db_url: str) -> None:
    proj.config('timezone: UTC\nsend_window: {days: [fri], start: "22:00", end: "02:00"}\n')
    proj.journey("news", WINDOWED)
    records = both_ways(
        proj,
        db_url,
        [order("2027-03-06T01:00:00Z"), order("2027-03-07T01:00:00Z", customer="c_2")],
        "2027-03-20T00:00:00Z",
    )
    # Saturday 01:00 is inside Friday's window; Sunday 01:00 waits for next Friday 22:00.
    assert pick(records, "customer_id", "at", kind="message") == [
        ("c_1", "2027-03-06T01:00:00Z"),
        ("c_2", "2027-03-12T22:00:00Z"),
    ]


def test_send_window_and_quiet_hours_together_across_dst(proj: Project, db_url: str) -> None:
    """New York, Saturday 13 March 2027 20:30 EST: the window (08:00-20:00) is closed until
    Sunday 08:00, now EDT after the change; quiet hours last until 09:00 EDT = 13:00 UTC."""
    proj.config(
        "timezone: America/New_York\n"
        'quiet_hours: {start: "21:00", end: "09:00", channels: [sms]}\n'
        'send_window: {start: "08:00", end: "20:00", channels: [sms]}\n'
    )
    proj.journey(
        "ship",
        """
        id: ship
        trigger: {event: order_placed}
        steps:
          - id: text
            sms: {body: "Shipped"}
          - id: mail
            email: {subject: "Shipped", body: "On its way"}
        """,
    )
    records = both_ways(
        proj, db_url, [order("2027-03-14T01:30:00Z", "America/New_York")], "2027-03-20T00:00:00Z"
    )
    assert pick(records, "step", "at", kind="message") == [
        ("text", "2027-03-14T13:00:00Z"),
        ("mail", "2027-03-14T13:00:00Z"),  # email is not in either window's channels
    ]


def test_a_journey_can_turn_the_default_window_off(proj: Project, db_url: str) -> None:
    proj.config('timezone: UTC\nsend_window: {start: "09:00", end: "10:00"}\n')
    proj.journey("news", WINDOWED.replace("steps:", "settings: {send_window: false}\nsteps:"))
    records = both_ways(proj, db_url, [order("2027-03-01T20:00:00Z")])
    assert pick(records, "at", kind="message") == [("2027-03-01T20:00:00Z",)]


def test_an_exit_before_the_window_opens_leaves_no_message(proj: Project, db_url: str) -> None:
    proj.config('timezone: UTC\nsend_window: {start: "09:00", end: "18:00"}\n')
    proj.journey("news", WINDOWED.replace("steps:", "exit: [{event: refunded}]\nsteps:"))
    refund = {"type": "refunded", "customer_id": "c_1", "at": "2027-03-02T08:00:00Z"}
    records = both_ways(proj, db_url, [order("2027-03-01T20:00:00Z"), refund])
    assert pick(records, "kind", "at", "reason") == [
        ("enter", "2027-03-01T20:00:00Z", None),
        ("exit", "2027-03-02T08:00:00Z", "exit_event"),
    ]


def test_an_empty_window_is_an_error(proj: Project) -> None:
    proj.journey(
        "news",
        WINDOWED.replace(
            "steps:", 'settings: {send_window: {start: "09:00", end: "09:00"}}\nsteps:'
        ),
    )
    loaded = project_module.load_journeys([proj.root / "journeys"], proj.root / "templates")
    assert ["start and end are equal" in p.message for p in loaded.errors] == [True]
