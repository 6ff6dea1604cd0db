"""§9 "Caps by tag, and per message": ``tags`` + ``limits.tags``, and ``frequency_cap: false``.

A shop caps promotions across every promo journey (one promo email a week) without capping
its other marketing, and lets one message (a back-in-stock alert the customer asked for)
skip the caps while still counting for later ones. Each case runs through ``simulate`` and
through the durable runtime (``ingest`` + ``run --once``), which must print the same records.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Project, pick
from shells import both_ways

PROMO = """
id: {id}
tags: [promo]
trigger: {{event: {event}}}
steps:
  - id: offer
    email: {{subject: "{id}", body: "10% off"}}
"""
NEWS = """
id: news
tags: [content]
trigger: {event: story}
steps:
  - id: story
    email: {subject: "news", body: "Read"}
"""
ALERT = """
id: alert
tags: [promo]
trigger: {event: back_in_stock}
steps:
  - id: notify
    email: {subject: "back", body: "It is back", frequency_cap: false}
"""
CONFIG = """
timezone: UTC
limits:
  email: {max: 5, per: 1d}
  tags:
    promo: {email: {max: 1, per: 7d}}
"""


def ev(kind: str, at: str, customer: str = "c_1") -> dict[str, Any]:
    return {
        "type": kind,
        "customer_id": customer,
        "at": at,
        "customer": {"email": f"{customer}@example.com"},
    }


@pytest.fixture
def shop(proj: Project) -> Iterator[Project]:
    proj.config(CONFIG)
    proj.journey("spring", PROMO.format(id="spring", event="spring_sale"))
    proj.journey("summer", PROMO.format(id="summer", event="summer_sale"))
    proj.journey("news", NEWS)
    proj.journey("alert", ALERT)
    yield proj


def test_a_tag_cap_holds_across_two_journeys(shop: Project, db_url: str) -> None:
    records = both_ways(
        shop,
        db_url,
        [
            ev("spring_sale", "2027-03-01T10:00:00Z"),
            ev("summer_sale", "2027-03-03T10:00:00Z"),  # same promo week: capped
            ev("story", "2027-03-03T11:00:00Z"),  # another tag: not capped
            ev("summer_sale", "2027-03-08T10:00:01Z"),  # a week later: the cap has room
        ],
    )
    assert pick(records, "journey", "status", "reason", kind="message") == [
        ("spring", "sent", None),
        ("summer", "skipped", "frequency_cap"),
        ("news", "sent", None),
        ("summer", "sent", None),
    ]


def test_the_tag_window_is_per_customer(shop: Project, db_url: str) -> None:
    records = both_ways(
        shop,
        db_url,
        [
            ev("spring_sale", "2027-03-01T10:00:00Z", "c_1"),
            ev("summer_sale", "2027-03-02T10:00:00Z", "c_2"),
        ],
    )
    assert pick(records, "customer_id", "status", kind="message") == [
        ("c_1", "sent"),
        ("c_2", "sent"),
    ]


def test_frequency_cap_false_skips_the_caps_but_counts(shop: Project, db_url: str) -> None:
    records = both_ways(
        shop,
        db_url,
        [
            ev("spring_sale", "2027-03-01T10:00:00Z"),
            ev("back_in_stock", "2027-03-01T11:00:00Z"),  # over the promo cap, sent anyway
            ev("back_in_stock", "2027-03-01T12:00:00Z"),
        ],
    )
    assert pick(records, "journey", "status", "reason", kind="message") == [
        ("spring", "sent", None),
        ("alert", "sent", None),
        ("alert", "sent", None),
    ]


def test_frequency_cap_false_still_respects_consent_and_suppression(
    proj: Project, db_url: str
) -> None:
    proj.config(CONFIG)
    proj.journey("alert", ALERT)
    no_consent = ev("back_in_stock", "2027-03-01T10:00:00Z", "c_1")
    no_consent["customer"]["email_consent"] = False
    suppressed = {
        "type": "address_suppressed",
        "customer_id": "c_2",
        "at": "2027-03-01T09:00:00Z",
        "data": {"address": "c_2@example.com", "reason": "manual"},
    }
    records = both_ways(
        proj, db_url, [no_consent, suppressed, ev("back_in_stock", "2027-03-01T10:00:00Z", "c_2")]
    )
    assert pick(records, "customer_id", "status", "reason", kind="message") == [
        ("c_1", "skipped", "no_consent"),
        ("c_2", "skipped", "suppressed"),
    ]


def test_uncapped_messages_count_toward_later_caps(proj: Project, db_url: str) -> None:
    proj.config("timezone: UTC\nlimits: {email: {max: 2, per: 1d}}\n")
    proj.journey("alert", ALERT)
    proj.journey("news", NEWS)
    records = both_ways(
        proj,
        db_url,
        [
            ev("back_in_stock", "2027-03-01T09:00:00Z"),
            ev("back_in_stock", "2027-03-01T09:10:00Z"),
            ev("story", "2027-03-01T10:00:00Z"),  # the third marketing email today: capped
        ],
    )
    assert pick(records, "journey", "status", "reason", kind="message") == [
        ("alert", "sent", None),
        ("alert", "sent", None),
        ("news", "skipped", "frequency_cap"),
    ]


def test_tags_and_tag_limits_are_validated_with_locations(proj: Project) -> None:
    from postflow import config as config_module
    from postflow import project as project_module
    from postflow.problems import ProblemsError

    proj.journey(
        "bad", PROMO.format(id="bad", event="x").replace("[promo]", "[promo, 'no spaces']")
    )
    loaded = project_module.load_journeys([proj.root / "journeys"], proj.root / "templates")
    assert [(p.line, "bad tag 'no spaces'" in p.message) for p in loaded.errors] == [(3, True)]
    proj.config("limits: {tags: {promo: {email: {max: 1, per: soon}}}}\n")
    with pytest.raises(ProblemsError) as caught:
        proj.settings()
    (problem,) = caught.value.problems
    assert problem.line == 1 and "soon" in problem.message
    path = Path(proj.root / "postflow.yaml")
    path.write_text("limits: {tags: {promo: {fax: {max: 1, per: 1d}}}}\n", encoding="utf-8")
    with pytest.raises(ProblemsError) as caught:
        config_module.load_settings(path)
    assert "fax" in caught.value.problems[0].message
