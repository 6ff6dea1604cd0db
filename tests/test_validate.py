"""`postflow validate`: every mistake a journey author can make, reported as
FILE:LINE:COL (1-based, sorted by file, line, column) with the exit codes of contract section 4:
0 clean (warnings alone included), 1 errors, 2 usage or a missing PATH."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from conftest import write

from postflow.cli import main

REPO = Path(__file__).resolve().parent.parent
SUMMARY = re.compile(
    r"^\d+ journey file\(s\), (\d+ test file\(s\), )?\d+ error\(s\), \d+ warning\(s\)$"
)
PROBLEM = re.compile(
    r"^(?P<file>.+?):(?P<line>\d+):(?P<col>\d+): (?P<sev>error|warning): (?P<msg>.+)$"
)


def journey(root: Path, name: str, text: str) -> Path:
    return write(root, f"journeys/{name}.yaml", text)


def validate(root: Path, monkeypatch: pytest.MonkeyPatch, *args: str) -> Result:
    monkeypatch.chdir(root)
    return CliRunner().invoke(main, ["validate", *args])


def problems(result: Result) -> list[str]:
    """The problem lines of stderr (the summary line excluded); each one must be well-formed."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines and SUMMARY.match(lines[-1]), result.stderr
    for line in lines[:-1]:
        assert PROBLEM.match(line), f"not FILE:LINE:COL: severity: MESSAGE: {line!r}"
    return lines[:-1]


def run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "postflow", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "POSTFLOW_CONFIG"},
    )


CLEAN = """
    id: welcome
    trigger: {event: signup}
    steps:
      - id: pause
        wait: 1d
      - id: hello
        email: {subject: "Hi {{ customer.first_name | default('there') }}", body: "Welcome"}
"""


# ------------------------------------------------------------------ exit codes, end to end


def test_clean_project_exits_0_with_a_summary(tmp_path: Path) -> None:
    journey(tmp_path, "welcome", CLEAN)
    proc = run(tmp_path, "validate", "journeys")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "1 journey file(s), 0 error(s), 0 warning(s)"
    assert proc.stdout == ""


def test_errors_exit_1_without_a_traceback(tmp_path: Path) -> None:
    journey(
        tmp_path,
        "j",
        """
        id: j
        trigger: {event: signup}
        steps:
          - id: a
            goto: nowhere
        """,
    )
    proc = run(tmp_path, "validate", "journeys/j.yaml")
    assert proc.returncode == 1
    assert "journeys/j.yaml:5:11: error: unknown step 'nowhere'" in proc.stderr.splitlines()
    assert "Traceback" not in proc.stderr


def test_missing_path_exits_2_naming_it(tmp_path: Path) -> None:
    journey(tmp_path, "welcome", CLEAN)
    proc = run(tmp_path, "validate", "journeys", "nope.yaml")
    assert proc.returncode == 2
    assert "nope.yaml" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unknown_option_is_a_usage_error(tmp_path: Path) -> None:
    proc = run(tmp_path, "validate", "--bogus")
    assert proc.returncode == 2
    assert "No such option" in proc.stderr


def test_empty_journeys_directory_is_valid(tmp_path: Path) -> None:
    (tmp_path / "journeys").mkdir()
    proc = run(tmp_path, "validate")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "0 journey file(s), 0 error(s), 0 warning(s)"


def test_default_path_is_the_journeys_directory(tmp_path: Path, monkeypatch) -> None:
    journey(tmp_path, "j", "id: j\ntrigger: {event: x}\nstpes: []\n")
    result = validate(tmp_path, monkeypatch)
    assert result.exit_code == 1
    [line] = problems(result)
    assert line.endswith("journeys/j.yaml:3:1: error: unknown key 'stpes' (did you mean 'steps'?)")


def test_bundled_starter_journeys_validate_clean() -> None:
    proc = run(REPO, "validate")
    assert proc.returncode == 0, proc.stderr
    found = re.fullmatch(
        r"(\d+) journey file\(s\), 0 error\(s\), 0 warning\(s\)", proc.stderr.strip()
    )
    assert found, proc.stderr
    assert int(found.group(1)) >= 3  # order-confirmation, replenishment-reminder, review-request


# ----------------------------------------------------------------------------- schema


def test_unknown_key_with_did_you_mean(tmp_path: Path, monkeypatch) -> None:
    journey(
        tmp_path,
        "j",
        """
        id: j
        trigger: {event: signup}
        stpes:
          - id: a
            wait: 1h
        """,
    )
    result = validate(tmp_path, monkeypatch, "journeys")
    assert result.exit_code == 1
    # The typo explains the missing `steps`: one problem, not two.
    assert problems(result) == [
        "journeys/j.yaml:3:1: error: unknown key 'stpes' (did you mean 'steps'?)"
    ]


def test_unknown_key_inside_a_step_body(tmp_path: Path, monkeypatch) -> None:
    journey(
        tmp_path,
        "j",
        """
        id: j
        trigger: {event: signup}
        steps:
          - id: a
            email:
              subjet: "Hi"
              body: "x"
        """,
    )
    result = validate(tmp_path, monkeypatch, "journeys")
    assert result.exit_code == 1
    assert problems(result) == [
        "journeys/j.yaml:6:7: error: unknown key 'subjet' (did you mean 'subject'?)"
    ]


def test_missing_required_keys_are_located_at_the_mapping(tmp_path: Path, monkeypatch) -> None:
    journey(
        tmp_path,
        "j",
        """
        trigger: {event: signup}
        steps:
          - wait: 1h
          - id: b
            wait_for: {event: review}
        """,
    )
    result = validate(tmp_path, monkeypatch, "journeys")
    assert result.exit_code == 1
    assert problems(result) == [
        "journeys/j.yaml:1:1: error: missing required key 'id'",
        "journeys/j.yaml:3:5: error: missing required key 'id'",
        "journeys/j.yaml:5:15: error: missing required key 'timeout'",
    ]


def test_wrong_types_are_located_at_the_value(tmp_path: Path, monkeypatch) -> None:
    journey(
        tmp_path,
        "j",
        """
        id: j
        trigger: {event: 5}
        entry: {reentry: sometimes}
        steps: {id: a}
        """,
    )
    result = validate(tmp_path, monkeypatch, "journeys")
    assert result.exit_code == 1
    assert problems(result) == [
        "journeys/j.yaml:2:18: error: 'event' must be a string, not an integer",
        "journeys/j.yaml:3:18: error: reentry must be one of never, after_exit, always "
        "(got 'sometimes')",
        "journeys/j.yaml:4:8: error: 'steps' must be a list, not a mapping",
    ]


def test_unquoted_time_of_day_gets_a_quoting_hint(tmp_path: Path, monkeypatch) -> None:
    journey(
        tmp_path,
        "j",
        """
        id: j
        trigger: {event: signup}
        settings:
          quiet_hours: {start: 21:00, end: "09:00"}
        steps:
          - id: a
            wait: 1h
        """,
    )
    result = validate(tmp_path, monkeypatch, "journeys")
    assert result.exit_code == 1
    [line] = problems(result)
    assert line.startswith("journeys/j.yaml:4:24: error: ")
    assert 'write "21:00"' in line


def test_malformed_yaml_is_located(tmp_path: Path, monkeypatch) -> None:
    write(tmp_path, "journeys/j.yaml", "id: j\ntrigger: {event: x\nsteps: []\n")
    write(tmp_path, "journeys/k.yaml", "id: k\ntrigger:\n  event: x\n   if: y\n")
    result = validate(tmp_path, monkeypatch, "journeys")
    assert result.exit_code == 1
    assert problems(result) == [
        "journeys/j.yaml:3:6: error: YAML syntax error: expected ',' or '}', but got ':' "
        "(while parsing a flow mapping at line 2)",
        "journeys/k.yaml:4:6: error: YAML syntax error: mapping values are not allowed here; "
        "quote a value that contains ': '",
    ]


def test_empty_file_is_an_error(tmp_path: Path, monkeypatch) -> None:
    write(tmp_path, "journeys/j.yaml", "# nothing yet\n")
    result = validate(tmp_path, monkeypatch, "journeys")
    assert result.exit_code == 1
    assert problems(result) == ["journeys/j.yaml:1:1: error: empty file: expected a mapping"]


def test_test_files_next_to_journeys_are_not_journeys(tmp_path: Path, monkeypatch) -> None:
    journey(tmp_path, "welcome", CLEAN)
    write(tmp_path, "journeys/welcome.test.yaml", "cases: []\n")
    result = validate(tmp_path, monkeypatch, "journeys")
    assert result.exit_code == 0, result.stderr
    assert problems(result) == []
    assert "1 journey file(s)" in result.stderr


# ------------------------------------------------------------------------- step graph


def test_duplicate_step_id_is_located_at_the_later_occurrence(tmp_path, monkeypatch) -> None:
    journey(
        tmp_path,
        "j",
        """
        id: j
        trigger: {event: signup}
        steps:
          - id: hello
            email: {subject: "Hi", body: "x"}
          - id: pause
            wait: 1d
          - id: hello
            email: {subject: "Again", body: "x"}
        """,
    )
    result = validate(tmp_path, monkeypatch, "journeys")
    assert result.exit_code == 1
    assert "journeys/j.yaml:8:9: error: duplicate step id 'hello' (first at line 4)" in (
        problems(result)
    )
    assert all(":4:" not in p for p in problems(result))


REFS = {
    "next": (
        """
        - id: ask
          email: {subject: "Hi", body: "x"}
          next: thanx
        - id: thanks
          email: {subject: "Thanks", body: "x"}
        """,
        "6:11",
        "thanx",
        "thanks",
    ),
    "goto": (
        """
        - id: ask
          goto: thanx
        - id: thanks
          email: {subject: "Thanks", body: "x"}
        """,
        "5:11",
        "thanx",
        "thanks",
    ),
    "branch goto": (
        """
        - id: ask
          branch:
            - {if: "customer.vip", goto: thanx}
            - goto: end
        - id: thanks
          email: {subject: "Thanks", body: "x"}
        """,
        "6:36",
        "thanx",
        "thanks",
    ),
    "split goto": (
        """
        - id: ask
          split:
            - {weight: 1, goto: thanks}
            - weight: 1
              goto: thanx
        - id: thanks
          email: {subject: "Thanks", body: "x"}
        """,
        "8:15",
        "thanx",
        "thanks",
    ),
    "on_timeout": (
        """
        - id: ask
          wait_for: {event: review, timeout: 7d, on_timeout: thanx}
        - id: thanks
          email: {subject: "Thanks", body: "x"}
        """,
        "5:56",
        "thanx",
        "thanks",
    ),
}


@pytest.mark.parametrize("where", list(REFS))
def test_unknown_step_reference_is_located_at_the_value(tmp_path, monkeypatch, where) -> None:
    steps, loc, bad, good = REFS[where]
    body = textwrap.indent(textwrap.dedent(steps).lstrip("\n"), "  ")
    write(tmp_path, "journeys/j.yaml", f"id: j\ntrigger: {{event: signup}}\nsteps:\n{body}")
    result = validate(tmp_path, monkeypatch, "journeys")
    assert result.exit_code == 1
    assert [p for p in problems(result) if ": error: " in p] == [
        f"journeys/j.yaml:{loc}: error: unknown step '{bad}' (did you mean '{good}'?)"
    ]


def test_unknown_step_without_a_close_match_has_no_suggestion(tmp_path, monkeypatch) -> None:
    journey(
        tmp_path,
        "j",
        """
        id: j
        trigger: {event: signup}
        steps:
          - id: ask
            goto: zzz
        """,
    )
    result = validate(tmp_path, monkeypatch, "journeys")
    assert problems(result) == ["journeys/j.yaml:5:11: error: unknown step 'zzz'"]


def test_unknown_next_on_a_goto_step_is_reported(tmp_path, monkeypatch) -> None:
    journey(
        tmp_path,
        "j",
        """
        id: j
        trigger: {event: signup}
        steps:
          - id: ask
            goto: thanks
            next: thanx
          - id: thanks
            email: {subject: "Thanks", body: "x"}
        """,
    )
    result = validate(tmp_path, monkeypatch, "journeys")
    assert result.exit_code == 1
    assert "journeys/j.yaml:6:11: error: unknown step 'thanx' (did you mean 'thanks'?)" in (
        problems(result)
    )


def test_end_is_a_reserved_step_id(tmp_path: Path, monkeypatch) -> None:
    journey(
        tmp_path,
        "j",
        """
        id: j
        trigger: {event: signup}
        steps:
          - id: hello
            email: {subject: "Hi", body: "x"}
          - id: end
            wait: 1h
        """,
    )
    result = validate(tmp_path, monkeypatch, "journeys")
    assert result.exit_code == 1
    assert problems(result) == [
        "journeys/j.yaml:6:9: error: 'end' is a reserved step id (it means: complete now)"
    ]


def test_goto_end_is_a_valid_reference(tmp_path: Path, monkeypatch) -> None:
    journey(
        tmp_path,
        "j",
        """
        id: j
        trigger: {event: signup}
        steps:
          - id: hello
            branch:
              - {if: "customer.vip", goto: end}
          - id: bye
            email: {subject: "Bye", body: "x"}
            next: end
        """,
    )
    result = validate(tmp_path, monkeypatch, "journeys")
    assert result.exit_code == 0, result.stderr
    assert problems(result) == []


def test_unreachable_step_is_only_a_warning(tmp_path: Path, monkeypatch) -> None:
    journey(
        tmp_path,
        "j",
        """
        id: j
        trigger: {event: signup}
        steps:
          - id: hello
            email: {subject: "Hi", body: "x"}
            next: end
          - id: orphan
            email: {subject: "Never", body: "x"}
        """,
    )
    result = validate(tmp_path, monkeypatch, "journeys")
    assert result.exit_code == 0, result.stderr
    assert problems(result) == ["journeys/j.yaml:7:9: warning: step 'orphan' is unreachable"]
    assert result.stderr.splitlines()[-1] == "1 journey file(s), 0 error(s), 1 warning(s)"


LOOP = """
id: j
trigger: {{event: signup}}
steps:
  - id: intro
    email: {{subject: "Hi", body: "x"}}
  - id: again
    email: {{subject: "Again", body: "x"}}
  - id: pause
    wait: {pause}
  - id: back
    goto: again
"""


@pytest.mark.parametrize(
    "pause", ["0s", "PT0S", "{for: 0s}", '{for: 0s, at: "10:00"}', '{until: "now"}']
)
def test_loop_without_time_passing_is_an_error(tmp_path, monkeypatch, pause: str) -> None:
    write(tmp_path, "journeys/j.yaml", LOOP.format(pause=pause))
    result = validate(tmp_path, monkeypatch, "journeys")
    assert result.exit_code == 1
    # Located at the first back edge of the walk from the first step: back's goto.
    assert problems(result) == [
        "journeys/j.yaml:11:11: error: steps can loop without a positive wait or a wait_for: "
        "again -> pause -> back -> again"
    ]


@pytest.mark.parametrize("pause", ["1h", "{for: 1m}", '{for: 1d, at: "10:00"}'])
def test_positive_wait_breaks_a_loop(tmp_path, monkeypatch, pause: str) -> None:
    write(tmp_path, "journeys/j.yaml", LOOP.format(pause=pause))
    result = validate(tmp_path, monkeypatch, "journeys")
    assert result.exit_code == 0, result.stderr
    assert problems(result) == []


@pytest.mark.parametrize(("timeout", "breaks"), [("1h", True), ("0s", False)])
def test_wait_for_breaks_a_loop_when_its_timeout_is_positive(
    tmp_path: Path, monkeypatch, timeout: str, breaks: bool
) -> None:
    journey(
        tmp_path,
        "j",
        f"""
        id: j
        trigger: {{event: signup}}
        steps:
          - id: nudge
            email: {{subject: "Hi", body: "x"}}
          - id: listen
            wait_for: {{event: click, timeout: {timeout}, on_timeout: nudge}}
            next: nudge
        """,
    )
    result = validate(tmp_path, monkeypatch, "journeys")
    if breaks:
        assert result.exit_code == 0, result.stderr
        assert problems(result) == []
    else:  # a 0s timeout fires at the same instant: the loop could spin forever
        assert result.exit_code == 1
        assert "loop without a positive wait" in problems(result)[0]


def test_self_loop_through_next_is_an_error(tmp_path: Path, monkeypatch) -> None:
    journey(
        tmp_path,
        "j",
        """
        id: j
        trigger: {event: signup}
        steps:
          - id: spam
            email: {subject: "Hi", body: "x"}
            next: spam
        """,
    )
    result = validate(tmp_path, monkeypatch, "journeys")
    assert result.exit_code == 1
    assert problems(result) == [
        "journeys/j.yaml:6:11: error: steps can loop without a positive wait or a wait_for: "
        "spam -> spam"
    ]


def test_loop_via_the_implicit_flow_is_located_at_the_step_that_flows(
    tmp_path: Path, monkeypatch
) -> None:
    # Walk from `route`: its branch reaches `c` first (file order), then c -> d -> b, and b
    # flows on (implicitly) to `c`, which is still on the stack: the back edge is b's flow.
    journey(
        tmp_path,
        "j",
        """
        id: j
        trigger: {event: signup}
        steps:
          - id: route
            branch:
              - {if: "customer.vip", goto: c}
          - id: b
            email: {subject: "b", body: "x"}
          - id: c
            email: {subject: "c", body: "x"}
          - id: d
            goto: b
        """,
    )
    result = validate(tmp_path, monkeypatch, "journeys")
    assert result.exit_code == 1
    assert problems(result) == [
        "journeys/j.yaml:7:9: error: steps can loop without a positive wait or a wait_for: "
        "c -> d -> b -> c"
    ]


def test_loop_after_a_wait_is_still_found(tmp_path: Path, monkeypatch) -> None:
    journey(
        tmp_path,
        "j",
        """
        id: j
        trigger: {event: signup}
        steps:
          - id: first
            wait: 1d
          - id: ping
            webhook: {url: "https://example.com/hook"}
          - id: pong
            set: {vars.n: "1"}
            next: ping
        """,
    )
    result = validate(tmp_path, monkeypatch, "journeys")
    assert result.exit_code == 1
    assert problems(result) == [
        "journeys/j.yaml:10:11: error: steps can loop without a positive wait or a wait_for: "
        "ping -> pong -> ping"
    ]


# ---------------------------------------------- durations, times, zones, cron, quiet hours


@pytest.mark.parametrize(
    ("snippet", "loc", "message"),
    [
        ("wait: 3x", "5:11", "bad duration '3x'"),
        ("wait: P1M", "5:11", "bad duration 'P1M'"),
        ("wait: P1Y", "5:11", "bad duration 'P1Y'"),
        ("wait: {for: 3x}", "5:17", "bad duration '3x'"),
        ("wait_for: {event: review, timeout: 1.5h}", "5:40", "bad duration '1.5h'"),
        ('wait: {for: 1d, at: "25:00"}', "5:25", "bad time of day '25:00'"),
    ],
)
def test_bad_duration_or_time_of_day_in_a_step(tmp_path, monkeypatch, snippet, loc, message):
    write(
        tmp_path,
        "journeys/j.yaml",
        f"id: j\ntrigger: {{event: signup}}\nsteps:\n  - id: a\n    {snippet}\n",
    )
    result = validate(tmp_path, monkeypatch, "journeys")
    assert result.exit_code == 1
    [line] = problems(result)
    assert line.startswith(f"journeys/j.yaml:{loc}: error: {message}")


def test_bad_duration_in_entry_cooldown_and_goal_within(tmp_path, monkeypatch) -> None:
    journey(
        tmp_path,
        "j",
        """
        id: j
        trigger: {event: signup}
        entry: {cooldown: P1M}
        goal: {event: order_placed, within: 2months}
        steps:
          - id: a
            wait: 1h
        """,
    )
    result = validate(tmp_path, monkeypatch, "journeys")
    assert result.exit_code == 1
    found = problems(result)
    assert len(found) == 2
    assert found[0].startswith("journeys/j.yaml:3:19: error: bad duration 'P1M'")
    assert found[1].startswith("journeys/j.yaml:4:37: error: bad duration '2months'")


def test_bad_time_zone_in_trigger(tmp_path: Path, monkeypatch) -> None:
    journey(
        tmp_path,
        "j",
        """
        id: j
        trigger:
          schedule: "0 9 * * *"
          timezone: Mars/Olympus
          audience: "customer.orders_count >= 2"
        steps:
          - id: a
            wait: 1h
        """,
    )
    result = validate(tmp_path, monkeypatch, "journeys")
    assert result.exit_code == 1
    assert problems(result) == [
        "journeys/j.yaml:4:13: error: unknown time zone 'Mars/Olympus' "
        "(use an IANA name such as America/New_York)"
    ]


@pytest.mark.parametrize(
    ("cron", "message"),
    [
        ("61 * * * *", "bad cron '61 * * * *'"),
        ("0 9 * * * *", "bad cron '0 9 * * * *': needs exactly 5 fields"),
        ("0 9 * *", "bad cron '0 9 * *'"),
        ("@daily", "bad cron '@daily'"),
    ],
)
def test_bad_cron(tmp_path: Path, monkeypatch, cron: str, message: str) -> None:
    journey(
        tmp_path,
        "j",
        f"""
        id: j
        trigger:
          schedule: "{cron}"
          audience: "true"
        steps:
          - id: a
            wait: 1h
        """,
    )
    result = validate(tmp_path, monkeypatch, "journeys")
    assert result.exit_code == 1
    [line] = problems(result)
    assert line.startswith(f"journeys/j.yaml:3:13: error: {message}")


def test_vixie_cron_forms_are_accepted(tmp_path: Path, monkeypatch) -> None:
    journey(
        tmp_path,
        "j",
        """
        id: j
        trigger:
          schedule: "*/15 9-17 1,15 * 0,7"
          audience: "true"
        steps:
          - id: a
            wait: 1h
        """,
    )
    result = validate(tmp_path, monkeypatch, "journeys")
    assert result.exit_code == 0, result.stderr


def test_quiet_hours_start_equal_to_end(tmp_path: Path, monkeypatch) -> None:
    journey(
        tmp_path,
        "j",
        """
        id: j
        trigger: {event: signup}
        settings:
          quiet_hours: {start: "21:00", end: "21:00", channels: [sms]}
        steps:
          - id: a
            wait: 1h
        """,
    )
    result = validate(tmp_path, monkeypatch, "journeys")
    assert result.exit_code == 1
    assert problems(result) == [
        "journeys/j.yaml:4:38: error: quiet hours start and end are equal "
        "(an empty or full-day window)"
    ]


# --------------------------------------------------------------- expressions and templates


def test_expression_syntax_error_is_located_at_the_value(tmp_path, monkeypatch) -> None:
    journey(
        tmp_path,
        "j",
        """
        id: j
        trigger:
          event: order_placed
          if: "event.data.total >"
        steps:
          - id: a
            set: {vars.x: "1 +* 2"}
        """,
    )
    result = validate(tmp_path, monkeypatch, "journeys")
    assert result.exit_code == 1
    found = problems(result)
    assert [p.split(": error: ")[0] for p in found] == [
        "journeys/j.yaml:4:7",
        "journeys/j.yaml:7:19",
    ]
    assert "expression syntax error: the expression ends too early" in found[0]


def test_template_syntax_error_is_located_at_the_value(tmp_path, monkeypatch) -> None:
    journey(
        tmp_path,
        "j",
        """
        id: j
        trigger: {event: signup}
        steps:
          - id: a
            email: {subject: "{{ customer.name ", body: "x"}
          - id: b
            sms: {body: "Hi {% if %}"}
        """,
    )
    result = validate(tmp_path, monkeypatch, "journeys")
    assert result.exit_code == 1
    found = problems(result)
    assert [p.split(": error: ")[0] for p in found] == [
        "journeys/j.yaml:5:22",
        "journeys/j.yaml:7:17",
    ]
    assert "end of print statement" in found[0]


def test_template_error_in_a_block_scalar_points_at_its_line(tmp_path, monkeypatch) -> None:
    journey(
        tmp_path,
        "j",
        """
        id: j
        trigger: {event: signup}
        steps:
          - id: a
            email:
              subject: "Hi"
              body: |
                Hello there,
                {{ oops( }}
        """,
    )
    result = validate(tmp_path, monkeypatch, "journeys")
    assert result.exit_code == 1
    [line] = problems(result)
    file, line_no, _col = line.split(": error: ")[0].split(":")
    assert file == "journeys/j.yaml"
    # Either the value itself (the '|' on line 7) or the exact line of the mistake (line 9);
    # line 8 ("Hello there,") is neither.
    assert int(line_no) in {7, 9}


def test_missing_template_file_is_named(tmp_path: Path, monkeypatch) -> None:
    journey(
        tmp_path,
        "j",
        """
        id: j
        trigger: {event: signup}
        steps:
          - id: a
            email: {subject: "Hi", template: nope}
        """,
    )
    (tmp_path / "templates").mkdir()
    result = validate(tmp_path, monkeypatch, "journeys")
    assert result.exit_code == 1
    [line] = problems(result)
    assert line.startswith("journeys/j.yaml:5:38: error: missing template file ")
    assert line.endswith("templates/nope.html")


def test_sms_template_reads_the_txt_file(tmp_path: Path, monkeypatch) -> None:
    journey(
        tmp_path,
        "j",
        """
        id: j
        trigger: {event: signup}
        steps:
          - id: a
            sms: {template: nudge}
        """,
    )
    write(tmp_path, "templates/nudge.html", "<p>not for sms</p>\n")
    result = validate(tmp_path, monkeypatch, "journeys")
    assert result.exit_code == 1
    [line] = problems(result)
    assert line.startswith("journeys/j.yaml:5:21: error: missing template file ")
    assert line.endswith("templates/nudge.txt")
    write(tmp_path, "templates/nudge.txt", "Hi {{ customer.first_name | default('') }}\n")
    assert validate(tmp_path, monkeypatch, "journeys").exit_code == 0


def test_syntax_error_inside_a_template_file_is_located_in_that_file(
    tmp_path: Path, monkeypatch
) -> None:
    journey(
        tmp_path,
        "j",
        """
        id: j
        trigger: {event: signup}
        steps:
          - id: a
            email: {subject: "Hi", template: receipt}
        """,
    )
    write(tmp_path, "templates/receipt.html", "<p>Thanks</p>\n<p>{{ order.total </p>\n")
    result = validate(tmp_path, monkeypatch, "journeys")
    assert result.exit_code == 1
    [line] = problems(result)
    assert re.search(r"templates/receipt\.html:2:\d+: error: ", line), line


def test_customer_profile_keys_are_open(tmp_path: Path, monkeypatch) -> None:
    journey(
        tmp_path,
        "j",
        """
        id: j
        trigger:
          event: signup
          if: "customer.anything > 3 and customer.made_up.deeper == 'x'"
        entry: {key: "customer.loyalty_tier"}
        exit:
          - {event: unsubscribed, if: "customer.whatever"}
        steps:
          - id: a
            set: {customer.tier: "customer.anything_else ~ 'x'", vars.n: "customer.n + 1"}
          - id: b
            email: {subject: "Hi {{ customer.nickname }}", body: "{{ customer.zzz.yyy }}"}
        """,
    )
    journey(
        tmp_path,
        "k",
        """
        id: k
        trigger:
          schedule: "0 9 * * *"
          audience: "customer.never_defined_anywhere >= 2"
        steps:
          - id: a
            wait: 1h
        """,
    )
    result = validate(tmp_path, monkeypatch, "journeys")
    assert result.exit_code == 0, result.stderr
    assert problems(result) == []


def test_every_compile_problem_of_a_file_is_reported_at_once(tmp_path, monkeypatch) -> None:
    journey(
        tmp_path,
        "j",
        """
        id: j
        trigger: {event: x, if: "event.data.total >"}
        settings:
          quiet_hours: {start: "21:00", end: "21:00"}
        steps:
          - id: c
            email: {subject: "{{ customer.name ", body: "x"}
          - id: d
            email: {subject: "s", template: nope}
          - id: e
            goto: f
        """,
    )
    result = validate(tmp_path, monkeypatch, "journeys")
    assert result.exit_code == 1
    assert [p.split(": ")[0] for p in problems(result)] == [
        "journeys/j.yaml:2:25",
        "journeys/j.yaml:4:38",
        "journeys/j.yaml:7:22",
        "journeys/j.yaml:9:37",
        "journeys/j.yaml:11:11",
    ]
    assert result.stderr.splitlines()[-1] == "1 journey file(s), 5 error(s), 0 warning(s)"


# ----------------------------------------------------------------------- across files


def test_journey_id_repeated_across_files_is_an_error_in_the_later_file(
    tmp_path: Path, monkeypatch
) -> None:
    journey(tmp_path, "a-first", CLEAN)
    journey(tmp_path, "b-second", CLEAN)
    # Given in reverse order on the command line: still "later by path order".
    result = validate(tmp_path, monkeypatch, "journeys/b-second.yaml", "journeys/a-first.yaml")
    assert result.exit_code == 1
    assert problems(result) == [
        "journeys/b-second.yaml:1:5: error: journey id 'welcome' is already used by "
        "journeys/a-first.yaml"
    ]


def test_problems_are_sorted_by_file_line_and_column(tmp_path: Path, monkeypatch) -> None:
    journey(
        tmp_path,
        "b",
        """
        id: b
        trigger: {event: signup}
        steps:
          - id: s1
            goto: nowhere
          - id: s2
            wait: 1h
          - id: s3
            wait: 1h
          - id: s4
            goto: zzz
          - id: s1
            branch:
              - {if: "customer.vip", goto: yyy}
        """,
    )
    journey(
        tmp_path,
        "a",
        """
        id: a
        trigger: {event: signup}
        steps:
          - id: x
            wait: 3x
        """,
    )
    result = validate(tmp_path, monkeypatch, "journeys/b.yaml", "journeys/a.yaml")
    assert result.exit_code == 1
    assert [p.split(": ")[0] for p in problems(result)] == [
        "journeys/a.yaml:5:11",  # bad duration
        "journeys/b.yaml:5:11",  # unknown step 'nowhere'
        "journeys/b.yaml:6:9",  # s2 unreachable (warning)
        "journeys/b.yaml:8:9",  # s3 unreachable (warning)
        "journeys/b.yaml:10:9",  # s4 unreachable (warning)
        "journeys/b.yaml:11:11",  # unknown step 'zzz'
        "journeys/b.yaml:12:9",  # duplicate step id
        "journeys/b.yaml:14:36",  # unknown step 'yyy'
    ]


def test_directories_are_searched_recursively(tmp_path: Path, monkeypatch) -> None:
    journey(tmp_path, "welcome", CLEAN)
    write(tmp_path, "journeys/nested/deeper.yml", "id: deeper\ntrigger: {event: x}\nsteps: []\n")
    result = validate(tmp_path, monkeypatch, "journeys")
    assert result.exit_code == 1
    assert problems(result) == ["journeys/nested/deeper.yml:3:8: error: 'steps' must not be empty"]
    assert "2 journey file(s)" in result.stderr


def test_validate_accepts_journeys_option(tmp_path: Path, monkeypatch) -> None:
    write(tmp_path, "flows/j.yaml", "id: j\ntrigger: {event: x}\nstpes: []\n")
    result = validate(tmp_path, monkeypatch, "--journeys", "flows")
    assert result.exit_code == 1
    assert "flows/j.yaml:3:1: error: unknown key 'stpes' (did you mean 'steps'?)" in (result.stderr)


# ----------------------------------------------------------------------- configuration


def test_configured_journeys_directory_is_the_default_path(tmp_path, monkeypatch) -> None:
    write(tmp_path, "flows/j.yaml", "id: j\ntrigger: {event: x}\nstpes: []\n")
    write(tmp_path, "postflow.yaml", "journeys: flows\n")
    result = validate(tmp_path, monkeypatch)
    assert result.exit_code == 1
    [line] = problems(result)
    assert line.endswith("flows/j.yaml:3:1: error: unknown key 'stpes' (did you mean 'steps'?)")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "timezone: UTC\njourneyz: journeys\n",
            "cfg.yaml:2:1: error: unknown key 'journeyz' (did you mean 'journeys'?)",
        ),
        (
            "timezone: Mars/Base\n",
            "cfg.yaml:1:11: error: unknown time zone 'Mars/Base' "
            "(use an IANA name such as America/New_York)",
        ),
    ],
)
def test_bad_config_is_a_located_error(tmp_path, monkeypatch, text: str, expected: str) -> None:
    journey(tmp_path, "welcome", CLEAN)
    write(tmp_path, "cfg.yaml", text)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["validate", "--config", "cfg.yaml"])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [expected]


def test_independent_mistakes_are_all_reported_even_after_a_schema_error(
    tmp_path: Path, monkeypatch
) -> None:
    journey(
        tmp_path,
        "j",
        """
        id: j
        trigger: {event: go}
        steps:
          - id: w
            wait: 3x
          - id: e
            emial: {subject: hi}
          - id: f
            email: {subject: "{{ customer.name ", body: hi}
            next: nowhere
        """,
    )
    result = validate(tmp_path, monkeypatch, "journeys")
    assert result.exit_code == 1
    found = [p.split(": error: ") for p in problems(result)]
    assert [(where, message.split(" (")[0].split(":")[0]) for where, message in found] == [
        ("journeys/j.yaml:5:11", "bad duration '3x'"),  # the schema's, not twice
        ("journeys/j.yaml:7:5", "unknown key 'emial'"),
        ("journeys/j.yaml:9:22", "template syntax error"),
        ("journeys/j.yaml:10:11", "unknown step 'nowhere'"),
    ]


def test_a_test_file_named_explicitly_is_checked_as_a_test_file(
    tmp_path: Path, monkeypatch
) -> None:
    journey(tmp_path, "j", CLEAN)
    write(tmp_path, "journeys/j.test.yaml", "cases:\n  - {name: x, events: [], expct: []}\n")
    result = validate(tmp_path, monkeypatch, "journeys/j.test.yaml", "journeys/j.yaml")
    assert result.exit_code == 1
    assert problems(result) == [
        "journeys/j.test.yaml:2:27: error: unknown key 'expct' (did you mean 'expect'?)"
    ]
    assert result.stderr.splitlines()[-1] == (
        "1 journey file(s), 1 test file(s), 1 error(s), 0 warning(s)"
    )


def test_unknown_names_warn_and_braces_in_expressions_are_errors(
    tmp_path: Path, monkeypatch
) -> None:
    write(tmp_path, "templates/t.txt", "Hi {{ customer.first_name }}\n{{ custmer.x }}\n")
    journey(
        tmp_path,
        "j",
        """
        id: j
        trigger: {event: go, if: "evnt.data.total > 10"}
        entry: {key: "{{ trigger.data.order_id }}"}
        steps:
          - id: e
            email:
              subject: "Hi {{ customer.first_name }} {{ data.code }}"
              body: |
                Hello
                {{ days_snce(now) }}
              data: {code: "{{ trigger.data.code }}"}
          - id: s
            sms: {template: t}
        """,
    )
    result = validate(tmp_path, monkeypatch, "journeys")
    assert result.exit_code == 1  # the braces are an error; unknown names only warn
    assert problems(result) == [
        "journeys/j.yaml:2:26: warning: unknown name 'evnt' (did you mean 'event'?): "
        "it is undefined when the journey runs",
        "journeys/j.yaml:3:14: error: conditions, keys and values are expressions: "
        "write them without {{ }}",
        "journeys/j.yaml:10:13: warning: unknown name 'days_snce' (did you mean 'days_since'?): "
        "it is undefined when the journey runs",
        "templates/t.txt:2:4: warning: unknown name 'custmer' (did you mean 'customer'?): "
        "it is undefined when the journey runs",
    ]


def test_validate_checks_a_test_file_as_deeply_as_test_would(tmp_path: Path, monkeypatch) -> None:
    journey(tmp_path, "j", CLEAN)
    write(
        tmp_path,
        "journeys/j.test.yaml",
        """
        journeys: [welcom]
        cases:
          - name: relative without start
            events: [{type: signup, customer_id: c1, at: "+1d"}]
          - name: missing events file
            start: "2027-01-01T00:00:00Z"
            events: nowhere.jsonl
        """,
    )
    result = validate(tmp_path, monkeypatch, "journeys/j.test.yaml")
    assert result.exit_code == 1
    found = problems(result)
    assert [p.split(": error: ")[0] for p in found] == [
        "journeys/j.test.yaml:1:12",
        "journeys/j.test.yaml:4:50",
        "journeys/j.test.yaml:7:13",
    ]
    assert "unknown journey 'welcom'" in found[0]
    assert "needs the case's `start`" in found[1]
    assert "events file not found" in found[2]


def test_a_journey_of_thousands_of_steps_is_checked_without_a_recursion_limit(
    tmp_path: Path,
) -> None:
    steps = "".join(f"  - id: s{i}\n    set: {{vars.x: '1'}}\n" for i in range(3000))
    (tmp_path / "journeys").mkdir()
    (tmp_path / "journeys" / "long.yaml").write_text(
        "id: long\ntrigger: {event: go}\nsteps:\n" + steps + "  - id: back\n    goto: s0\n"
    )
    proc = run(tmp_path, "validate")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    (first, *_) = proc.stderr.splitlines()
    assert first.startswith("journeys/long.yaml:6005:11: error: steps can loop"), first


def test_jinja_loop_variable_inside_a_for_is_known(tmp_path: Path, monkeypatch) -> None:
    """``loop.index`` renders inside ``{% for %}``: no warning there; outside one, ``loop`` is
    just another unknown name."""
    write(
        tmp_path,
        "templates/items.txt",
        "{% for i in trigger.data['items'] %}{{ loop.index }}. {{ i.name }}\n{% endfor %}",
    )
    write(tmp_path, "templates/stray.txt", "{{ loop.index }}\n")
    journey(
        tmp_path,
        "j",
        """
        id: j
        trigger: {event: go}
        steps:
          - id: a
            sms: {template: items}
          - id: b
            sms: {template: stray}
        """,
    )
    result = validate(tmp_path, monkeypatch, "journeys")
    assert problems(result) == [
        "templates/stray.txt:1:4: warning: unknown name 'loop' (known: customer, data, event, "
        "instance, last_event, now, trigger, vars): it is undefined when the journey runs",
    ]
