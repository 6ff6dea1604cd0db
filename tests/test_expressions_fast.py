"""The Jinja-free fast path gives exactly what Jinja gives: the same text, the same errors (with
the same message and ``variable``), the same values and the same condition verdicts.

The differential tests render generated templates and evaluate generated expressions against
generated scopes twice -- once as compiled (the fast path) and once with the fast path turned
off, which is Jinja's own generated code -- and require identical outcomes. The targeted tests
pin the behaviours an author notices, each through the fast path."""

from __future__ import annotations

import math
import types
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from markupsafe import Markup

from postflow import expressions
from postflow.expressions import (
    Condition,
    EvalError,
    RenderError,
    Template,
    Value,
    compile_condition,
    compile_template,
    compile_value,
)


class Thing:
    """A non-mapping object, so lookups take the sandbox's attribute path."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._private = "secret"

    def __repr__(self) -> str:
        return f"Thing({self.name!r})"


class Html:
    """An object that renders itself as HTML: autoescape must trust its ``__html__``."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __html__(self) -> str:
        return f"<i>{self.text}</i>"

    def __str__(self) -> str:
        return f"plain {self.text}"


def template(source: str, *, autoescape: bool = False) -> Template:
    compiled = compile_template(source, autoescape=autoescape)
    assert compiled._fast is not None, "expected the fast path for " + source
    return compiled


def jinja_template(source: str, *, autoescape: bool = False) -> Template:
    compiled = compile_template(source, autoescape=autoescape)
    compiled._fast = None
    return compiled


def rendered(compiled: Template, scope: dict[str, Any]) -> tuple[Any, ...]:
    try:
        text = compiled(scope)
        return ("ok", type(text), text)  # a plain str, never Markup
    except RenderError as exc:
        return ("error", str(exc), exc.variable)


# -- generated templates and scopes ----------------------------------------------------------
ATTRIBUTES = ["a", "b", "name", "items", "keys", "get", "upper", "real", "year", "tzinfo"]
ATTRIBUTES += ["append", "_private", "__class__", "__html__", "mro"]
KEYS: list[Any] = ["a", "b", "name", "items", "", "ü", "<&>", 0, 1, -1, 2, 1.5, True, None]
ROOTS = ["customer", "trigger", "now", "absent", "range", "namespace"]

TEXT = st.lists(
    st.sampled_from(list("ab <>&\"'é€\t\n\r-%#") + ["\r\n", "{ x }", "}}", "%}", "\U0001f375"]),
    max_size=12,
).map("".join)
leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    TEXT,
    st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=-5))])),
    st.datetimes(),
    st.dates(),
    TEXT.map(Markup),
    TEXT.map(Html),
    TEXT.map(Thing),
)
values = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(st.sampled_from(ATTRIBUTES + KEYS), children, max_size=4),
        st.dictionaries(st.sampled_from(ATTRIBUTES), children, max_size=3).map(
            types.MappingProxyType
        ),
    ),
    max_leaves=12,
)
scopes = st.dictionaries(st.sampled_from(["customer", "trigger", "now", "data"]), values)


def _key_source(key: Any) -> str:
    return "true" if key is True else "none" if key is None else repr(key)


step = st.one_of(
    st.sampled_from(ATTRIBUTES).map(lambda name: "." + name),
    st.sampled_from(KEYS).map(lambda key: f"[{_key_source(key)}]"),
    st.sampled_from([".0", ".1", "[ 'a' ]", '["items"]']),
)
lookups = st.builds(
    lambda root, steps: root + "".join(steps),
    st.sampled_from(ROOTS),
    st.lists(step, max_size=4),
)
constants = st.sampled_from(["none", "true", "False", "1", "2.50", "-3", "1e16", "'<b>'", '"x"'])
outputs = st.builds(
    lambda left, body, right: "{{" + left + body + right + "}}",
    st.sampled_from(["", " ", "- ", "-", "+ ", "  "]),
    st.one_of(lookups, lookups, constants),
    st.sampled_from(["", " ", " -", "-", "\n"]),
)
extras = st.sampled_from(
    ["{# note #}", "{#- note -#}", "{% raw %}{{ not_code }}{% endraw %}", "\n", "  \n  "]
)
templates = st.lists(st.one_of(TEXT, outputs, outputs, extras), min_size=1, max_size=6).map("".join)


@settings(deadline=None, max_examples=400)
@given(templates, st.booleans(), scopes)
def test_fast_templates_render_exactly_like_jinja(
    source: str, autoescape: bool, scope: dict[str, Any]
) -> None:
    if "{{" not in source and "{#" not in source and "{%" not in source:
        source += "{{ customer }}"
    fast, slow = (
        template(source, autoescape=autoescape),
        jinja_template(source, autoescape=autoescape),
    )
    assert rendered(fast, scope) == rendered(slow, scope)


# -- generated expressions -------------------------------------------------------------------
OPERATORS = ["==", "!=", "<", "<=", ">", ">=", "in", "not in"]
atoms = st.one_of(lookups, constants)
comparisons = st.one_of(
    st.builds(lambda a, op, b: f"{a} {op} {b}", atoms, st.sampled_from(OPERATORS), atoms),
    st.builds(
        lambda a, op1, b, op2, c: f"{a} {op1} {b} {op2} {c}",
        atoms,
        st.sampled_from(OPERATORS[:6]),
        atoms,
        st.sampled_from(OPERATORS[:6]),
        atoms,
    ),
    st.builds(lambda a, neg: f"{a} is {neg}none", atoms, st.sampled_from(["", "not "])),
)
expression_sources = st.recursive(
    st.one_of(atoms, comparisons),
    lambda inner: st.one_of(
        inner.map(lambda e: f"not {e}"),
        inner.map(lambda e: f"({e})"),
        st.builds(
            lambda a, op, b: f"({a}) {op} ({b})", inner, st.sampled_from(["and", "or"]), inner
        ),
    ),
    max_leaves=5,
)


def evaluated(compiled: Value, scope: dict[str, Any]) -> tuple[Any, ...]:
    try:
        result = compiled(scope)
    except EvalError as exc:
        return ("error", str(exc))
    return ("ok", type(result), repr(result))


def _with_and_without_fast_path(compile_: Any, source: str) -> tuple[Any, Any]:
    fast, slow = compile_(source), compile_(source)
    slow._fast = None
    constant = fast._template.pf_constant is not expressions._VARIES
    assert fast._fast is not None or constant, "expected the fast path for " + source
    return fast, slow


@settings(deadline=None, max_examples=400)
@given(expression_sources, scopes)
def test_fast_expressions_evaluate_exactly_like_jinja(source: str, scope: dict[str, Any]) -> None:
    fast, slow = _with_and_without_fast_path(compile_value, source)
    assert evaluated(fast, scope) == evaluated(slow, scope)
    fast_condition, slow_condition = _with_and_without_fast_path(compile_condition, source)
    assert fast_condition(scope) is slow_condition(scope)


# -- targeted: what an author sees, through the fast path ------------------------------------
NOW = datetime(2027, 5, 10, 9, 0, tzinfo=UTC)
SCOPE: dict[str, Any] = {
    "customer": {"first_name": "Ann", "orders": 3, "ratio": 0.1, "vip": True, "tier": None},
    "trigger": {"data": {"order_id": "o_1", "items": [{"name": "Tea"}, {"name": "Pot"}]}},
    "now": NOW,
    "thing": Thing("t"),
}


def test_items_is_the_key_not_the_dict_method() -> None:
    assert template("{{ trigger.data.items[1].name }}")(SCOPE) == "Pot"
    assert template("{{ trigger.data.items.0.name }}")(SCOPE) == "Tea"
    assert template("{{ trigger.data['items'][-1]['name'] }}")(SCOPE) == "Pot"
    with pytest.raises(RenderError) as caught:
        template("{{ customer.keys }}")(SCOPE)
    assert (str(caught.value), caught.value.variable) == ("'keys' is undefined", "keys")


@pytest.mark.parametrize(
    ("source", "message", "variable"),
    [
        ("Hi {{ customer.nickname }}!", "'nickname' is undefined", "nickname"),
        ("{{ custmer.first_name }}", "'custmer' is undefined", "custmer"),
        ("{{ customer.address.city }}", "'address' is undefined", "address"),
        ("{{ trigger.data.items[7].name }}", "list object has no element 7", None),
        (
            "{{ thing._private }}",
            "access to attribute '_private' of 'Thing' object is unsafe",
            None,
        ),
        (
            "{{ now.__class__ }}",
            "access to attribute '__class__' of 'datetime' object is unsafe",
            None,
        ),
        (
            "{{ trigger.data.items.append }}",
            "access to attribute 'append' of 'list' object is unsafe",
            None,
        ),
    ],
)
def test_errors_name_the_variable_and_the_sandbox_still_holds(
    source: str, message: str, variable: str | None
) -> None:
    for autoescape in (False, True):
        with pytest.raises(RenderError) as caught:
            template(source, autoescape=autoescape)(SCOPE)
        assert (str(caught.value), caught.value.variable) == (message, variable)


def test_values_print_as_jinja_prints_them() -> None:
    source = "{{ customer.orders }}|{{ customer.ratio }}|{{ customer.vip }}|[{{ customer.tier }}]"
    assert template(source)(SCOPE) == "3|0.1|True|[]"
    assert template("{{ now }} {{ local }}")({"now": NOW, "local": datetime(2027, 1, 2, 3)}) == (
        "2027-05-10T09:00:00Z 2027-01-02 03:00:00"
    )
    shifted = datetime(2027, 5, 10, 4, 0, tzinfo=timezone(timedelta(hours=-5)))
    assert template("{{ t }}")({"t": shifted}) == "2027-05-10T09:00:00Z"  # in UTC
    assert template("{{ x }} {{ y }}")({"x": 1e16, "y": math.inf}) == "1e+16 inf"
    assert template("{{ d }}")({"d": date(2027, 5, 10)}) == "2027-05-10"


def test_html_templates_escape_like_jinja_autoescape() -> None:
    scope = {"x": "<b>&\"'", "m": Markup("<b>ok</b>"), "h": Html("hi"), "n": None}
    assert template("{{ x }}|{{ m }}|{{ h }}|[{{ n }}]", autoescape=True)(scope) == (
        "&lt;b&gt;&amp;&#34;&#39;|<b>ok</b>|<i>hi</i>|[]"
    )
    assert template("{{ x }}|{{ m }}|{{ h }}", autoescape=False)(scope) == (
        "<b>&\"'|<b>ok</b>|plain hi"
    )
    # Jinja folds a literal's escaping before finalize, so a literal none prints "None" in
    # HTML (but nothing in text) -- the fast path keeps even that
    assert template("[{{ none }}]{{ '<' }}", autoescape=True)({}) == "[None]&lt;"
    assert template("[{{ none }}]{{ '<' }}")({}) == "[]<"


def test_whitespace_control_newlines_comments_and_raw() -> None:
    assert template("a  {{- customer.first_name -}}  \n b")(SCOPE) == "aAnnb"
    assert template("Hi {{ customer.first_name }}\n")(SCOPE) == "Hi Ann\n"  # kept, like a file
    assert template("a\r\nb {{ customer.orders }}\r")(SCOPE) == "a\nb 3\n"
    assert template("{# why #}x{% raw %}{{ y }}{% endraw %}")({}) == "x{{ y }}"


def test_anything_else_still_goes_through_jinja() -> None:
    for source in [
        "{{ customer.first_name | upper }}",
        "{{ days_since(customer.since) }}",
        "{% if customer.vip %}VIP{% endif %}",
        "{{ customer.first_name if customer.vip }}",
        "{{ self }}",
        "{{ trigger.data.items[0:1] }}",
        "{{ customer[customer.key] }}",
        "{{ 1 + 2 }}",
    ]:
        assert compile_template(source)._fast is None, source
    assert compile_template("{{ customer.first_name | upper }}")(SCOPE) == "ANN"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("trigger.data.order_id", "o_1"),
        ("trigger.data.items[1].name", "Pot"),
        ("trigger.data.coupon", None),
        ("customer.tier", None),
        ("nothing.at.all", None),
        ("customer.vip == true", True),
        ("customer.tier == none", True),
        ("customer.missing != none", False),
        ("customer.orders >= 3 and not customer.tier", True),
        ("customer.missing < 1 or customer.tier > 0", False),
        ("'Tea' in trigger.data.items[0].name", True),
        ("customer.missing is none", True),
        ("1 < customer.orders < 5", True),
    ],
)
def test_fast_values_and_conditions(source: str, expected: Any) -> None:
    compiled = compile_value(source)
    assert compiled._fast is not None
    assert compiled(SCOPE) == expected
    assert compile_condition(source)(SCOPE) is bool(expected)


def test_fast_expressions_keep_the_sandbox_and_errors() -> None:
    with pytest.raises(EvalError, match="access to attribute '__class__' of 'datetime'"):
        compile_value("now.__class__")(SCOPE)
    assert compile_condition("now.__class__")(SCOPE) is False
    assert compile_value("customer.__class__")(SCOPE) is None  # a key, and there is none
    assert compile_value("thing.name")(SCOPE) == "t"


def test_compiled_types_are_unchanged() -> None:
    assert isinstance(compile_condition("customer.vip"), Condition)
    assert isinstance(compile_value("customer.vip"), Value)
