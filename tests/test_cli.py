"""The `simulate`, `test` and `graph` commands (and every command's --help) as a user runs
them: exit codes, stdout/stderr contents, FILE:LINE:COL locations, never a traceback."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import contract_examples
import pytest
from click.testing import CliRunner, Result
from conftest import write

from postflow.cli import main

AT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$")
SUMMARY = re.compile(r"^\d+ passed, \d+ failed$")


def events_file(root: Path, rows: list[Any], name: str = "events.jsonl") -> Path:
    lines = [row if isinstance(row, str) else json.dumps(row) for row in rows]
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def invoke(root: Path, monkeypatch: pytest.MonkeyPatch, *args: str) -> Result:
    monkeypatch.chdir(root)
    return CliRunner().invoke(main, list(args))


def run(cwd: Path, *args: str, seed: str = "0") -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "POSTFLOW_CONFIG"}
    env["PYTHONHASHSEED"] = seed
    return subprocess.run(
        [sys.executable, "-m", "postflow", *args], cwd=cwd, capture_output=True, env=env, timeout=60
    )


def jsonl(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


WELCOME = """
    id: welcome
    trigger: {event: signup}
    steps:
      - id: pause
        wait: 1d
      - id: hello
        email: {subject: "Hi {{ customer.first_name | default('there') }}", body: "Welcome"}
      - id: later
        wait: 2d
      - id: again
        email: {subject: "Again", body: "x"}
"""


def signup(cid: str, at: str = "2027-01-01T00:00:00Z", **extra: Any) -> dict[str, Any]:
    return {"type": "signup", "customer_id": cid, "at": at, **extra}


@pytest.fixture
def welcome(tmp_path: Path) -> Path:
    write(tmp_path, "journeys/welcome.yaml", WELCOME)
    return tmp_path


# ------------------------------------------------------------------------------ --help


@pytest.mark.parametrize("command", ["validate", "simulate", "test", "graph"])
def test_every_command_help_shows_an_example(command: str) -> None:
    result = CliRunner().invoke(main, [command, "--help"])
    assert result.exit_code == 0
    assert result.stdout.startswith("Usage: ")
    assert f" {command} [OPTIONS]" in result.stdout.splitlines()[0]
    assert "Example:" in result.stdout
    example = result.stdout.split("Example:", 1)[1]
    assert f"postflow {command}" in example


def test_help_end_to_end() -> None:
    proc = run(Path.cwd(), "simulate", "--help")
    assert proc.returncode == 0
    assert proc.stdout.startswith(b"Usage: ")
    assert b"Example:" in proc.stdout
    assert b"postflow simulate --events " in proc.stdout.split(b"Example:", 1)[1]


# ---------------------------------------------------------------------------- simulate


def test_simulate_prints_sorted_json_lines(welcome: Path, monkeypatch) -> None:
    events_file(
        welcome,
        [
            signup("c2", customer={"email": "b@x.com"}),
            signup("c1", customer={"email": "a@x.com", "first_name": "Ann"}),
            signup("c0", at="2027-01-01T12:00:00+02:00", customer={"email": "z@x.com"}),
        ],
    )
    result = invoke(welcome, monkeypatch, "simulate", "--events", "events.jsonl")
    assert result.exit_code == 0, result.stderr
    records = jsonl(result.stdout)
    for record in records:
        assert {"kind", "at", "customer_id", "journey", "instance"} <= set(record)
        assert AT.match(record["at"]), record["at"]
        assert None not in record.values()  # fields that do not apply are omitted
    assert [(r["at"], r["customer_id"]) for r in records] == sorted(
        (r["at"], r["customer_id"]) for r in records
    )
    assert [(r["kind"], r["at"], r["customer_id"]) for r in records[:3]] == [
        ("enter", "2027-01-01T00:00:00Z", "c1"),
        ("enter", "2027-01-01T00:00:00Z", "c2"),
        ("enter", "2027-01-01T10:00:00Z", "c0"),  # +02:00 printed in UTC
    ]
    hello = [r for r in records if r.get("step") == "hello" and r["customer_id"] == "c1"]
    assert hello == [
        {
            "kind": "message",
            "at": "2027-01-02T00:00:00Z",
            "customer_id": "c1",
            "journey": "welcome",
            "instance": "welcome:c1:1",
            "step": "hello",
            "channel": "email",
            "status": "sent",
            "to": "a@x.com",
            "subject": "Hi Ann",
            "body": "Welcome",
        }
    ]
    assert records[-1] == {
        "kind": "exit",
        "at": "2027-01-04T10:00:00Z",
        "customer_id": "c0",
        "journey": "welcome",
        "instance": "welcome:c0:1",
        "reason": "completed",
    }
    assert len(records) == 3 * 4


def test_simulate_is_byte_for_byte_deterministic(welcome: Path) -> None:
    events_file(
        welcome,
        [signup(f"c{n}", at=f"2027-01-0{1 + n % 3}T0{n}:00:00Z") for n in range(8)]
        + [{"type": "other", "customer_id": "c3", "at": "2027-01-01T05:00:00Z"}],
    )
    first = run(welcome, "simulate", "--events", "events.jsonl", seed="1")
    second = run(welcome, "simulate", "--events", "events.jsonl", seed="2")
    assert first.returncode == 0, first.stderr
    assert first.stdout.count(b"\n") == 8 * 4
    assert first.stdout == second.stdout


def test_simulate_until_stops_timers_and_includes_t(welcome: Path, monkeypatch) -> None:
    events_file(welcome, [signup("c1", customer={"email": "a@x.com"})])
    result = invoke(
        welcome,
        monkeypatch,
        "simulate",
        "--events",
        "events.jsonl",
        "--until",
        "2027-01-02T00:00:00Z",
    )
    assert result.exit_code == 0, result.stderr
    assert [(r["kind"], r["at"]) for r in jsonl(result.stdout)] == [
        ("enter", "2027-01-01T00:00:00Z"),
        ("message", "2027-01-02T00:00:00Z"),  # due exactly at T: included
    ]
    result = invoke(
        welcome,
        monkeypatch,
        "simulate",
        "--events",
        "events.jsonl",
        "--until",
        "2027-01-01T23:59:59Z",
    )
    assert [r["kind"] for r in jsonl(result.stdout)] == ["enter"]


def test_simulate_until_leaves_later_events_unapplied(welcome: Path, monkeypatch) -> None:
    events_file(welcome, [signup("c1"), signup("c2", at="2027-03-01T00:00:00Z")])
    result = invoke(
        welcome,
        monkeypatch,
        "simulate",
        "--events",
        "events.jsonl",
        "--until",
        "2027-02-01T00:00:00Z",
    )
    assert result.exit_code == 0, result.stderr
    assert {r["customer_id"] for r in jsonl(result.stdout)} == {"c1"}


def test_simulate_bad_until_is_a_usage_error(welcome: Path, monkeypatch) -> None:
    events_file(welcome, [signup("c1")])
    result = invoke(welcome, monkeypatch, "simulate", "--events", "events.jsonl", "--until", "soon")
    assert result.exit_code == 2
    assert "--until" in result.stderr
    assert result.stdout == ""


BAD_EVENTS = {  # line, message fragment, column (at the offending value where there is one)
    "not json": ("not json", "not valid JSON", 1),
    "missing type": ('{"customer_id": "c1", "at": "2027-01-01T00:00:00Z"}', "'type'", 1),
    "missing customer_id": (
        '{"type": "signup", "at": "2027-01-01T00:00:00Z"}',
        "'customer_id'",
        1,
    ),
    "naive at": (
        '{"type": "signup", "customer_id": "c1", "at": "2027-01-01T10:00:00"}',
        "UTC offset",
        47,
    ),
    "missing at": ('{"type": "signup", "customer_id": "c1"}', "'at'", 1),
    "bad customer.timezone": (
        '{"type": "signup", "customer_id": "c1", "at": "2027-01-01T00:00:00Z", '
        '"customer": {"timezone": "Mars/Base"}}',
        "customer.timezone: unknown time zone 'Mars/Base'",
        96,
    ),
    "a list": ("[1, 2]", "must be a mapping", 1),
}


@pytest.mark.parametrize("case", list(BAD_EVENTS))
def test_simulate_rejects_a_bad_event_with_its_line(welcome: Path, case: str) -> None:
    line, fragment, column = BAD_EVENTS[case]
    events_file(welcome, [signup("c1"), "", line])  # the bad event is on line 3
    proc = run(welcome, "simulate", "--events", "events.jsonl")
    stderr = proc.stderr.decode()
    assert proc.returncode == 1, stderr
    assert proc.stdout == b""
    assert "Traceback" not in stderr
    [problem] = stderr.splitlines()
    assert problem.startswith(f"events.jsonl:3:{column}: error: ")
    assert fragment in problem


def test_simulate_reports_every_bad_line_and_applies_nothing(welcome: Path, monkeypatch) -> None:
    events_file(
        welcome,
        [
            signup("c1"),
            '{"type": "signup", "at": "2027-01-01T00:00:00Z"}',
            signup("c2"),
            "{oops",
            '{"type": "signup", "customer_id": "c3", "at": "2027-01-01T10:00:00"}',
        ],
    )
    result = invoke(welcome, monkeypatch, "simulate", "--events", "events.jsonl")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert [line.split(": error: ")[0] for line in result.stderr.splitlines()] == [
        "events.jsonl:2:1",
        "events.jsonl:4:2",  # where the JSON goes wrong
        "events.jsonl:5:47",  # the naive `at` value
    ]


def test_simulate_refuses_a_journey_with_errors(tmp_path: Path) -> None:
    write(
        tmp_path,
        "journeys/j.yaml",
        """
        id: j
        trigger: {event: signup}
        steps:
          - id: a
            email: {subject: "{{ oops ", body: "x"}
          - id: b
            goto: nowhere
        """,
    )
    events_file(tmp_path, [signup("c1")])
    proc = run(tmp_path, "simulate", "--events", "events.jsonl")
    stderr = proc.stderr.decode()
    assert proc.returncode == 1
    assert proc.stdout == b""
    assert "Traceback" not in stderr
    lines = stderr.splitlines()
    assert [line.split(": error: ")[0][-len("journeys/j.yaml:5:11") :] for line in lines] == [
        "journeys/j.yaml:5:22",
        "journeys/j.yaml:7:11",
    ]
    assert "end of print statement" in lines[0]
    assert "unknown step 'nowhere'" in lines[1]


def test_simulate_ignores_warnings(tmp_path: Path, monkeypatch) -> None:
    write(
        tmp_path,
        "journeys/j.yaml",
        """
        id: j
        trigger: {event: signup}
        steps:
          - id: a
            wait: 1h
            next: end
          - id: orphan
            wait: 1h
        """,
    )
    events_file(tmp_path, [signup("c1")])
    result = invoke(tmp_path, monkeypatch, "simulate", "--events", "events.jsonl")
    assert result.exit_code == 0, result.stderr
    assert [r["kind"] for r in jsonl(result.stdout)] == ["enter", "exit"]


def test_simulate_missing_events_file(welcome: Path) -> None:
    proc = run(welcome, "simulate", "--events", "missing.jsonl")
    stderr = proc.stderr.decode()
    assert proc.returncode == 2
    assert "missing.jsonl" in stderr
    assert "Traceback" not in stderr
    assert proc.stdout == b""


def test_simulate_missing_journeys_directory_option(welcome: Path) -> None:
    events_file(welcome, [signup("c1")])
    proc = run(welcome, "simulate", "--events", "events.jsonl", "--journeys", "flows")
    stderr = proc.stderr.decode()
    assert proc.returncode == 2
    assert "flows" in stderr
    assert "Traceback" not in stderr


def test_simulate_journeys_option_and_a_missing_journeys_directory(
    tmp_path: Path, monkeypatch
) -> None:
    write(tmp_path, "flows/welcome.yaml", WELCOME)
    events_file(tmp_path, [signup("c1")])
    result = invoke(tmp_path, monkeypatch, "simulate", "--events", "events.jsonl")
    assert result.exit_code == 2  # no ./journeys: a missing PATH, not a silent empty run
    assert "journeys (the journeys directory)" in result.stderr
    assert result.stdout == ""
    result = invoke(
        tmp_path, monkeypatch, "simulate", "--events", "events.jsonl", "--journeys", "flows"
    )
    assert result.exit_code == 0, result.stderr
    assert jsonl(result.stdout)[0]["instance"] == "welcome:c1:1"


def test_simulate_empty_events_file(welcome: Path, monkeypatch) -> None:
    (welcome / "events.jsonl").write_text("\n", encoding="utf-8")
    result = invoke(welcome, monkeypatch, "simulate", "--events", "events.jsonl")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""


# -------------------------------------------------------------------------------- test

# Contract section 2's journey and section 7's test file, verbatim.
REVIEW_REQUEST = contract_examples.JOURNEY

CONTRACT_TEST = contract_examples.TEST_FILE


@pytest.fixture
def review(tmp_path: Path) -> Path:
    write(tmp_path, "journeys/review-request.yaml", REVIEW_REQUEST)
    write(tmp_path, "templates/review_request.html", "<p>Hi {{ customer.first_name }}</p>\n")
    return tmp_path


def summary(stdout: str) -> str:
    last = stdout.splitlines()[-1]
    assert SUMMARY.match(last), stdout
    return last


def test_contract_example_passes_end_to_end(review: Path) -> None:
    write(review, "journeys/review-request.test.yaml", CONTRACT_TEST)
    proc = run(review, "test")
    stdout = proc.stdout.decode()
    assert proc.returncode == 0, stdout + proc.stderr.decode()
    assert "five stars get a thank-you" in stdout
    assert summary(stdout) == "1 passed, 0 failed"
    assert "Traceback" not in proc.stderr.decode()


def test_failing_expectation_names_case_expectation_and_nearby_records(
    review: Path, monkeypatch
) -> None:
    write(
        review,
        "tests/review.test.yaml",
        """
        cases:
          - name: the ask comes on day three
            start: "2027-01-10T12:00:00Z"
            customer: {email: ann@example.com, first_name: Ann}
            events:
              - {type: order_delivered, customer_id: c1, data: {order_id: o1, total: 20, items: [{name: Tea}]}}
            expect:
              - {kind: enter}
              - {kind: message, step: ask, at: "+2d"}
        """,
    )
    result = invoke(review, monkeypatch, "test", "tests/review.test.yaml")
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert "FAIL tests/review.test.yaml: the ask comes on day three" in lines
    assert (
        "  tests/review.test.yaml:9:9: expected "
        '{"kind":"message","step":"ask","at":"2027-01-12T12:00:00Z"}' in lines
    )
    # The records around it show what did happen: the ask on day three.
    nearby = [json.loads(line) for line in lines if line.startswith("    {")]
    assert any(r.get("step") == "ask" and r["at"] == "2027-01-13T12:00:00Z" for r in nearby)
    assert summary(result.stdout) == "0 passed, 1 failed"


def test_expectations_are_an_ordered_subsequence(review: Path, monkeypatch) -> None:
    write(
        review,
        "tests/order.test.yaml",
        """
        cases:
          - name: exit before ask is out of order
            start: "2027-01-10T12:00:00Z"
            customer: {email: ann@example.com, first_name: Ann}
            events:
              - {type: order_delivered, customer_id: c1, data: {order_id: o1, total: 20, items: [{name: Tea}]}}
            expect:
              - {kind: exit}
              - {kind: message, step: ask}
        """,
    )
    result = invoke(review, monkeypatch, "test", "tests/order.test.yaml")
    assert result.exit_code == 1
    assert "FAIL tests/order.test.yaml: exit before ask is out of order" in result.stdout
    assert '  tests/order.test.yaml:9:9: expected {"kind":"message","step":"ask"}' in result.stdout
    assert summary(result.stdout) == "0 passed, 1 failed"


def test_times_are_compared_as_instants(review: Path, monkeypatch) -> None:
    write(
        review,
        "tests/instants.test.yaml",
        """
        cases:
          - name: offsets
            start: "2027-01-10T13:00:00+01:00"
            customer: {email: ann@example.com, first_name: Ann}
            events:
              - {type: order_delivered, customer_id: c1, at: "2027-01-10T07:00:00-05:00",
                 data: {order_id: o1, total: 20, items: [{name: Tea}]}}
            expect:
              - {kind: enter, at: "+0s"}
              - {kind: message, step: ask, at: "2027-01-13T13:00:00+01:00"}
        """,
    )
    result = invoke(review, monkeypatch, "test", "tests/instants.test.yaml")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert summary(result.stdout) == "1 passed, 0 failed"


def test_no_other_messages_catches_an_extra_message(review: Path, monkeypatch) -> None:
    write(
        review,
        "tests/extra.test.yaml",
        """
        cases:
          - name: only the ask
            start: "2027-01-10T12:00:00Z"
            customer: {email: ann@example.com, first_name: Ann, sms_consent: true, phone: "+15555550100"}
            events:
              - {type: order_delivered, customer_id: c1, data: {order_id: o1, total: 20, items: [{name: Tea}]}}
            expect:
              - {kind: message, step: ask}
            no_other_messages: true
          - name: same without the flag
            start: "2027-01-10T12:00:00Z"
            customer: {email: ann@example.com, first_name: Ann, sms_consent: true, phone: "+15555550100"}
            events:
              - {type: order_delivered, customer_id: c1, data: {order_id: o1, total: 20, items: [{name: Tea}]}}
            expect:
              - {kind: message, step: ask}
        """,
    )
    result = invoke(review, monkeypatch, "test", "tests/extra.test.yaml")
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert "FAIL tests/extra.test.yaml: only the ask" in lines
    assert "PASS tests/extra.test.yaml: same without the flag" in lines
    assert "  1 message record(s) not matched by `expect`:" in lines
    extra = [json.loads(line) for line in lines if line.startswith("    {")]
    assert [(r["step"], r["channel"], r["at"]) for r in extra] == [
        ("remind", "sms", "2027-01-20T12:00:00Z")
    ]
    assert summary(result.stdout) == "1 passed, 1 failed"


def test_events_from_a_jsonl_file_relative_to_the_test_file(review: Path, monkeypatch) -> None:
    events_file(
        review / "tests",
        [
            {
                "type": "order_delivered",
                "customer_id": "c1",
                "data": {"order_id": "o1", "total": 20, "items": [{"name": "Tea"}]},
            },
            {
                "type": "review_submitted",
                "customer_id": "c1",
                "at": "+4d",
                "data": {"order_id": "o1", "rating": 2},
            },
        ],
        name="data/two.jsonl",
    )
    write(
        review,
        "tests/file.test.yaml",
        """
        cases:
          - name: low rating ends quietly
            start: "2027-01-10T12:00:00Z"
            customer: {email: ann@example.com, first_name: Ann}
            events: data/two.jsonl
            expect:
              - {kind: message, step: ask, at: "+3d"}
              - {kind: exit, reason: completed, at: "+4d"}
            no_other_messages: true
        """,
    )
    result = invoke(review, monkeypatch, "test", "tests/file.test.yaml")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        "PASS tests/file.test.yaml: low rating ends quietly",
        "1 passed, 0 failed",
    ]


def test_bad_line_in_a_test_events_file_is_located(review: Path, monkeypatch) -> None:
    events_file(review, ['{"type": "order_delivered", "customer_id": "c1"}', "{oops"])
    write(
        review,
        "cases.test.yaml",
        """
        cases:
          - name: x
            start: "2027-01-10T12:00:00Z"
            events: events.jsonl
        """,
    )
    result = invoke(review, monkeypatch, "test", "cases.test.yaml")
    assert result.exit_code == 1
    [problem] = result.stderr.splitlines()
    assert re.match(r"^.*events\.jsonl:2:2: error: not valid JSON", problem), problem
    assert summary(result.stdout) == "0 passed, 0 failed"


CAPPED = """
    id: capped
    trigger: {event: buy}
    steps:
      - id: one
        email: {subject: "one", body: "x"}
      - id: two
        email: {subject: "two", body: "x"}
"""


def cap_case(second: str) -> str:
    """A test file whose one case expects the first email sent and the second as given."""
    return f"""
        cases:
          - name: two emails at once
            start: "2027-01-10T12:00:00Z"
            customer: {{email: a@example.com}}
            events:
              - {{type: buy, customer_id: c1}}
            expect:
              - {{kind: message, step: one, status: sent}}
              - {second}
    """


def test_config_overrides_take_effect(tmp_path: Path, monkeypatch) -> None:
    write(tmp_path, "journeys/capped.yaml", CAPPED)
    write(tmp_path, "postflow.yaml", "limits: {sms: {max: 1, per: 1d}}\n")
    write(tmp_path, "tests/plain.test.yaml", cap_case("{kind: message, step: two, status: sent}"))
    write(
        tmp_path,
        "tests/capped.test.yaml",
        "config: {limits: {email: {max: 1, per: 1d}}}\n"
        + textwrap.dedent(
            cap_case("{kind: message, step: two, status: skipped, reason: frequency_cap}")
        ).lstrip("\n"),
    )
    result = invoke(tmp_path, monkeypatch, "test")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        "PASS tests/capped.test.yaml: two emails at once",
        "PASS tests/plain.test.yaml: two emails at once",
        "2 passed, 0 failed",
    ]


def test_journeys_subset(tmp_path: Path, monkeypatch) -> None:
    write(tmp_path, "journeys/capped.yaml", CAPPED)
    write(tmp_path, "journeys/also.yaml", CAPPED.replace("id: capped", "id: also"))
    write(
        tmp_path,
        "t.test.yaml",
        """
        journeys: [capped]
        cases:
          - name: only capped runs
            start: "2027-01-10T12:00:00Z"
            customer: {email: a@example.com}
            events:
              - {type: buy, customer_id: c1}
            expect:
              - {kind: enter, journey: capped}
              - {kind: exit, journey: capped}
        """,
    )
    result = invoke(tmp_path, monkeypatch, "test", "t.test.yaml")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert summary(result.stdout) == "1 passed, 0 failed"

    # The same file without `journeys:` sees both journeys: prove the subset mattered.
    write(
        tmp_path,
        "u.test.yaml",
        """
        cases:
          - name: both run
            start: "2027-01-10T12:00:00Z"
            customer: {email: a@example.com}
            events:
              - {type: buy, customer_id: c1}
            expect:
              - {kind: enter, journey: also}
        """,
    )
    assert invoke(tmp_path, monkeypatch, "test", "u.test.yaml").exit_code == 0
    write(
        tmp_path,
        "v.test.yaml",
        """
        journeys: [capped]
        cases:
          - name: also is left out
            start: "2027-01-10T12:00:00Z"
            customer: {email: a@example.com}
            events:
              - {type: buy, customer_id: c1}
            expect:
              - {kind: enter, journey: also}
        """,
    )
    result = invoke(tmp_path, monkeypatch, "test", "v.test.yaml")
    assert result.exit_code == 1
    assert "FAIL v.test.yaml: also is left out" in result.stdout


def test_unknown_journey_in_a_test_file_is_located(tmp_path: Path, monkeypatch) -> None:
    write(tmp_path, "journeys/capped.yaml", CAPPED)
    write(
        tmp_path,
        "t.test.yaml",
        """
        journeys: [capped, caped]
        cases:
          - name: x
            start: "2027-01-10T12:00:00Z"
            events:
              - {type: buy, customer_id: c1}
        """,
    )
    result = invoke(tmp_path, monkeypatch, "test", "t.test.yaml")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "t.test.yaml:1:20: error: unknown journey 'caped' (known: capped)"
    ]
    assert summary(result.stdout) == "0 passed, 0 failed"


def test_malformed_test_file_unknown_key(tmp_path: Path) -> None:
    write(tmp_path, "journeys/capped.yaml", CAPPED)
    write(
        tmp_path,
        "t.test.yaml",
        """
        cases:
          - name: x
            start: "2027-01-10T12:00:00Z"
            events:
              - {type: buy, customer_id: c1}
            expct:
              - {kind: enter}
        """,
    )
    proc = run(tmp_path, "test", "t.test.yaml")
    stderr = proc.stderr.decode()
    assert proc.returncode == 1
    assert "Traceback" not in stderr
    assert stderr.splitlines() == [
        "t.test.yaml:6:5: error: unknown key 'expct' (did you mean 'expect'?)"
    ]


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        (
            '- {type: buy, customer_id: c1, at: "+1d"}',
            "t.test.yaml:4:42: error: relative time '+1d' needs the case's `start`",
        ),
        (
            '- {type: buy, customer_id: c1, at: "2027-01-10T12:00:00Z"}\n    until: "+30d"',
            "t.test.yaml:5:12: error: relative time '+30d' needs the case's `start`",
        ),
    ],
)
def test_relative_time_without_start_is_located(tmp_path, monkeypatch, snippet, expected) -> None:
    write(tmp_path, "journeys/capped.yaml", CAPPED)
    write(tmp_path, "t.test.yaml", f"cases:\n  - name: x\n    events:\n      {snippet}\n")
    result = invoke(tmp_path, monkeypatch, "test", "t.test.yaml")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [expected]


def test_malformed_test_file_bad_time_and_bad_kind(tmp_path: Path, monkeypatch) -> None:
    write(tmp_path, "journeys/capped.yaml", CAPPED)
    write(
        tmp_path,
        "t.test.yaml",
        """
        cases:
          - name: x
            start: "2027-01-10T12:00:00"
            events:
              - {type: buy, customer_id: c1}
            expect:
              - {kind: mesage}
        """,
    )
    result = invoke(tmp_path, monkeypatch, "test", "t.test.yaml")
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert [line.split(": error: ")[0] for line in lines] == [
        "t.test.yaml:3:12",
        "t.test.yaml:7:16",
    ]
    assert "2027-01-10T12:00:00" in lines[0]
    assert "mesage" in lines[1]


def test_test_with_no_files_and_missing_path(tmp_path: Path) -> None:
    # Nothing to test is a usage error (exit 2), never a green "0 passed".
    (tmp_path / "journeys").mkdir()
    proc = run(tmp_path, "test")
    assert proc.returncode == 2
    assert "passed" not in proc.stdout.decode()
    assert "no journey test files" in proc.stderr.decode()
    (tmp_path / "empty").mkdir()
    proc = run(tmp_path, "test", "empty")
    assert proc.returncode == 2
    assert "no journey test files (*.test.yaml) found in empty" in proc.stderr.decode()
    proc = run(tmp_path, "test", "nope.test.yaml")
    assert proc.returncode == 2
    assert "nope.test.yaml" in proc.stderr.decode()
    assert "Traceback" not in proc.stderr.decode()


def test_test_refuses_journeys_with_errors(tmp_path: Path, monkeypatch) -> None:
    write(tmp_path, "journeys/capped.yaml", CAPPED.replace('body: "x"}', 'body: "{{ x "}', 1))
    write(tmp_path, "t.test.yaml", cap_case("{kind: message, step: two, status: sent}"))
    result = invoke(tmp_path, monkeypatch, "test", "t.test.yaml")
    assert result.exit_code == 1
    [problem] = result.stderr.splitlines()
    assert problem.split(": error: ")[0].endswith("journeys/capped.yaml:5:35")


def test_summary_counts_across_files(review: Path, monkeypatch) -> None:
    write(review, "journeys/review-request.test.yaml", CONTRACT_TEST)
    failing = CONTRACT_TEST.replace("rating: 5", "rating: 3").replace(
        "five stars get a thank-you", "three stars get nothing"
    )
    write(review, "tests/review.test.yaml", failing)
    result = invoke(review, monkeypatch, "test")
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0] == "PASS journeys/review-request.test.yaml: five stars get a thank-you"
    assert lines[1] == "FAIL tests/review.test.yaml: three stars get nothing"
    assert lines[-1] == "1 passed, 1 failed"


def test_bad_config_override_in_a_test_file_is_located_there(tmp_path, monkeypatch) -> None:
    write(tmp_path, "journeys/capped.yaml", CAPPED)
    write(
        tmp_path,
        "t.test.yaml",
        """
        config: {timezone: Mars/Base}
        cases:
          - name: x
            start: "2027-01-10T12:00:00Z"
            events:
              - {type: buy, customer_id: c1}
        """,
    )
    result = invoke(tmp_path, monkeypatch, "test", "t.test.yaml")
    assert result.exit_code == 1
    [problem] = result.stderr.splitlines()
    assert problem.startswith("t.test.yaml:1:20: error: unknown time zone 'Mars/Base'")


# ------------------------------------------------------------------------------- graph


def test_graph_mermaid(review: Path, monkeypatch) -> None:
    result = invoke(review, monkeypatch, "graph", "review-request")
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert out.startswith("flowchart")
    for step in ("wait_3d", "ask", "await_review", "by_rating", "remind", "thanks"):
        assert f"s_{step}[" in out
    assert 's_by_rating -->|"last_event.data.rating >= 4"| s_thanks' in out
    assert 's_by_rating -->|"else"| end_' in out
    assert 's_await_review -->|"timeout"| s_remind' in out
    assert 'trigger_ -->|"order_delivered if event.data.total > 0"| s_wait_3d' in out


def test_graph_dot(review: Path, monkeypatch) -> None:
    result = invoke(review, monkeypatch, "graph", "review-request", "--format", "dot")
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert out.startswith('digraph "review-request" {')
    assert out.rstrip().endswith("}")
    assert '"by_rating" -> "thanks" [label="last_event.data.rating >= 4"];' in out
    assert '"remind" -> "end";' in out


def test_graph_of_a_journey_file(review: Path, monkeypatch) -> None:
    write(review, "elsewhere/other.yaml", CAPPED)
    result = invoke(review, monkeypatch, "graph", "elsewhere/other.yaml")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[:2] == ["flowchart TD", '  trigger_(["capped"])']
    assert "  s_one --> s_two" in result.stdout


def test_graph_unknown_journey_lists_the_known_ones(review: Path) -> None:
    write(review, "journeys/capped.yaml", CAPPED)
    proc = run(review, "graph", "review-requst")
    stderr = proc.stderr.decode()
    assert proc.returncode == 2
    assert proc.stdout == b""
    assert (
        stderr.strip() == "error: unknown journey 'review-requst' (known: capped, review-request)"
    )


def test_graph_bad_format_is_a_usage_error(review: Path, monkeypatch) -> None:
    result = invoke(review, monkeypatch, "graph", "review-request", "--format", "svg")
    assert result.exit_code == 2
    assert "svg" in result.stderr


def test_graph_of_a_journey_file_with_errors(tmp_path: Path, monkeypatch) -> None:
    write(tmp_path, "j.yaml", "id: j\ntrigger: {event: x}\nsteps:\n  - id: a\n    goto: b\n")
    result = invoke(tmp_path, monkeypatch, "graph", "j.yaml")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == ["j.yaml:5:11: error: unknown step 'b'"]
    assert result.stdout == ""


# ------------------------------------------------------------------------------ config


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "timezone: UTC\nlimitz: {}\n",
            "cfg.yaml:2:1: error: unknown key 'limitz' (did you mean 'limits'?)",
        ),
        (
            "timezone: Mars/Base\n",
            "cfg.yaml:1:11: error: unknown time zone 'Mars/Base' "
            "(use an IANA name such as America/New_York)",
        ),
    ],
)
@pytest.mark.parametrize("command", ["simulate", "test", "graph"])
def test_bad_config_is_a_located_error(welcome, monkeypatch, text, expected, command) -> None:
    write(welcome, "cfg.yaml", text)
    events_file(welcome, [signup("c1")])
    args = {
        "simulate": ["simulate", "--events", "events.jsonl"],
        "test": ["test"],
        "graph": ["graph", "welcome"],
    }[command]
    result = invoke(welcome, monkeypatch, *args, "--config", "cfg.yaml")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [expected]
    assert result.stdout == ""


def test_missing_config_file_is_named(welcome: Path) -> None:
    events_file(welcome, [signup("c1")])
    proc = run(welcome, "simulate", "--events", "events.jsonl", "--config", "nope.yaml")
    stderr = proc.stderr.decode()
    assert proc.returncode == 2  # a missing PATH is a usage error
    assert stderr.splitlines() == [
        "error: no such file or directory: nope.yaml (the configuration file)"
    ]
    assert "Traceback" not in stderr


def test_config_timezone_acts_in_simulate(tmp_path: Path, monkeypatch) -> None:
    write(
        tmp_path,
        "journeys/morning.yaml",
        """
        id: morning
        trigger: {event: signup}
        steps:
          - id: align
            wait: {for: 1h, at: "10:00"}
          - id: hello
            email: {subject: "Morning", body: "x"}
        """,
    )
    events_file(tmp_path, [signup("c1", at="2027-01-01T12:00:00Z", customer={"email": "a@x.com"})])
    write(tmp_path, "ny.yaml", "timezone: America/New_York\n")
    result = invoke(tmp_path, monkeypatch, "simulate", "--events", "events.jsonl")
    assert [r["at"] for r in jsonl(result.stdout) if r["kind"] == "message"] == [
        "2027-01-02T10:00:00Z"
    ]
    result = invoke(
        tmp_path, monkeypatch, "simulate", "--events", "events.jsonl", "--config", "ny.yaml"
    )
    assert result.exit_code == 0, result.stderr
    assert [r["at"] for r in jsonl(result.stdout) if r["kind"] == "message"] == [
        "2027-01-01T15:00:00Z"
    ]


AUDIENCE = """
id: hourly
trigger: {schedule: "0 * * * *", audience: "true"}
entry: {reentry: never}
steps:
  - id: hi
    email: {subject: "Hi {{ customer.first_name }}", body: "x"}
"""


def test_case_customer_reaches_the_profile_with_the_first_event(
    tmp_path: Path, monkeypatch
) -> None:
    write(tmp_path, "journeys/hourly.yaml", AUDIENCE)
    write(
        tmp_path,
        "tests/a.test.yaml",
        """
        cases:
          - name: nobody exists before their first event
            start: "2027-01-01T00:00:00Z"
            customer: {first_name: Ann, email: a@x.com}
            events:
              - {type: seen, customer_id: c1}
              - {type: seen, customer_id: c2, at: "+3h"}
            until: "+5h"
            expect:
              - {kind: enter, customer_id: c1, at: "+1h"}  # ticks fire before events
              - {kind: enter, customer_id: c2, at: "+4h"}
              - {kind: message, customer_id: c2, subject: "Hi Ann"}
        """,
    )
    result = invoke(tmp_path, monkeypatch, "test")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert summary(result.stdout) == "1 passed, 0 failed"


def test_case_customer_is_validated_like_an_event(tmp_path: Path, monkeypatch) -> None:
    write(tmp_path, "journeys/hourly.yaml", AUDIENCE)
    write(
        tmp_path,
        "tests/tz.test.yaml",
        """
        cases:
          - name: bad zone
            start: "2027-01-01T00:00:00Z"
            customer: {timezone: Mars/Olympus}
            events:
              - {type: seen, customer_id: c1}
        """,
    )
    result = invoke(tmp_path, monkeypatch, "test")
    assert result.exit_code == 1
    assert "tests/tz.test.yaml:4:26: error: bad customer: customer.timezone" in result.stderr
    assert "unknown time zone 'Mars/Olympus'" in result.stderr


def test_events_file_of_a_case_is_located_line_by_line(tmp_path: Path, monkeypatch) -> None:
    write(tmp_path, "journeys/hourly.yaml", AUDIENCE)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "bad.jsonl").write_text(
        '{"type": "a", "customer_id": "c", "at": "+1x"}\n[1, 2]\n'
        '{"type": "a", "customer_id": "c", "at": "2027-01-01T00:00:00"}\n'
    )
    (tmp_path / "tests" / "bin.jsonl").write_bytes(b"\xff\xfe\n")
    write(
        tmp_path,
        "tests/f.test.yaml",
        """
        cases:
          - {name: bad lines, start: "2027-01-01T00:00:00Z", events: bad.jsonl}
        """,
    )
    write(
        tmp_path,
        "tests/g.test.yaml",
        """
        cases:
          - {name: not utf-8, start: "2027-01-01T00:00:00Z", events: bin.jsonl}
        """,
    )
    result = invoke(tmp_path, monkeypatch, "test")
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert any(line.startswith("tests/bad.jsonl:1:1: error: bad duration") for line in lines)
    assert any(line.startswith("tests/bad.jsonl:2:1: error: an event must be") for line in lines)
    assert any(line.startswith("tests/bad.jsonl:3:1: error: timestamp") for line in lines)
    assert any(line.startswith("tests/bin.jsonl:1:1: error: not UTF-8") for line in lines)
    assert "Traceback" not in result.stderr


def test_timestamps_beyond_the_supported_range_are_refused(tmp_path: Path, monkeypatch) -> None:
    write(tmp_path, "journeys/hourly.yaml", AUDIENCE)
    path = events_file(
        tmp_path, [{"type": "go", "customer_id": "c1", "at": "9999-12-30T00:00:00Z"}]
    )
    result = invoke(tmp_path, monkeypatch, "simulate", "--events", str(path))
    assert result.exit_code == 1
    assert "years 1000 to 8999 only" in result.stderr


def test_graph_step_named_like_the_start_node(tmp_path: Path, monkeypatch) -> None:
    write(
        tmp_path,
        "journeys/g.yaml",
        """
        id: g
        trigger: {event: go}
        steps:
          - id: __start
            wait: 1d
          - id: w2
            email: {subject: "x", body: "x"}
        """,
    )
    result = invoke(tmp_path, monkeypatch, "graph", "g")
    assert result.exit_code == 0
    assert '  trigger_ -->|"go"| s___start' in result.stdout
    assert "  s___start --> s_w2" in result.stdout


def test_test_command_names_a_journey_file_given_by_mistake(review: Path, monkeypatch) -> None:
    result = invoke(review, monkeypatch, "test", "journeys/review-request.yaml")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "journeys/review-request.yaml:1:1: error: not a journey test file "
        "(test files are named *.test.yaml)"
    ]
    assert result.stdout.splitlines()[-2:] == [
        "1 test file(s) could not run: see the errors above",
        "0 passed, 0 failed",
    ]


def test_simulate_with_a_directory_for_events_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "journeys").mkdir()
    (tmp_path / "events").mkdir()
    proc = run(tmp_path, "simulate", "--events", "events")
    assert proc.returncode == 2
    err = proc.stderr.decode()
    assert "--events events is a directory, not an events file" in err
    assert "Traceback" not in err and "Errno" not in err


def test_a_test_file_naming_its_journeys_runs_while_another_journey_is_broken(
    tmp_path: Path, monkeypatch
) -> None:
    """One journey mid-rewrite does not stop the tests of the others: a test file that names
    its journeys runs when those load. A test file without `journeys` (every journey), or
    one naming the broken journey, still refuses with the located error."""
    write(tmp_path, "journeys/capped.yaml", CAPPED)
    write(tmp_path, "journeys/broken.yaml", "id: broken\ntrigger: {event: x}\nsteps: []\n")
    case = cap_case("{kind: message, step: two, status: sent}")
    write(tmp_path, "named.test.yaml", "journeys: [capped]\n" + textwrap.dedent(case).lstrip())
    write(tmp_path, "all.test.yaml", case)
    named = invoke(tmp_path, monkeypatch, "test", "named.test.yaml")
    assert named.exit_code == 0, named.output
    assert named.stdout.splitlines()[-1] == "1 passed, 0 failed"
    everything = invoke(tmp_path, monkeypatch, "test", "all.test.yaml")
    assert everything.exit_code == 1
    assert "journeys/broken.yaml:3:8: error:" in everything.stderr
