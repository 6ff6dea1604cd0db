"""loader: YAML with positions, and located load errors (syntax, duplicates, encoding)."""

from __future__ import annotations

import textwrap

import pytest

from postflow.loader import Document, load_schema, load_yaml, load_yaml_text
from postflow.problems import Problem, ProblemsError


def load(text: str) -> Document:
    return load_yaml_text(textwrap.dedent(text), "j.yaml")


def load_errors(text: str) -> list[tuple[int, int, str]]:
    with pytest.raises(ProblemsError) as info:
        load(text)
    return [(p.line, p.col, p.message) for p in info.value.problems]


NESTED = """\
id: review
trigger:
  event: order_delivered
steps:
  - id: wait_3d
    wait: 3d
  - id: ask
    email: {subject: "Hi", body: x}
  - id: pick
    split:
      - {weight: 1, goto: ask}
      - weight: 2
        goto: end
"""


def test_positions_of_values_and_keys() -> None:
    doc = load(NESTED)
    assert doc.data["steps"][1]["email"]["subject"] == "Hi"
    assert doc.where(("id",)) == (1, 5)
    assert doc.where_key(("id",)) == (1, 1)
    assert doc.where(("trigger",)) == (3, 3)  # a block mapping starts at its first key
    assert doc.where(("trigger", "event")) == (3, 10)
    assert doc.where_key(("trigger", "event")) == (3, 3)
    assert doc.where(("steps", 0)) == (5, 5)
    assert doc.where(("steps", 1, "email")) == (8, 12)  # the '{' of a flow mapping
    assert doc.where(("steps", 1, "email", "body")) == (8, 34)
    assert doc.where_key(("steps", 1, "email", "body")) == (8, 28)
    assert doc.where(("steps", 2, "split", 0, "goto")) == (11, 27)
    assert doc.where(("steps", 2, "split", 1, "goto")) == (13, 15)
    assert doc.where_key(("steps", 2, "split", 1, "goto")) == (13, 9)


def test_positions_fall_back_to_the_nearest_ancestor() -> None:
    doc = load(NESTED)
    assert doc.where(("steps", 1, "email", "template")) == (8, 12)
    assert doc.where(("steps", 7, "id")) == (5, 3)  # the steps list
    assert doc.where_key(("steps", 1, "sms")) == (7, 5)  # no such key: where() of the step
    assert doc.where_key(("steps", 1)) == (7, 5)  # an index has no key
    assert doc.where(()) == (1, 1)
    assert Document("x.yaml", {"a": 1}).where(("a",)) == (1, 1)  # built without positions


def test_problem_is_located_at_value_or_key() -> None:
    doc = load(NESTED)
    assert doc.problem(("trigger", "event"), "bad") == Problem("j.yaml", 3, 10, "error", "bad")
    warning = doc.problem(("trigger", "event"), "hm", severity="warning", at_key=True)
    assert warning == Problem("j.yaml", 3, 3, "warning", "hm")


def test_scalars_follow_safe_loader_semantics() -> None:
    doc = load(
        """\
        a: 3
        b: true
        c: "21:00"
        d: 21:00
        e: 1.5
        f: ~
        g: 2027-01-10T12:00:00Z
        h: 2027-01-10
        i: 'yes'
        j: yes
        k: 0x1f
        """
    )
    assert doc.data == {
        "a": 3,
        "b": True,
        "c": "21:00",
        "d": 1260,  # YAML 1.1 sexagesimal: the schema says "must be a string"
        "e": 1.5,
        "f": None,
        "g": "2027-01-10T12:00:00Z",  # timestamps stay strings (plain JSON-like data)
        "h": "2027-01-10",
        "i": "yes",
        "j": True,
        "k": 31,
    }
    assert doc.source(("d",)) == "21:00"
    assert doc.source(("c",)) is None


def test_keys_are_strings() -> None:
    assert load("1: a\nyes: b\nnull: c\n").data == {"1": "a", "yes": "b", "null": "c"}


def test_anchors_aliases_and_merge_keys() -> None:
    doc = load(
        """\
        base: &base {subject: Hi, body: Hello}
        one: *base
        two:
          <<: *base
          subject: Bye
        """
    )
    assert doc.data["one"] == {"subject": "Hi", "body": "Hello"}
    assert doc.data["two"] == {"subject": "Bye", "body": "Hello"}
    assert doc.where(("one", "body")) == (1, 33)  # an alias points at its anchor's text
    assert doc.where(("two", "subject")) == (5, 12)
    assert doc.where(("two", "body")) == (1, 33)


def test_syntax_error_is_located() -> None:
    [(line, col, message)] = load_errors("id: x\ntrigger:\n  event: a\n   if: b\n")
    assert (line, col) == (4, 6)
    assert message.startswith("YAML syntax error: mapping values are not allowed here")


def test_unclosed_flow_mapping_names_where_it_started() -> None:
    [(line, col, message)] = load_errors("id: x\nsteps:\n  - {id: a, wait: 1d\n")
    assert (line, col) == (4, 1)
    assert message == (
        "YAML syntax error: expected ',' or '}', but got '<stream end>'"
        " (while parsing a flow mapping at line 3)"
    )


def test_tab_indentation_gets_a_hint() -> None:
    [(line, col, message)] = load_errors("id: x\ntrigger:\n\tevent: a\n")
    assert (line, col) == (3, 1)
    assert message.endswith("indent with spaces, not tabs")


def test_duplicate_key_at_the_later_occurrence() -> None:
    errors = load_errors("id: x\nsteps: []\ntrigger:\n  event: a\n  event: b\nsteps: [1]\n")
    assert errors == [
        (5, 3, "duplicate key 'event' (first at line 4)"),
        (6, 1, "duplicate key 'steps' (first at line 2)"),
    ]


@pytest.mark.parametrize("text", ["", "\n\n", "# just a comment\n", "---\n"])
def test_empty_file(text: str) -> None:
    assert load_errors(text) == [(1, 1, "empty file: expected a mapping")]


def test_multiple_documents() -> None:
    [(line, col, message)] = load_errors("id: a\n---\nid: b\n")
    assert (line, col) == (2, 1)
    assert message.startswith("more than one YAML document in this file")


def test_undefined_alias() -> None:
    assert load_errors("id: *nope\n") == [(1, 5, "YAML syntax error: found undefined alias 'nope'")]


def test_recursive_alias() -> None:
    assert load_errors("a: &a [*a]\n") == [
        (1, 4, "recursive alias: an anchor cannot contain itself")
    ]


def test_unsupported_tags_and_complex_keys() -> None:
    assert load_errors("id: !secret x\nn: !!int abc\n? [a, b]\n: c\n") == [
        (1, 5, "unsupported YAML tag '!secret'"),
        (2, 4, "cannot read 'abc' as !!int"),
        (3, 3, "a key must be a plain name, not a list or mapping"),
    ]


def test_explicit_tags_on_wrong_values_are_located() -> None:
    assert load_errors("a: !!bool maybe\nb: !!float x\n") == [
        (1, 4, "cannot read 'maybe' as !!bool"),
        (2, 4, "cannot read 'x' as !!float"),
    ]


def test_a_merge_of_its_own_anchor_is_a_recursive_alias() -> None:
    assert load_errors("a: &a [<<: *a]\n") == [
        (1, 8, "recursive alias: an anchor cannot contain itself")
    ]


def test_control_characters_are_located() -> None:
    assert load_errors('id: x\nname: "a\x07"\n') == [
        (2, 9, "unacceptable character #x0007: special characters are not allowed")
    ]


def test_load_yaml_reads_a_file(tmp_path) -> None:
    path = tmp_path / "j.yaml"
    path.write_text("id: café\n", encoding="utf-8")
    doc = load_yaml(path)
    assert doc.path == str(path)
    assert doc.data == {"id": "café"}


def test_non_utf8_file(tmp_path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("id: x\nname: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ProblemsError) as info:
        load_yaml(path)
    [problem] = info.value.problems
    assert (problem.file, problem.line, problem.col) == (str(path), 2, 10)
    assert problem.message == "not UTF-8 (byte 0xe9): save the file as UTF-8"


def test_missing_file(tmp_path) -> None:
    with pytest.raises(ProblemsError) as info:
        load_yaml(str(tmp_path / "nope.yaml"))
    assert info.value.problems[0].message.startswith("cannot read: ")


def test_load_schema_is_cached_and_checks_the_name() -> None:
    assert load_schema("journey") is load_schema("journey")
    with pytest.raises(ValueError, match="unknown schema 'jouney'"):
        load_schema("jouney")
