"""The published flow templates of ``examples/flows/`` (issue 13) stay true.

Klaviyo's post-purchase and win-back flows, Braze's lapsing-user Canvas and a post-purchase
email blueprint, written in postflow. First through the CLI, as a user would run them: every
journey validates cleanly and every case of their ``*.test.yaml`` files passes. Then each flow
runs a few customers at once through ``simulate`` and the durable runtime (SQLite and
PostgreSQL), which must print the same records.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml
from conftest import Project, case_files, journey_files, pick, run_cli
from shells import both_ways

ROOT = Path(__file__).resolve().parent.parent
FLOWS = ROOT / "examples" / "flows"
CONFIG = FLOWS / "postflow.yaml"
JOURNEYS = FLOWS / "journeys"
NAMES = (
    "klaviyo-post-purchase",
    "klaviyo-winback",
    "braze-lapsing-canvas",
    "post-purchase-blueprint",
    "customerio-anniversary",
)


def postflow(*args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, timeout=120)


def test_the_flows_validate_cleanly() -> None:
    assert [p.stem for p in journey_files(JOURNEYS)] == sorted(NAMES)
    result = postflow("validate", "--config", str(CONFIG))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert f"{len(NAMES)} journey file(s), 0 error(s), 0 warning(s)" in output, output


def test_every_flow_case_passes() -> None:
    cases = sum(
        len(yaml.safe_load(path.read_text(encoding="utf-8"))["cases"])
        for path in case_files(JOURNEYS)
    )
    assert cases >= 4 * len(NAMES)  # several cases per flow
    result = postflow("test", "--config", str(CONFIG), str(JOURNEYS))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    summary = re.search(r"(\d+) passed, (\d+) failed", output)
    assert summary is not None, output
    assert (int(summary[1]), int(summary[2])) == (cases, 0), output


def test_every_flow_is_tested_and_described() -> None:
    tested = {
        journey
        for path in case_files(JOURNEYS)
        for journey in yaml.safe_load(path.read_text(encoding="utf-8")).get("journeys", [])
    }
    for name in NAMES:
        doc = yaml.safe_load((JOURNEYS / f"{name}.yaml").read_text(encoding="utf-8"))
        assert doc["id"] == name
        assert len(doc.get("description", "")) > 200, name  # says what it follows, and why
        assert name in tested


# -- the durable shell ---------------------------------------------------------------------


def flow(proj: Project, name: str) -> None:
    """A project holding one flow, the examples' configuration and their templates."""
    proj.config(CONFIG.read_text(encoding="utf-8"))
    shutil.copy(JOURNEYS / f"{name}.yaml", proj.root / "journeys" / f"{name}.yaml")
    for template in (FLOWS / "templates").iterdir():
        shutil.copy(template, proj.root / "templates" / template.name)


def ev(
    kind: str, customer: str, at: str, profile: dict[str, Any] | None = None, **data: Any
) -> dict[str, Any]:
    event: dict[str, Any] = {"type": kind, "customer_id": customer, "at": at, "data": data}
    if profile is not None:
        event["customer"] = profile
    return event


def order(
    customer: str, at: str, order_id: str, *items: tuple[str, str], **profile: Any
) -> dict[str, Any]:
    return ev(
        "order_placed",
        customer,
        at,
        profile or None,
        order_id=order_id,
        total=30,
        items=[{"sku": name.upper()[:3] + "-1", "name": name, "category": c} for name, c in items],
    )


def messages(records: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return pick(records, "customer_id", "step", "at", "status", "reason", kind="message")


def exits(records: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return pick(records, "customer_id", "at", "reason", kind="exit")


TEAPOT = ("Glass teapot", "teaware")
SENCHA = ("Sencha", "tea")


def test_klaviyo_post_purchase_both_ways(proj: Project, db_url: str) -> None:
    flow(proj, "klaviyo-post-purchase")
    records = both_ways(
        proj,
        db_url,
        [
            order("c1", "2027-03-01T10:00:00Z", "o1", TEAPOT, email="ann@example.com"),
            order("c3", "2027-03-01T10:00:00Z", "o3", TEAPOT, email="cy@example.com"),
            ev("order_delivered", "c1", "2027-03-02T10:00:00Z", order_id="o1"),
            ev("order_delivered", "c3", "2027-03-02T10:00:00Z", order_id="o3"),
            ev("order_refunded", "c3", "2027-03-03T10:00:00Z", order_id="o3"),
            # Friday 19:00 in New York; delivered on Saturday, before the held thank-you.
            order(
                "c2",
                "2027-03-06T00:00:00Z",
                "o2",
                SENCHA,
                email="bo@example.com",
                timezone="America/New_York",
            ),
            ev("order_delivered", "c2", "2027-03-06T15:00:00Z", order_id="o2"),
        ],
        "2027-04-15T00:00:00Z",
    )
    assert messages(records) == [
        ("c1", "thank_you", "2027-03-01T10:00:00Z", "sent", None),
        ("c3", "thank_you", "2027-03-01T10:00:00Z", "sent", None),
        ("c1", "care_guide", "2027-03-04T10:00:00Z", "sent", None),
        ("c2", "thank_you", "2027-03-08T14:00:00Z", "sent", None),  # Monday 09:00
        ("c2", "care_guide", "2027-03-10T14:00:00Z", "sent", None),  # since: entry
        ("c1", "offer_tea", "2027-03-18T10:00:00Z", "sent", None),
        ("c2", "offer_teapot", "2027-03-24T14:00:00Z", "sent", None),
    ]
    assert ("c3", "2027-03-04T10:00:00Z", "filtered") in exits(records)


def test_klaviyo_winback_both_ways(proj: Project, db_url: str) -> None:
    flow(proj, "klaviyo-winback")
    records = both_ways(
        proj,
        db_url,
        [
            order("c1", "2027-01-04T12:00:00Z", "o1", SENCHA, email="ann@example.com"),
            order("c2", "2027-01-04T12:00:00Z", "o2", SENCHA, email="bo@example.com"),
            order("c3", "2027-01-04T12:00:00Z", "o3", SENCHA, email="cy@example.com"),
            order("c1", "2027-01-24T12:00:00Z", "o4", SENCHA),
            order("c3", "2027-01-24T12:00:00Z", "o5", SENCHA),
            order("c3", "2027-07-26T08:00:00Z", "o6", SENCHA),  # after the voucher
        ],
        "2027-08-20T00:00:00Z",
    )
    assert pick(records, "customer_id", "at", "key", kind="enter") == [
        ("c1", "2027-07-24T10:00:00Z", "2027-01-24T12:00:00Z"),
        ("c3", "2027-07-24T10:00:00Z", "2027-01-24T12:00:00Z"),
    ]
    assert messages(records) == [
        ("c1", "voucher", "2027-07-24T10:00:00Z", "sent", None),
        ("c3", "voucher", "2027-07-24T10:00:00Z", "sent", None),
        ("c1", "reminder", "2027-07-31T10:00:00Z", "sent", None),
    ]
    assert exits(records) == [
        ("c3", "2027-07-26T08:00:00Z", "exit_event"),
        ("c1", "2027-07-31T10:00:00Z", "completed"),
    ]
    assert pick(records, "customer_id", "at", kind="goal") == [("c3", "2027-07-26T08:00:00Z")]


def test_braze_lapsing_canvas_both_ways(proj: Project, db_url: str) -> None:
    flow(proj, "braze-lapsing-canvas")
    start = "2027-03-01T12:00:00Z"  # everyone's last session; lapsing at the 15 March check
    records = both_ways(
        proj,
        db_url,
        [
            ev("app_session", "c1", start, {"email": "ann@example.com"}),
            ev("app_session", "c2", start, {"email": "bo@example.com"}),
            ev("app_session", "c3", start, {"email": "cy@example.com"}),
            ev("app_session", "c4", start, {"email": "di@example.com"}),
            ev("app_session", "c5", start, {"email": "ed@example.com", "timezone": "Asia/Tokyo"}),
            ev("order_placed", "c1", "2027-03-16T09:00:00Z", order_id="o1", total=25),
            ev(
                "email_clicked",
                "c3",
                "2027-03-16T10:00:00Z",
                message_id="m1",
                journey="braze-lapsing-canvas",
                step="nudge",
            ),
            ev("app_session", "c2", "2027-03-17T08:00:00Z"),
        ],
        "2027-04-10T00:00:00Z",
    )
    nudges = [(c, "nudge", "2027-03-15T16:00:00Z", "sent", None) for c in ("c1", "c2", "c3")]
    nudges += [(c, "nudge", "2027-03-15T16:00:00Z", "sent", None) for c in ("c4", "c5")]
    assert messages(records) == [
        *nudges,
        ("c1", "welcome_back", "2027-03-16T09:00:00Z", "sent", None),  # a purchase first
        ("c3", "clicked", "2027-03-16T10:00:00Z", "sent", None),  # a click first
        ("c5", "last_try", "2027-03-23T01:00:00Z", "sent", None),  # Tuesday 10:00 in Tokyo
        ("c4", "last_try", "2027-03-23T10:00:00Z", "sent", None),  # Tuesday 10:00 UTC
        ("c2", "slipping", "2027-03-24T08:00:00Z", "sent", None),  # a quiet week, by a check
    ]


def test_post_purchase_blueprint_both_ways(proj: Project, db_url: str) -> None:
    flow(proj, "post-purchase-blueprint")
    mug = ("Stoneware mug", "teaware")
    records = both_ways(
        proj,
        db_url,
        [
            order("c1", "2027-03-01T10:00:00Z", "o1", mug, email="ann@example.com"),
            order(
                "c4", "2027-03-01T10:00:00Z", "o4", mug, email="di@example.com", email_consent=False
            ),
            order("c8", "2027-03-01T10:00:00Z", "o8", mug, email="ha@example.com"),
            ev("order_shipped", "c1", "2027-03-02T10:00:00Z", order_id="o1"),
            ev("order_shipped", "c4", "2027-03-02T10:00:00Z", order_id="o4"),
            ev("order_shipped", "c8", "2027-03-02T10:00:00Z", order_id="o8"),
            order("c8", "2027-03-03T10:00:00Z", "o9", SENCHA),
            ev("order_shipped", "c8", "2027-03-04T10:00:00Z", order_id="o9"),
            ev("order_delivered", "c1", "2027-03-04T14:00:00Z", order_id="o1"),
            ev("order_delivered", "c4", "2027-03-04T14:00:00Z", order_id="o4"),
            ev("order_delivered", "c8", "2027-03-04T14:00:00Z", order_id="o8"),
            ev("order_delivered", "c8", "2027-03-06T14:00:00Z", order_id="o9"),
            ev("nps_submitted", "c1", "2027-03-11T12:00:00Z", order_id="o1", score=4),
            ev("nps_submitted", "c8", "2027-03-13T12:00:00Z", order_id="o8", score=9),
            ev("nps_submitted", "c8", "2027-03-14T12:00:00Z", order_id="o9", score=10),
        ],
        "2027-04-01T00:00:00Z",
    )
    later = [m for m in messages(records) if m[1] not in ("confirmation", "shipping")]
    assert later == [
        ("c1", "review", "2027-03-10T10:00:00Z", "sent", None),
        ("c4", "review", "2027-03-10T10:00:00Z", "skipped", "no_consent"),
        ("c8", "review", "2027-03-10T10:00:00Z", "sent", None),
        ("c1", "detractor", "2027-03-11T12:00:00Z", "sent", None),
        ("c8", "review", "2027-03-12T10:00:00Z", "sent", None),  # frequency_cap: false
        ("c8", "referral", "2027-03-21T10:00:00Z", "sent", None),
        ("c8", "referral", "2027-03-22T10:00:00Z", "skipped", "frequency_cap"),  # promo cap
    ]
    # Transactional: sent without consent, never capped.
    assert pick(records, "step", "status", kind="message", customer_id="c4")[:2] == [
        ("confirmation", "sent"),
        ("shipping", "sent"),
    ]


def test_customerio_anniversary_both_ways(proj: Project, db_url: str) -> None:
    """09:00 in each customer's own time, a year after their first order (Tokyo, and New
    York before its DST change) or a week before their birthday (after it)."""
    flow(proj, "customerio-anniversary")
    tokyo = {"email": "t@example.com", "timezone": "Asia/Tokyo"}
    ny = {"email": "n@example.com", "timezone": "America/New_York"}
    ann = {"email": "a@example.com", "timezone": "America/New_York", "birthday": "1990-03-21"}
    records = both_ways(
        proj,
        db_url,
        [
            order("tokyo", "2026-03-02T01:00:00Z", "o1", ("Tea", "tea"), **tokyo),
            order("ny", "2026-03-02T15:00:00Z", "o2", ("Tea", "tea"), **ny),
            ev("signed_up", "ann", "2027-03-01T00:00:00Z", ann),
        ],
        "2027-03-20T00:00:00Z",
    )
    assert [m[:3] for m in messages(records)] == [
        ("tokyo", "anniversary", "2027-03-02T00:00:00Z"),
        ("ny", "anniversary", "2027-03-02T14:00:00Z"),
        ("ann", "birthday", "2027-03-14T13:00:00Z"),
    ]
