"""``on_skip`` on an email or SMS step (an addition to the language, docs/language-v1.1.md):
where the instance goes when the message is not sent.

A reminder must not follow an ask that never went out ("Your 15% off is still waiting" for a
voucher the promo cap skipped). Each case runs through ``simulate`` and the durable runtime,
which must print the same records; ``validate`` locates a bad reference and a loop through
``on_skip``; ``graph`` draws both ways out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from click.testing import CliRunner
from conftest import Project, pick, write
from shells import both_ways

from postflow.cli import main

CONFIG = """
timezone: UTC
limits:
  tags:
    promo: {email: {max: 1, per: 7d}}
"""
VOUCHER = """
id: voucher
tags: [promo]
trigger: {event: lapsed}
steps:
  - id: offer
    email: {subject: "15% off", body: "Code BACK15", on_skip: end}
  - id: week
    wait: 7d
  - id: reminder
    email: {subject: "Your 15% off is still waiting", body: "Code BACK15", frequency_cap: false}
"""
OTHER_PROMO = """
id: sale
tags: [promo]
trigger: {event: sale}
steps:
  - id: sale
    email: {subject: "Sale", body: "Sale"}
"""


def ev(kind: str, customer: str, at: str, **profile: Any) -> dict[str, Any]:
    event: dict[str, Any] = {"type": kind, "customer_id": customer, "at": at}
    if profile:
        event["customer"] = profile
    return event


def test_a_skipped_offer_takes_on_skip_and_a_sent_one_goes_on(proj: Project, db_url: str) -> None:
    proj.config(CONFIG)
    proj.journey("voucher", VOUCHER)
    proj.journey("sale", OTHER_PROMO)
    records = both_ways(
        proj,
        db_url,
        [
            ev("sale", "capped", "2027-03-01T09:00:00Z", email="a@example.com"),
            ev("lapsed", "capped", "2027-03-02T09:00:00Z"),  # the week's promo is taken
            ev("lapsed", "free", "2027-03-02T09:00:00Z", email="b@example.com"),
            ev("lapsed", "nobody", "2027-03-02T09:00:00Z"),  # no address: not sent either
        ],
        "2027-03-20T00:00:00Z",
    )
    assert pick(records, "customer_id", "step", "status", "reason", kind="message") == [
        ("capped", "sale", "sent", None),
        ("capped", "offer", "skipped", "frequency_cap"),
        ("free", "offer", "sent", None),
        ("nobody", "offer", "skipped", "no_address"),
        ("free", "reminder", "sent", None),
    ]
    exits = pick(records, "customer_id", "at", "reason", kind="exit", journey="voucher")
    assert exits == [
        ("capped", "2027-03-02T09:00:00Z", "completed"),  # at once: no reminder a week on
        ("nobody", "2027-03-02T09:00:00Z", "completed"),
        ("free", "2027-03-09T09:00:00Z", "completed"),
    ]


def test_on_skip_after_a_quiet_hours_hold_is_decided_at_release(proj: Project, db_url: str) -> None:
    """A held text is decided when it is released (§2): so is the way out."""
    proj.config("timezone: UTC\nquiet_hours: {start: '21:00', end: '09:00', channels: [sms]}\n")
    proj.journey(
        "nudge",
        """
        id: nudge
        trigger: {event: go}
        steps:
          - id: text
            sms: {body: "Hi", on_skip: apology}
          - id: thanks
            email: {subject: "Sent", body: "x"}
            next: end
          - id: apology
            email: {subject: "We could not text you", body: "x"}
        """,
    )
    records = both_ways(
        proj,
        db_url,
        [
            # 23:00: held to 09:00; the number is suppressed at 08:00, before the release.
            ev(
                "go",
                "c1",
                "2027-03-01T23:00:00Z",
                email="c@example.com",
                phone="+15555550100",
                sms_consent=True,
            ),
            {
                "type": "address_suppressed",
                "customer_id": "c1",
                "at": "2027-03-02T08:00:00Z",
                "data": {"address": "+15555550100", "reason": "stop"},
            },
        ],
        "2027-03-03T00:00:00Z",
    )
    assert pick(records, "step", "at", "status", kind="message") == [
        ("text", "2027-03-02T09:00:00Z", "skipped"),
        ("apology", "2027-03-02T09:00:00Z", "sent"),
    ]


def validate(tmp_path: Path, monkeypatch: Any) -> list[str]:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["validate", "journeys"])
    return [line for line in result.output.splitlines() if ": error: " in line]


def test_validate_locates_an_unknown_on_skip_and_a_loop_through_it(
    tmp_path: Path, monkeypatch: Any
) -> None:
    write(
        tmp_path,
        "journeys/j.yaml",
        """
        id: j
        trigger: {event: go}
        steps:
          - id: a
            email: {subject: s, body: b, on_skip: remnd}
          - id: remind
            email: {subject: s, body: b, on_skip: a}
        """,
    )
    errors = validate(tmp_path, monkeypatch)
    assert errors[0] == "journeys/j.yaml:5:43: error: unknown step 'remnd' (did you mean 'remind'?)"
    assert any("loop" in e or "cycle" in e for e in errors[1:]), errors


def test_graph_draws_both_ways_out(tmp_path: Path, monkeypatch: Any) -> None:
    write(tmp_path, "journeys/voucher.yaml", VOUCHER)
    write(tmp_path, "postflow.yaml", CONFIG)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["graph", "voucher"])
    assert result.exit_code == 0, result.output
    assert '-->|"not sent"| end_' in result.output
    assert '-->|"sent"| s_week' in result.output
