"""§9 "Audience ticks in each customer's own time": ``trigger.timezone: customer``.

09:00 in every customer's own time: a customer in Tokyo and one in New York each enter at
09:00 their time, New York's moves with its DST change, and a customer who moves zone gets
the next tick in the new one. Each case runs through ``simulate`` and the durable runtime,
which must print the same records.
"""

from __future__ import annotations

from typing import Any

from conftest import Project, pick
from shells import both_ways

from postflow import project as project_module

DAILY = """
id: daily
trigger: {schedule: "0 9 * * *", timezone: customer, audience: "customer.vip == true"}
entry: {reentry: always}
steps:
  - id: mail
    email: {subject: "Good morning", body: "{{ trigger.at }}"}
"""


def signup(customer: str, zone: str, at: str = "2027-03-12T00:00:00Z") -> dict[str, Any]:
    return {
        "type": "signed_up",
        "customer_id": customer,
        "at": at,
        "customer": {"email": f"{customer}@example.com", "vip": True, "timezone": zone},
    }


def test_three_zones_and_a_dst_change(proj: Project, db_url: str) -> None:
    proj.journey("daily", DAILY)
    records = both_ways(
        proj,
        db_url,
        [
            signup("tokyo", "Asia/Tokyo"),
            signup("ny", "America/New_York"),
            signup("london", "Europe/London"),
        ],
        "2027-03-15T23:59:59Z",
    )
    got = pick(records, "customer_id", "at", kind="message")
    by_customer = {c: [at for cid, at in got if cid == c] for c in ("tokyo", "ny", "london")}
    assert by_customer["tokyo"] == [  # 09:00 JST = 00:00 UTC; 12 March 00:00 is the signup
        "2027-03-13T00:00:00Z",
        "2027-03-14T00:00:00Z",
        "2027-03-15T00:00:00Z",
    ]
    assert by_customer["ny"] == [  # EST (UTC-5) until 14 March, then EDT (UTC-4)
        "2027-03-12T14:00:00Z",
        "2027-03-13T14:00:00Z",
        "2027-03-14T13:00:00Z",
        "2027-03-15T13:00:00Z",
    ]
    assert by_customer["london"] == [
        "2027-03-12T09:00:00Z",
        "2027-03-13T09:00:00Z",
        "2027-03-14T09:00:00Z",
        "2027-03-15T09:00:00Z",
    ]
    # trigger.at is the tick's instant.
    assert pick(records, "body", customer_id="ny", kind="message")[0] == ("2027-03-12T14:00:00Z",)


def test_the_audience_is_checked_per_customer(proj: Project, db_url: str) -> None:
    proj.journey("daily", DAILY)
    plain = signup("plain", "Asia/Tokyo")
    plain["customer"]["vip"] = False
    records = both_ways(proj, db_url, [plain, signup("vip", "Asia/Tokyo")], "2027-03-13T12:00:00Z")
    assert {r["customer_id"] for r in records} == {"vip"}


def test_a_customer_who_moves_gets_the_next_tick_in_the_new_zone(
    proj: Project, db_url: str
) -> None:
    proj.journey("daily", DAILY)
    moved = {
        "type": "profile_updated",
        "customer_id": "c",
        "at": "2027-03-12T20:00:00Z",
        "customer": {"timezone": "Asia/Tokyo"},
    }
    records = both_ways(
        proj, db_url, [signup("c", "America/New_York"), moved], "2027-03-14T01:00:00Z"
    )
    assert pick(records, "at", kind="message") == [
        ("2027-03-12T14:00:00Z",),  # New York 09:00
        ("2027-03-13T00:00:00Z",),  # then Tokyo 09:00
        ("2027-03-14T00:00:00Z",),
    ]


def test_customer_is_the_only_non_iana_name(proj: Project) -> None:
    proj.journey("daily", DAILY.replace("timezone: customer", "timezone: Customer"))
    loaded = project_module.load_journeys([proj.root / "journeys"], proj.root / "templates")
    assert len(loaded.errors) == 1 and "Customer" in loaded.errors[0].message
