"""Hostile events files and test files, as a user meets them: keys written twice, byte order
marks, files saved as UTF-16 or Latin-1, NUL characters, a bad shared `customer.timezone` in
a test case. Each gets FILE:LINE:COL (or the field), exit 1, nothing applied, no traceback."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from conftest import write
from hypothesis import given, settings
from hypothesis import strategies as st

from postflow import events
from postflow.cli import main
from postflow.problems import Problem

WELCOME = """
    id: welcome
    trigger: {event: signup}
    steps:
      - id: hello
        email: {subject: "Hi {{ customer.first_name | default('there') }}", body: "Welcome"}
"""
GOOD = '{"type": "signup", "customer_id": "c1", "at": "2027-01-01T00:00:00Z"}'


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    write(tmp_path, "journeys/welcome.yaml", WELCOME)
    return tmp_path


def invoke(root: Path, monkeypatch: pytest.MonkeyPatch, *args: str) -> Result:
    monkeypatch.chdir(root)
    return CliRunner().invoke(main, list(args))


def simulate_bytes(root: Path, monkeypatch: pytest.MonkeyPatch, raw: bytes) -> Result:
    (root / "events.jsonl").write_bytes(raw)
    return invoke(root, monkeypatch, "simulate", "--events", "events.jsonl")


def rejected(result: Result) -> list[str]:
    """The problem lines of a run that must fail with exit 1, print nothing on stdout and no
    traceback."""
    assert result.exit_code == 1, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    return result.stderr.splitlines()


def kinds(result: Result) -> list[str]:
    assert result.exit_code == 0, result.stderr
    return [json.loads(line)["kind"] for line in result.stdout.splitlines()]


# ---------------------------------------------------------------------------- duplicate keys


DUPLICATES = {  # line 2 of the file, then the expected `FILE:LINE:COL: error: ...`
    "top level": (
        '{"type": "signup", "customer_id": "c1", "type": "other", "at": "2027-01-01T00:00:00Z"}',
        "events.jsonl:2:41: error: duplicate key 'type' (first at column 2)",
    ),
    "in data": (
        '{"type": "signup", "customer_id": "c1", "at": "2027-01-01T00:00:00Z", '
        '"data": {"total": 1, "total": 2}}',
        "events.jsonl:2:92: error: duplicate key 'data.total' (first at column 80)",
    ),
    "in customer, spelled with an escape": (
        '{"type": "signup", "customer_id": "c1", "at": "2027-01-01T00:00:00Z", '
        '"customer": {"email": "a@example.com", "\\u0065mail": "b@example.com"}}',
        "events.jsonl:2:110: error: duplicate key 'customer.email' (first at column 84)",
    ),
    "in a list item, with spaces before the colon": (
        '{"type" : "signup", "customer_id" : "c1", "at" : "2027-01-01T00:00:00Z", '
        '"data" : {"items" : [{"sku" : "A"}, {"sku" : "B", "sku" : "C"}]}}',
        "events.jsonl:2:124: error: duplicate key 'data.items.1.sku' (first at column 111)",
    ),
}


@pytest.mark.parametrize("case", list(DUPLICATES))
def test_a_key_written_twice_is_an_error_at_the_second_one(shop, monkeypatch, case) -> None:
    line, expected = DUPLICATES[case]
    result = simulate_bytes(shop, monkeypatch, f"{GOOD}\n{line}\n".encode())
    assert rejected(result) == [expected]


def test_every_line_with_a_repeated_key_is_reported_in_one_run(shop, monkeypatch) -> None:
    lines = [
        GOOD,
        '{"type": "signup", "customer_id": "c1", "customer_id": "c2", "at": "2027-01-01T00:00:00Z"}',
        GOOD,
        '{"type": "signup", "customer_id": "c3", "at": "2027-01-01T00:00:00Z", "at": "2027-01-02T00:00:00Z"}',
    ]
    result = simulate_bytes(shop, monkeypatch, "\n".join(lines).encode())
    assert [p.split(": error: ")[0] for p in rejected(result)] == [
        "events.jsonl:2:41",
        "events.jsonl:4:71",
    ]


def test_a_repeat_deeper_than_orjson_writes_is_still_found(shop, monkeypatch) -> None:
    ok, twice = '{"k": 1}', '{"k": 1, "k": 2}'
    for _ in range(300):
        ok, twice = f"[{ok}]", f"[{twice}]"
    lines = [GOOD[:-1] + f', "data": {{"d": {value}}}}}' for value in (ok, twice)]
    result = simulate_bytes(shop, monkeypatch, "\n".join(lines).encode())
    [problem] = rejected(result)
    col = lines[1].rindex('"k"') + 1
    assert problem.startswith(f"events.jsonl:2:{col}: error: duplicate key 'data.d.0.0.")


def test_colons_and_quotes_inside_strings_are_not_keys(shop, monkeypatch) -> None:
    """Timestamps, URLs and escaped quotes hold colons: only real repeats are errors."""
    tricky = {
        "type": "signup",
        "customer_id": 'c"1": x',
        "at": "2027-01-01T00:00:00+01:00",
        "data": {"url": "https://x.test/a:b", "note": 'say "k": 1, "k": 2', "k": {"k": "k:"}},
    }
    for text in (json.dumps(tricky), json.dumps(tricky, separators=(",", ":"))):
        result = simulate_bytes(shop, monkeypatch, (text + "\n").encode())
        assert kinds(result) == ["enter", "message", "exit"]


# Any JSON object tree, written with or without a key repeated somewhere, in the many ways
# writers format JSON (spaces, escapes such as \u003a for ':'): a repeat is always reported,
# at the column of its second occurrence, and nothing else is.
_KEYS = st.sampled_from(["a", "b", "a:b", 'q"', "\\", "é", ":", "\u2028"])
_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 5), st.floats(allow_nan=False, allow_infinity=False)
)
_STRINGS = st.text(alphabet='ab:"\\ é\u2028/', max_size=6)


class _Object(list[tuple[str, Any]]):
    """A JSON object as its (key, value) pairs, in order: a key may come twice."""


_TREES = st.recursive(
    st.one_of(_SCALARS, _STRINGS),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.lists(st.tuples(_KEYS, inner), max_size=4).map(_Object),
    ),
    max_leaves=12,
)


def _string(text: str, draw: st.DrawFn) -> str:
    """One JSON string literal for ``text``, some characters escaped as \\uXXXX."""
    out = []
    for char in text:
        if char in '"\\' or draw(st.integers(0, 4)) == 0:
            out.append(
                f"\\u{ord(char):04x}" if char not in '"\\' or draw(st.booleans()) else "\\" + char
            )
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


@st.composite
def _written(draw: st.DrawFn) -> tuple[str, list[int]]:
    """A JSON text of an object tree, and the indexes of every repeated key's occurrence."""
    repeats: list[int] = []
    out: list[str] = []

    def space() -> None:
        out.append(draw(st.sampled_from(["", " ", "  ", "\t"])))

    def put(value: Any) -> None:
        if isinstance(value, _Object):
            out.append("{")
            seen: set[str] = set()
            for i, (key, child) in enumerate(value):
                if i:
                    out.append(",")
                space()
                if key in seen:
                    repeats.append(len("".join(out)))
                seen.add(key)
                out.append(_string(key, draw))
                space()
                out.append(":")
                space()
                put(child)
            out.append("}")
        elif isinstance(value, list):
            out.append("[")
            for i, child in enumerate(value):
                if i:
                    out.append(",")
                space()
                put(child)
            out.append("]")
        elif isinstance(value, str):
            out.append(_string(value, draw))
        else:
            out.append(json.dumps(value))

    put(_Object(draw(st.lists(st.tuples(_KEYS, _TREES), max_size=5))))
    return "".join(out), repeats


@settings(deadline=None, max_examples=400)
@given(_written())
def test_repeated_keys_are_found_exactly_however_json_is_written(written) -> None:
    text, repeats = written
    problems: list[Problem] = []
    found = list(events.iter_jsonl(text + "\n", "f.jsonl", problems))
    if repeats:
        assert not found
        assert sorted(p.col - 1 for p in problems) == repeats
        assert all(
            re.match(r"duplicate key '.*' \(first at column \d+\)$", p.message) for p in problems
        )
    else:
        assert problems == []
        assert len(found) == 1


# ------------------------------------------------------------------------- encodings, BOMs


def test_a_utf8_byte_order_mark_at_the_start_is_accepted(shop, monkeypatch) -> None:
    result = simulate_bytes(shop, monkeypatch, b"\xef\xbb\xbf" + GOOD.encode() + b"\n")
    assert kinds(result) == ["enter", "message", "exit"]


def test_a_byte_order_mark_later_in_the_file_is_an_error_at_its_line(shop, monkeypatch) -> None:
    raw = GOOD.encode() + b"\n\xef\xbb\xbf" + GOOD.encode() + b"\n"
    result = simulate_bytes(shop, monkeypatch, raw)
    assert rejected(result) == [
        "events.jsonl:2:1: error: a byte order mark (U+FEFF) belongs only at the start of the file"
    ]


@pytest.mark.parametrize(
    ("encoding", "expected"),
    [
        ("utf-16", "events.jsonl:1:1: error: not UTF-8: the file looks like UTF-16 (it starts"),
        ("utf-16-le", "events.jsonl:1:2: error: not UTF-8: the file looks like UTF-16 (every"),
        ("utf-16-be", "events.jsonl:1:1: error: not UTF-8: the file looks like UTF-16 (every"),
    ],
)
def test_a_utf16_file_says_so_and_to_save_it_as_utf8(shop, encoding, expected) -> None:
    (shop / "events.jsonl").write_bytes(f"{GOOD}\n{GOOD}\n".encode(encoding))
    env = {k: v for k, v in os.environ.items() if k != "POSTFLOW_CONFIG"}
    proc = subprocess.run(
        [sys.executable, "-m", "postflow", "simulate", "--events", "events.jsonl"],
        cwd=shop,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    [problem] = proc.stderr.splitlines()
    assert problem.startswith(expected), problem
    assert problem.endswith(": save it as UTF-8")


def test_a_latin1_byte_is_located_at_its_line_and_column(shop, monkeypatch) -> None:
    second = '{"type": "signup", "customer_id": "José", "at": "2027-01-01T00:00:00Z"}'
    raw = f"{GOOD}\n{second}\n".encode("latin-1")
    result = simulate_bytes(shop, monkeypatch, raw)
    assert rejected(result) == [
        "events.jsonl:2:39: error: not UTF-8 (byte 0xe9): save the file as UTF-8"
    ]


def test_a_stray_nul_byte_is_located(shop, monkeypatch) -> None:
    raw = f"{GOOD}\n{GOOD}\n{GOOD[:10]}\0{GOOD[10:]}\n".encode()
    result = simulate_bytes(shop, monkeypatch, raw)
    assert rejected(result) == [
        "events.jsonl:3:11: error: not UTF-8 text: a NUL byte (0x00): save the file as UTF-8 text"
    ]


def test_line_separators_inside_strings_do_not_split_lines(shop, monkeypatch) -> None:
    """U+2028 and U+0085 are plain characters inside a JSON string; CRLF ends a line."""
    odd = json.dumps(
        {**json.loads(GOOD), "customer": {"first_name": "A\u2028B\x85C"}}, ensure_ascii=False
    )
    raw = f"{odd}\r\n{{oops\r\n".encode()
    result = simulate_bytes(shop, monkeypatch, raw)
    assert [p.split(": error: ")[0] for p in rejected(result)] == ["events.jsonl:2:2"]
    result = simulate_bytes(shop, monkeypatch, f"{odd}\r\n".encode())
    assert kinds(result) == ["enter", "message", "exit"]


# ------------------------------------------------------------------------- NUL characters


NULS = {  # an event's extra keys, the field the error must name
    "a data value": ({"data": {"note": "a\0b"}}, "data.note"),
    "deep in data": (
        {"data": {"items": [{"sku": "x"}, {"tags": ["ok", "\0"]}]}},
        "data.items.1.tags.1",
    ),
    "a data key": ({"data": {"k\0": 1}}, "data.k\\u0000"),
    "a customer field": ({"customer": {"first_name": "\0"}}, "customer.first_name"),
    "the type": ({"type": "sign\0up"}, "type"),
}


@pytest.mark.parametrize("case", list(NULS))
def test_a_nul_character_is_rejected_naming_the_field(shop, monkeypatch, case) -> None:
    extra, field = NULS[case]
    line = json.dumps({**json.loads(GOOD), **extra})
    result = simulate_bytes(shop, monkeypatch, f"{GOOD}\n{line}\n".encode())
    [problem] = rejected(result)
    assert re.match(rf"^events\.jsonl:2:\d+: error: bad event: {re.escape(field)}: ", problem)
    assert "NUL character (\\u0000), which cannot be stored" in problem
    assert "\0" not in problem


def test_an_escaped_backslash_before_u0000_is_not_a_nul(shop, monkeypatch) -> None:
    line = json.dumps({**json.loads(GOOD), "data": {"path": "C:\\u0000"}})
    assert "\\\\u0000" in line
    result = simulate_bytes(shop, monkeypatch, f"{line}\n".encode())
    assert kinds(result) == ["enter", "message", "exit"]


def test_parse_event_rejects_nul_whatever_the_source() -> None:
    """The HTTP API and test cases hand parse_event decoded values, with no text."""
    obj = {**json.loads(GOOD), "data": {"a": [{"b": "x\0"}]}}
    with pytest.raises(events.EventError) as caught:
        events.parse_event(obj)
    assert caught.value.field == "data.a.0.b"
    deep: Any = "\0"
    for _ in range(300):  # deeper than orjson writes: still found
        deep = [deep]
    with pytest.raises(events.EventError) as caught:
        events.parse_event({**json.loads(GOOD), "data": {"d": deep}})
    assert caught.value.field == "data.d" + ".0" * 300


# ------------------------------------------------------------------------------ test files


def case_file(root: Path, text: str) -> Path:
    return write(root, "journeys/welcome.test.yaml", text)


def run_tests(root: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    result = invoke(root, monkeypatch, "test", "journeys/welcome.test.yaml")
    assert result.exit_code == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout.splitlines()[-1] == "0 passed, 0 failed"
    return result.stderr.splitlines()


def test_a_bad_case_timezone_is_reported_where_it_is_written(shop, monkeypatch) -> None:
    case_file(
        shop,
        """
        cases:
          - name: mars
            start: "2027-01-01T00:00:00Z"
            customer: {email: a@example.com, timezone: Mars/Base}
            events:
              - {type: signup, customer_id: c1}
              - {type: signup, customer_id: c2}
        """,
    )
    assert run_tests(shop, monkeypatch) == [
        "journeys/welcome.test.yaml:4:48: error: bad customer: customer.timezone: unknown time "
        "zone 'Mars/Base' (use an IANA name such as America/New_York)"
    ]


def test_a_case_customer_with_a_nul_is_reported_where_it_is_written(shop, monkeypatch) -> None:
    case_file(
        shop,
        """
        cases:
          - name: nul
            customer: {first_name: "A\\0"}
            events: [{type: signup, customer_id: c1, at: "2027-01-01T00:00:00Z"}]
        """,
    )
    [problem] = run_tests(shop, monkeypatch)
    assert problem.startswith("journeys/welcome.test.yaml:3:28: error: bad customer: ")
    assert "customer.first_name: contains a NUL character" in problem


def test_a_nul_in_an_inline_event_names_the_field(shop, monkeypatch) -> None:
    case_file(
        shop,
        """
        cases:
          - name: nul
            events:
              - {type: signup, customer_id: c1, at: "2027-01-01T00:00:00Z", data: {note: "\\0"}}
        """,
    )
    [problem] = run_tests(shop, monkeypatch)
    assert problem.startswith(
        "journeys/welcome.test.yaml:4:82: error: bad event: data.note: contains a NUL character"
    )


def test_a_test_events_file_with_a_repeated_key_is_located_in_that_file(shop, monkeypatch) -> None:
    dup = '{"type": "signup", "customer_id": "c1", "customer_id": "c2"}'
    (shop / "journeys" / "events.jsonl").write_text(f"{dup}\n", encoding="utf-8")
    case_file(
        shop,
        """
        cases:
          - name: dup
            start: "2027-01-01T00:00:00Z"
            events: events.jsonl
        """,
    )
    [problem] = run_tests(shop, monkeypatch)
    assert re.match(
        r"^.*journeys/events\.jsonl:1:41: error: duplicate key 'customer_id' \(first at column 20\)$",
        problem,
    ), problem


def test_a_test_events_file_in_utf16_is_located_in_that_file(shop, monkeypatch) -> None:
    (shop / "journeys" / "events.jsonl").write_bytes(f"{GOOD}\n".encode("utf-16"))
    case_file(
        shop,
        """
        cases:
          - name: wide
            events: events.jsonl
        """,
    )
    [problem] = run_tests(shop, monkeypatch)
    assert re.match(r"^.*journeys/events\.jsonl:1:1: error: not UTF-8: .*UTF-16", problem), problem


def test_a_test_events_file_with_a_bom_runs(shop, monkeypatch) -> None:
    (shop / "journeys" / "events.jsonl").write_bytes(b"\xef\xbb\xbf" + GOOD.encode() + b"\n")
    case_file(
        shop,
        """
        cases:
          - name: bom
            events: events.jsonl
            expect: [{kind: exit, reason: completed}]
        """,
    )
    result = invoke(shop, monkeypatch, "test", "journeys/welcome.test.yaml")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1] == "1 passed, 0 failed"
