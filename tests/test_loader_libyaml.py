"""loader: libyaml reads what it can, with exactly the data and positions PyYAML gives.

``load_yaml_text`` reads a text from libyaml's events when PyYAML has libyaml (15x faster) and
leaves everything else to PyYAML's pure-Python parser; every position a user sees must be the
same either way, and so must every problem. ``loader._load`` is the pure-Python path alone.
"""

from __future__ import annotations

import copy
import random
import textwrap
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from postflow import loader
from postflow.problems import ProblemsError

needs_libyaml = pytest.mark.skipif(loader.CParser is None, reason="PyYAML without libyaml")

RICH = """\
# a comment before the document
id: rich   # a comment after a value
name: 'single ''quoted'''
text: "double \\"quoted\\" \\u00e9 \\x41 with \\t an escaped tab"
plain: this plain scalar
  goes on here,
  and here
literal: |
  line one
    indented
  line three
folded: >-
  folded text
  goes on

  a new paragraph
keep: |+
  kept

strip: |2-
   two-indented
flow: {a: 1, b: [x, y, {c: d}], "q": 'r', e: f g, url: "https://x.example/a?b=c"}
multi_line_flow: {
  one: 1,
  two: [a,
    b]
}
seq:
- a
- - nested
  - list
- k: v
  k2: v2
-   spaced: yes
numbers: [1, -2, 0x1f, 0o17, 1.5e3, .inf, -.inf, 1_000, 12:30:00, "21:00", 21:00]
words: [yes, no, on, off, true, False, ~, null, Null]
dates: [2027-01-10, 2027-01-10T12:00:00Z, 2027-01-10 12:00:00 +02:00]
unicode: "日本語 😀 café"
unicode_plain: café 😀 ünïcödé
"quoted key": 1
'single key': 2
"": empty key
empty_flow: {}
empty_seq: []
---already-a-plain-word: x
last: value
"""

ANCHORED = """\
base: &base {subject: Hi, body: Hello}   # an anchor
one: *base
two:
  <<: *base
  subject: Bye
list: &list [a, b]
again: *list
"""


def outcome(read: Any, text: str) -> tuple[Any, ...]:
    """What a reader gives: data (with its key order) and positions, or its problems."""
    try:
        doc = read(text, "f.yaml")
    except ProblemsError as e:
        return ("problems", [(p.line, p.col, p.message) for p in e.problems])
    return ("ok", repr(doc.data), doc._root)


VARIANTS = {
    "as written": lambda t: t,
    "UTF-8 BOM": lambda t: "\ufeff" + t,
    "CRLF": lambda t: t.replace("\n", "\r\n"),
    "BOM and CRLF": lambda t: "\ufeff" + t.replace("\n", "\r\n"),
    "no final newline": lambda t: t.rstrip("\n"),
}


@needs_libyaml
@pytest.mark.parametrize("variant", VARIANTS)
def test_libyaml_reads_a_rich_document_as_pyyaml_does(variant: str) -> None:
    text = VARIANTS[variant](RICH)
    fast = outcome(loader._read_fast, text)  # raises if libyaml did not take it
    assert fast == outcome(loader._load, text)
    assert fast == outcome(loader.load_yaml_text, text)
    doc = loader.load_yaml_text(text, "f.yaml")
    assert doc.where(("flow", "b", 2, "c")) == (22, 28)
    assert doc.where_key(("multi_line_flow", "two")) == (25, 3)
    assert doc.where(("multi_line_flow", "two", 1)) == (26, 5)
    assert doc.text_line(("literal",), 3) == 11  # a block scalar starts below its '|'
    assert doc.source(("numbers", 10)) == "21:00"
    assert doc.data["plain"] == "this plain scalar goes on here, and here"


def test_anchors_aliases_and_merges_read_alike_on_both_paths() -> None:
    for variant in VARIANTS.values():
        text = variant(ANCHORED)
        assert outcome(loader.load_yaml_text, text) == outcome(loader._load, text)
    doc = loader.load_yaml_text(ANCHORED, "f.yaml")
    assert doc.data["two"] == {"subject": "Bye", "body": "Hello"}
    assert doc.where(("again", 1)) == (6, 17)  # an alias points at its anchor's text


@needs_libyaml
def test_a_clean_journey_never_reaches_the_pure_python_parser(monkeypatch) -> None:
    """The speed-up itself: a file that parses cleanly is read by libyaml alone."""

    def refuse(text: str) -> None:
        raise AssertionError("read by the pure-Python parser")

    monkeypatch.setattr(loader, "_PyLoader", refuse)
    assert loader.load_yaml_text(RICH, "f.yaml").data["last"] == "value"
    with pytest.raises(AssertionError, match="pure-Python"):
        loader.load_yaml_text(ANCHORED, "f.yaml")  # anchors: left to PyYAML


def test_without_libyaml_the_pure_python_parser_reads_everything(monkeypatch) -> None:
    expected = outcome(loader.load_yaml_text, RICH)
    monkeypatch.setattr(loader, "CParser", None)
    assert outcome(loader.load_yaml_text, RICH) == expected


# Texts on which libyaml and PyYAML disagree: each must be read as PyYAML reads it.
DIFFERENT = {
    "tab inside a plain scalar": "id: a\tb\n",
    "tab after a key": "steps:\n  - id:\tx\n",
    "'?' inside a flow plain scalar": "quiet: {start: a?b, end: c}\n",
    "empty value in a flow mapping": "limits:\n  email: {max: , per: 1d}\n",
    "explicit empty key at the end": "a: 1\n?",
    "block scalar header into a comment": "a: >#note\n  text\n",
    "byte-order mark past the start": "a: x\ufeffy\n",
    "next-line character": "a: x\x85y\n",
}


@needs_libyaml
@pytest.mark.parametrize("name", DIFFERENT)
def test_texts_libyaml_reads_differently_are_read_as_pyyaml_reads_them(name: str) -> None:
    text = DIFFERENT[name]
    assert outcome(loader.load_yaml_text, text) == outcome(loader._load, text)


@needs_libyaml
@pytest.mark.parametrize("name", list(DIFFERENT)[:6])
def test_libyaml_really_differs_on_those_texts(name: str) -> None:
    """Why the texts above are screened: plain libyaml gives other data or other marks."""
    text = DIFFERENT[name]

    def read(kind: Any) -> Any:
        try:
            loader_ = kind(text)
            node = loader_.get_single_node()
            return loader_.construct_document(node), _marks(node)
        except yaml.YAMLError as e:
            return type(e).__name__

    assert read(yaml.CSafeLoader) != read(yaml.SafeLoader)


def _marks(node: yaml.Node) -> list[tuple[int, int]]:
    found = [(node.start_mark.line, node.start_mark.column)]
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            found += _marks(key) + _marks(value)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            found += _marks(item)
    return found


def test_problems_keep_pyyaml_wording_and_positions() -> None:
    for text in ("id: x\ntrigger:\n  event: a\n   if: b\n", "a: [1, 2\n", "a: 1\na: 2\n"):
        assert outcome(loader.load_yaml_text, text) == outcome(loader._load, text)
        assert outcome(loader.load_yaml_text, text)[0] == "problems"


SEEDS = [
    RICH,
    ANCHORED,
    textwrap.dedent(
        """\
        id: review
        trigger: {event: order_delivered, if: "event.data.total > 0"}
        steps:
          - id: wait
            wait: {for: 3d, at: "10:00"}
          - id: ask
            email:
              subject: "How was it?"
              body: |
                Tell us.
          - {id: pick, split: [{weight: 1, goto: ask}, {weight: 2, goto: end}]}
        """
    ),
]
PIECES = list(" \n\r:-[]{},#&*!|>'\"?%@`~\\é😀\t") + [
    "\r\n", "  ", "- ", ": ", "&a ", "*a", "<<: ", "---\n", "...\n", "!!str ", "? ", "|-\n",
    ">+\n", "0x1", "1e3", "~", "yes", "\n  ", "\n    ", "0b_", "12:30", "%YAML 1.1\n", "! ",
]  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**32))
def test_both_paths_agree_on_mutated_documents(seed: int) -> None:
    """Random edits of real documents: whatever libyaml takes, it reads as PyYAML does (and
    nothing raises but a located problem). 150,000 such texts agreed while this was written."""
    rng = random.Random(seed)
    text = list(rng.choice(SEEDS))
    for _ in range(rng.randint(1, 5)):
        at = rng.randrange(len(text) + 1)
        edit = rng.random()
        if edit < 0.5:
            text.insert(at, rng.choice(PIECES))
        elif at < len(text):
            text[at : at + 1] = [] if edit < 0.8 else [rng.choice(PIECES)]
    mutated = "".join(text)
    assert outcome(loader.load_yaml_text, mutated) == outcome(loader._load, mutated)


ONE_KEY_PLACES = {
    # where the journey schema says "exactly one of these keys", and those keys
    "step": (
        lambda v: {"id": "s", **v},
        {
            "wait": "1d",
            "wait_for": {"event": "e", "timeout": "1d"},
            "branch": [{"goto": "end"}],
            "split": [{"weight": 1, "goto": "end"}],
            "email": {"subject": "s", "body": "b"},
            "sms": {"body": "b"},
            "set": {"vars.n": "1"},
        },
    ),
    "email": (
        lambda v: {"id": "s", "email": {"subject": "s", **v}},
        {"body": "b", "template": "t", "sendgrid_template_id": "d-1"},
    ),
    "sms": (lambda v: {"id": "s", "sms": v}, {"body": "b", "template": "t"}),
}


@pytest.mark.parametrize("place", ONE_KEY_PLACES)
def test_fast_schema_check_agrees_on_exactly_one_key(place: str) -> None:
    """The fast validity check says "exactly one of these keys" without oneOf (far fewer
    exceptions inside fastjsonschema); it must accept and refuse exactly what jsonschema does
    with none, one, two or all of the keys present."""
    wrap, keys = ONE_KEY_PLACES[place]
    slow = Draft202012Validator(loader.load_schema("journey"))
    names = list(keys)
    verdicts = []
    for subset in [[]] + [[k] for k in names] + [names[:2], names[1:3], names]:
        step = wrap({k: copy.deepcopy(keys[k]) for k in subset})
        journey = {"id": "j", "trigger": {"event": "e"}, "steps": [step]}
        verdicts.append(slow.is_valid(journey))
        assert loader._fast_valid("journey", journey) == verdicts[-1], subset
        assert verdicts[-1] == (len(subset) == 1), subset  # the test sees both verdicts
