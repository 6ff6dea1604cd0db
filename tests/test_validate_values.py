"""`postflow validate` on what a journey writes as values: `emit` of a type postflow reserves
for itself (contract §1, §2: an error at the `event` value), and a bare word as a `set`,
`emit` or `entry.key` value (contract §9: a warning, at the value, to quote the literal)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from conftest import write

from postflow import events
from postflow.cli import main

RESERVED = [
    "address_suppressed",
    "address_unsuppressed",
    "email_delivered",
    "email_opened",
    "email_clicked",
    "email_bounced",
    "sms_received",
]


def run(root: Path, monkeypatch: pytest.MonkeyPatch, *args: str) -> Result:
    monkeypatch.chdir(root)
    return CliRunner().invoke(main, list(args))


def problems(result: Result) -> list[str]:
    assert "Traceback" not in result.stderr
    return result.stderr.splitlines()[:-1]  # the summary line left out


def test_the_reserved_types_are_the_contracts() -> None:
    assert events.RESERVED_TYPES == set(RESERVED)


@pytest.mark.parametrize("reserved", RESERVED)
def test_emitting_a_reserved_type_is_an_error_at_the_event_value(
    tmp_path, monkeypatch, reserved
) -> None:
    write(
        tmp_path,
        "journeys/j.yaml",
        f"""
        id: j
        trigger: {{event: go}}
        steps:
          - id: fake
            emit: {{event: {reserved}, data: {{address: "'a@example.com'"}}}}
        """,
    )
    result = run(tmp_path, monkeypatch, "validate")
    assert result.exit_code == 1
    assert problems(result) == [
        f"journeys/j.yaml:5:19: error: '{reserved}' is a reserved event type (postflow raises "
        "it itself): a journey cannot emit it; emit a type of your own"
    ]


def test_a_journey_emitting_a_reserved_type_does_not_simulate(tmp_path, monkeypatch) -> None:
    write(
        tmp_path,
        "journeys/j.yaml",
        """
        id: j
        trigger: {event: go}
        steps:
          - id: fake
            emit: {event: email_opened}
        """,
    )
    event = {"type": "go", "customer_id": "c1", "at": "2027-01-01T00:00:00Z"}
    write(tmp_path, "events.jsonl", json.dumps(event) + "\n")
    result = run(tmp_path, monkeypatch, "simulate", "--events", "events.jsonl")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "journeys/j.yaml:5:19: error: 'email_opened' is a reserved event type" in result.stderr


def test_emitting_an_ordinary_type_and_trigger_on_reserved_types_are_fine(
    tmp_path, monkeypatch
) -> None:
    write(
        tmp_path,
        "journeys/j.yaml",
        """
        id: j
        trigger: {event: email_opened}
        steps:
          - id: tell
            emit: {event: opened_once, data: {n: 1}}
        """,
    )
    result = run(tmp_path, monkeypatch, "validate")
    assert result.exit_code == 0, result.stderr
    assert problems(result) == []


BARE = """
    id: j
    trigger: {event: go}
    entry: {key: ORDER}
    steps:
      - id: code
        set: {vars.code: WELCOME10, customer.tier: "'gold'", vars.n: 3, vars.t: "true"}
      - id: typo
        set: {vars.who: custmer}
      - id: tell
        emit: {event: coded, data: {code: WELCOME10, who: trigger.customer_id}}
"""


def test_a_bare_word_value_warns_to_quote_it_at_the_value(tmp_path, monkeypatch) -> None:
    write(tmp_path, "journeys/j.yaml", BARE)
    result = run(tmp_path, monkeypatch, "validate")
    assert result.exit_code == 0  # warnings only
    hint = "this value is none when the journey runs; to mean the text, quote it inside the YAML string"
    assert problems(result) == [
        f"journeys/j.yaml:3:14: warning: unknown name 'ORDER': {hint}: \"'ORDER'\"",
        f"journeys/j.yaml:6:22: warning: unknown name 'WELCOME10': {hint}: \"'WELCOME10'\"",
        f"journeys/j.yaml:8:21: warning: unknown name 'custmer': {hint}: \"'custmer'\" "
        "(or did you mean 'customer'?)",
        f"journeys/j.yaml:10:39: warning: unknown name 'WELCOME10': {hint}: \"'WELCOME10'\"",
    ]
    assert result.stderr.splitlines()[-1] == "1 journey file(s), 0 error(s), 4 warning(s)"


def test_quoting_the_literal_silences_the_warning_and_sets_the_text(tmp_path, monkeypatch) -> None:
    write(
        tmp_path,
        "journeys/j.yaml",
        """
        id: j
        trigger: {event: go}
        steps:
          - id: code
            set: {vars.code: "'WELCOME10'"}
          - id: tell
            email: {subject: "Code {{ vars.code }}", body: "x", to: "'a@example.com'"}
        """,
    )
    result = run(tmp_path, monkeypatch, "validate")
    assert result.exit_code == 0
    assert problems(result) == []
    event = {"type": "go", "customer_id": "c1", "at": "2027-01-01T00:00:00Z"}
    write(tmp_path, "events.jsonl", json.dumps(event) + "\n")
    result = run(tmp_path, monkeypatch, "simulate", "--events", "events.jsonl")
    assert result.exit_code == 0, result.stderr
    [message] = [r for r in map(json.loads, result.stdout.splitlines()) if r["kind"] == "message"]
    assert message["subject"] == "Code WELCOME10"


def test_other_unknown_names_keep_their_own_warning(tmp_path, monkeypatch) -> None:
    """Only a lone word gets the quoting hint; a name inside a longer expression, a bare name
    in a condition or `wait.until`, warns as an unknown name, once."""
    write(
        tmp_path,
        "journeys/j.yaml",
        """
        id: j
        trigger: {event: go, if: custmer}
        steps:
          - id: code
            set: {vars.code: "custmer.code ~ '!'"}
          - id: w
            wait: {until: LATER}
        """,
    )
    result = run(tmp_path, monkeypatch, "validate")
    assert result.exit_code == 0
    assert problems(result) == [
        "journeys/j.yaml:2:26: warning: unknown name 'custmer' (did you mean 'customer'?): "
        "it is undefined when the journey runs",
        "journeys/j.yaml:5:22: warning: unknown name 'custmer' (did you mean 'customer'?): "
        "it is undefined when the journey runs",
        "journeys/j.yaml:7:19: warning: unknown name 'LATER' (known: customer, data, event, "
        "instance, last_event, now, trigger, vars): it is undefined when the journey runs",
    ]
