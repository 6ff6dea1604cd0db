"""loader: hostile YAML gets a located error, never a traceback, a hang or a memory blow-up.

Each case goes through the library (both reading paths: ``load_yaml_text`` uses libyaml when
present, ``loader._load`` is PyYAML's pure-Python parser alone) and through the CLI.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from postflow import loader
from postflow.problems import ProblemsError

READERS = {"public": loader.load_yaml_text, "pure-Python": loader._load}
DEPTH = f"lists and mappings nest deeper than {loader.MAX_DEPTH} levels here: flatten them"
HEAD = "id: hostile\ntrigger: {event: order_placed}\n"


def nested_lists(levels: int) -> str:
    """``steps:`` holding ``levels`` nested lists (the root mapping is one level more)."""
    return HEAD + "steps: " + "[" * levels + "]" * levels + "\n"


def nested_mappings(levels: int) -> str:
    lines = [f"{'  ' * i}k{i}:" for i in range(levels)]
    return "\n".join(lines) + " x\n"


def billion_laughs() -> str:
    lines = [HEAD + 'a0: &a0 "lol"']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    return "\n".join(lines) + "\nsteps: *a8\n"


def problems(read: object, text: str) -> list[tuple[int, int, str]]:
    with pytest.raises(ProblemsError) as info:
        read(text, "h.yaml")  # type: ignore[operator]
    return [(p.line, p.col, p.message) for p in info.value.problems]


@pytest.mark.parametrize("read", READERS.values(), ids=READERS)
def test_lists_nested_500_deep_are_refused_where_level_101_starts(read: object) -> None:
    # root mapping: level 1; the 100th '[' (column 8 + 99) opens level 101
    assert problems(read, nested_lists(500)) == [(3, 107, DEPTH)]


@pytest.mark.parametrize("read", READERS.values(), ids=READERS)
def test_mappings_nested_500_deep_are_refused(read: object) -> None:
    assert problems(read, nested_mappings(500)) == [(101, 201, DEPTH)]


@pytest.mark.parametrize("read", READERS.values(), ids=READERS)
def test_a_megabyte_of_brackets_is_refused_quickly(read: object) -> None:
    """Past libyaml's own nesting limit (1000) too, the message stays ours."""
    assert problems(read, "a: " + "[" * 1_000_000 + "\n") == [(1, 103, DEPTH)]


@pytest.mark.parametrize("read", READERS.values(), ids=READERS)
def test_nesting_up_to_the_limit_is_read(read: object) -> None:
    doc = read(nested_lists(loader.MAX_DEPTH - 1), "h.yaml")  # type: ignore[operator]
    value = doc.data["steps"]
    for _ in range(loader.MAX_DEPTH - 2):
        [value] = value
    assert value == []


@pytest.mark.parametrize("read", READERS.values(), ids=READERS)
def test_a_billion_laughs_is_refused_at_the_alias_that_crosses_the_bound(read: object) -> None:
    [(line, col, message)] = problems(read, billion_laughs())
    assert (line, col) == (9, 10)  # a6's first *a5: the aliases before add 74,727 values,
    # a5 is 66,430
    assert message == (
        "alias *a5 takes the values aliases repeat in this file past 100,000"
        " (each alias counts all it repeats)"
    )


@pytest.mark.parametrize("read", READERS.values(), ids=READERS)
def test_aliases_cannot_nest_past_the_limit_either(read: object) -> None:
    inner = "[" * 60 + "x" + "]" * 60
    text = f"a: &deep {inner}\nb: {'[' * 50}*deep{']' * 50}\n"
    assert problems(read, text) == [
        (2, 54, "alias *deep nests lists and mappings deeper than 100 levels here")
    ]


@pytest.mark.parametrize("read", READERS.values(), ids=READERS)
def test_aliases_in_normal_use_still_work(read: object) -> None:
    text = HEAD + (
        "defaults: &mail {subject: Hi, body: Hello}\n"
        "steps:\n" + "".join(f"  - {{id: s{i}, email: *mail}}\n" for i in range(20))
    )
    doc = read(text, "h.yaml")  # type: ignore[operator]
    assert [s["email"]["subject"] for s in doc.data["steps"]] == ["Hi"] * 20
    assert doc.where(("steps", 19, "email", "body")) == (3, 37)  # at the anchor's text


def test_a_file_over_the_size_limit_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text(HEAD + "# " + "x" * loader.MAX_FILE_BYTES + "\n", encoding="utf-8")
    with pytest.raises(ProblemsError) as info:
        loader.load_yaml(path)
    [p] = info.value.problems
    size = path.stat().st_size
    assert (p.line, p.col, p.message) == (
        1,
        1,
        f"file too large: {size:,} bytes (the limit is 1 MiB)",
    )


def test_a_file_just_under_the_size_limit_is_read(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    filler = "# " + "x" * (loader.MAX_FILE_BYTES - len(HEAD) - 20) + "\n"
    path.write_text(HEAD + filler + "steps: []\n", encoding="utf-8")
    assert loader.load_yaml(path).data["steps"] == []


HOSTILE = {
    "deep.yaml": (nested_lists(500), f"3:107: error: {DEPTH}"),
    "deep-mappings.yaml": (HEAD + nested_mappings(500), f"103:201: error: {DEPTH}"),
    "laughs.yaml": (billion_laughs(), "9:10: error: alias *a5 takes the values aliases repeat"),
    "huge.yaml": (HEAD + "steps: []\n" + "# padding\n" * 110_000, "1:1: error: file too large"),
}


@pytest.mark.parametrize("name", HOSTILE)
def test_validate_reports_hostile_files_without_a_traceback(tmp_path: Path, name: str) -> None:
    text, expected = HOSTILE[name]
    (tmp_path / name).write_text(text, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "postflow", "validate", name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert re.search(rf"^{re.escape(name)}:{re.escape(expected)}", output, re.M), output
    assert "Traceback" not in output


def test_validate_accepts_a_journey_that_reuses_an_anchor(tmp_path: Path) -> None:
    text = HEAD + (
        "steps:\n"
        "  - {id: ask, email: &mail {subject: Hi, body: Hello}}\n"
        "  - {id: again, email: *mail}\n"
        "  - {id: last, email: *mail}\n"
    )
    (tmp_path / "reuse.yaml").write_text(text, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "postflow", "validate", "reuse.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 error(s)" in done.stderr
