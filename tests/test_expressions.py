"""Behaviour of journey expressions and templates as an author sees it (contract §2): key-first
lookup, the ``none`` comparison rules, errors that name the missing variable, the helper
functions (with real time-zone data), syntax errors with positions, and the sandbox."""

from __future__ import annotations

import operator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postflow.expressions import (
    EvalError,
    ExpressionSyntaxError,
    Helpers,
    RenderError,
    compile_condition,
    compile_template,
    compile_value,
)

NOW = datetime(2027, 5, 10, 9, 0, tzinfo=UTC)
ORDER = {
    "id": "evt_81",
    "type": "order_placed",
    "customer_id": "c_1",
    "at": "2027-03-11T09:00:00Z",
    "data": {
        "order_id": "o_1",
        "total": 120.5,
        "items": [
            {"sku": "TEA-1", "name": "Green tea", "quantity": 2, "price": 60.25},
            {"sku": "POT-1", "name": "Teapot", "quantity": 1, "price": 30},
        ],
    },
}
CATALOG = {"TEA-1": {"name": "Green tea", "category": "tea"}}


def make_scope(
    *,
    customer: dict[str, Any] | None = None,
    event: dict[str, Any] | None = None,
    now: datetime = NOW,
    zone: str = "UTC",
    **extra: Any,
) -> dict[str, Any]:
    scope: dict[str, Any] = {
        "customer": {"first_name": "Ann", "orders_count": 2} if customer is None else customer,
        "trigger": ORDER,
        "event": event if event is not None else ORDER,
        "last_event": ORDER,
        "vars": {},
        "instance": {"id": "j:c_1:1", "key": "o_1", "journey": "j", "variant": None},
        "now": now,
        "_helpers": Helpers(ZoneInfo(zone), CATALOG),
    }
    scope.update(extra)
    return scope


def holds(source: str, **scope: Any) -> bool:
    return compile_condition(source)(make_scope(**scope))


def value(source: str, **scope: Any) -> Any:
    return compile_value(source)(make_scope(**scope))


def render(source: str, *, autoescape: bool = False, **scope: Any) -> str:
    return compile_template(source, autoescape=autoescape)(make_scope(**scope))


# -- key-first lookup ----------------------------------------------------------------------
def test_attribute_on_data_is_the_key_not_a_dict_method() -> None:
    assert value("trigger.data.items") == ORDER["data"]["items"]
    assert value("trigger.data.items[1].name") == "Teapot"
    assert value("trigger['data']['items'][0]['sku']") == "TEA-1"
    assert render("{{ trigger.data.items | length }}") == "2"
    assert render("{{ trigger.data.items[0].name }}") == "Green tea"
    assert render("{{ trigger.data.items | sum(attribute='price') }}") == "90.25"


def test_missing_items_key_is_none_in_a_condition_and_an_error_in_a_template() -> None:
    no_items = {"type": "order_placed", "data": {"order_id": "o_2"}}
    assert holds("event.data.items == none", event=no_items)
    assert not holds("event.data.items", event=no_items)
    assert value("{'a': 1}.items") is None
    assert value("{'a': 1}['items']") is None
    with pytest.raises(RenderError) as caught:
        compile_template("{{ event.data.items | length }}")(make_scope(event=no_items))
    assert caught.value.variable == "items"
    assert str(caught.value) == "'items' is undefined"


# -- the none comparison table -------------------------------------------------------------
def test_contract_example_not_equal_holds_for_an_event_without_the_key() -> None:
    source = "event.data.order_id != trigger.data.order_id"
    assert holds(source, event={"type": "order_placed", "data": {}})
    assert not holds(source, event=ORDER)
    assert holds(source, event={"data": {"order_id": "o_9"}})
    # both missing: none == none, so != is false
    assert not holds("event.data.order_id != event.data.other_id", event={"data": {}})


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("customer.missing == none", True),
        ("customer.a.b.c == customer.x.y", True),
        ("customer.missing != none", False),
        ("none == 0", False),
        ("none != 0", True),
        ("customer.missing < 1", False),
        ("customer.missing <= 1", False),
        ("customer.missing > 1", False),
        ("customer.missing >= 1", False),
        ("1 >= customer.missing", False),
        ("none <= none", False),
        ("'a' < 3", False),
        ("'a' >= 3", False),
        ("'a' == 3", False),
        ("'a' != 3", True),
        ("1 < 2 < 3", True),
        ("1 < 3 < 2", False),
        ("1 < customer.missing < 3", False),
        ("customer.orders_count >= 2", True),
        ("customer.orders_count == 2.0", True),
        ("'TEA-1' in trigger.data.items | map(attribute='sku')", True),
        ("'tea' in customer.missing", False),
        ("'tea' not in customer.missing", True),
        ("'tea' in none", False),
        ("'tea' not in none", True),
        ("none in [none, 1]", True),
        ("3 in 'abc'", False),
        ("not customer.missing", True),
        ("customer.missing is none", True),
        ("customer.missing is not none", False),
        ("customer.orders_count is none", False),
        ("customer.missing.deeper", False),
    ],
)
def test_none_comparison_table(source: str, expected: bool) -> None:
    assert holds(source) is expected


def test_value_expressions_use_the_same_comparisons() -> None:
    assert value("'gold' if trigger.data.total >= 100 else 'silver'") == "gold"
    assert value("'gold' if customer.total_spent >= 100 else 'silver'") == "silver"
    assert value("customer.a == customer.b") is True


def test_iso_strings_compare_with_datetimes() -> None:
    assert holds("trigger.at < now")
    assert holds("trigger.at == now - duration('60d')")
    assert not holds("'not a time' < now")


PYTHON_OPS = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


@given(
    st.one_of(st.none(), st.integers()),
    st.one_of(st.none(), st.integers()),
    st.sampled_from(sorted(PYTHON_OPS)),
)
def test_comparisons_match_python_on_ints_and_are_false_with_none(
    a: int | None, b: int | None, op: str
) -> None:
    result = compile_condition(f"a {op} b")({"a": a, "b": b})
    if a is None or b is None:
        expected = {"==": a is b, "!=": a is not b}.get(op, False)
    else:
        expected = PYTHON_OPS[op](a, b)
    assert result is expected


# -- runtime errors ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "source",
    ["1 / 0", "customer.missing + 1", "days_since('yesterday') > 1", "duration('3x') > 0", "x()"],
)
def test_runtime_error_in_a_condition_counts_as_false(source: str) -> None:
    assert holds(source) is False
    assert holds(f"not ({source})") is False


def test_runtime_error_in_a_value_raises_eval_error_with_a_message() -> None:
    with pytest.raises(EvalError) as caught:
        value("trigger.data.total / 0")
    assert str(caught.value) == "float division by zero (in expression: trigger.data.total / 0)"
    with pytest.raises(EvalError, match="'count' is undefined"):
        value("vars.count + 1")
    with pytest.raises(EvalError, match="bad duration '3x'"):
        value("now + duration('3x')")


def test_missing_value_is_none() -> None:
    assert value("customer.nickname") is None
    assert value("nothing_here") is None
    assert value("customer.a.b.c") is None


# -- templates -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("source", "variable"),
    [
        ("Use {{ coupon_code }} on your next order.", "coupon_code"),
        ("Hi {{ customer.first_name }}", "first_name"),
        ("Order {{ trigger.data.order_id }} / {{ customer.nickname }}", "nickname"),
        ("{{ customer.address.city }}", "address"),
        ("{% if customer.vip == true %}VIP{% endif %}", "vip"),
    ],
)
def test_template_missing_variable_is_a_render_error_naming_it(source: str, variable: str) -> None:
    with pytest.raises(RenderError) as caught:
        render(source, customer={"email": "a@example.com"})
    assert caught.value.variable == variable
    assert str(caught.value) == f"'{variable}' is undefined"


def test_default_filter_allows_absence() -> None:
    assert render('Hi {{ customer.nickname | default("there") }}') == "Hi there"
    assert render("Hi {{ customer.nickname | d('there') }}", customer={"nickname": "D"}) == "Hi D"
    assert render("Hi {{ customer.nickname | default('there') }}", customer={"nickname": None}) == (
        "Hi there"
    )
    assert render("{{ customer.address.city | default('-') }}", customer={}) == "-"


def test_template_renders_numbers_plainly_and_null_as_nothing() -> None:
    assert render("{{ 2 }} {{ 2.5 }} {{ trigger.data.total }} {{ customer.orders_count }}") == (
        "2 2.5 120.5 2"
    )
    assert render("[{{ instance.variant }}]") == "[]"


def test_template_other_runtime_errors_are_render_errors() -> None:
    with pytest.raises(RenderError, match="division by zero") as caught:
        render("{{ 1 / 0 }}")
    assert caught.value.variable is None
    with pytest.raises(RenderError, match="has no element 5"):
        render("{{ trigger.data.items[5].name }}")


def test_template_comparisons_follow_the_none_rules() -> None:
    source = "{% if customer.tier == none %}none{% elif customer.tier > 1 %}big{% endif %}"
    assert render(source, customer={"tier": None}) == "none"
    assert render(source, customer={"tier": "x"}) == ""
    assert render(source, customer={"tier": 2}) == "big"
    with pytest.raises(RenderError, match="'tier' is undefined"):
        render("{% if customer.tier is none %}none{% endif %}", customer={})


def test_constant_templates_skip_jinja_and_render_as_written() -> None:
    constant = compile_template("Thank you! {curly} }}")
    assert constant.is_constant
    assert constant({}) == "Thank you! {curly} }}"
    assert constant.source == "Thank you! {curly} }}"
    for dynamic in ("{{ x }}", "{% if 1 %}{% endif %}", "{# note #}"):
        assert not compile_template(dynamic).is_constant
    assert compile_template("{# note #}Hi\n")({}) == "Hi\n"  # trailing newline kept, like a file


def test_autoescape_on_and_off() -> None:
    customer = {"first_name": "<b>Ann & co</b>"}
    html = "<p>Hi {{ customer.first_name }}</p>"
    assert render(html, autoescape=True, customer=customer) == (
        "<p>Hi &lt;b&gt;Ann &amp; co&lt;/b&gt;</p>"
    )
    assert render(html, customer=customer) == "<p>Hi <b>Ann & co</b></p>"


def test_template_name_is_kept() -> None:
    template = compile_template("Hi {{ customer.first_name }}", name="templates/hi.txt")
    assert template.name == "templates/hi.txt"
    assert template(make_scope()) == "Hi Ann"


# -- helper functions ----------------------------------------------------------------------
def test_days_since_and_hours_since_with_strings_and_datetimes() -> None:
    assert value("days_since('2027-03-11T09:00:00Z')") == 60.0
    assert value("days_since(trigger.at)") == 60.0
    assert value("hours_since('2027-05-10T06:30:00+00:00')") == 2.5
    assert value("hours_since('2027-05-10T11:00:00+02:00')") == 0.0
    assert value("days_since(t)", t=NOW - timedelta(days=1, hours=12)) == 1.5
    assert value("hours_since(t)", t=NOW + timedelta(hours=3)) == -3.0
    assert value("days_since(customer.last_order_at)") is None
    assert value("days_since(none)") is None
    assert holds("customer.orders_count >= 2 and days_since(trigger.at) >= 60")
    assert not holds("days_since(customer.last_order_at) >= 60")


def test_naive_times_and_dates_are_in_the_customers_zone() -> None:
    # 2027-05-10 00:00 in New York is 04:00 UTC, five hours before NOW
    assert value("hours_since('2027-05-10')", zone="America/New_York") == 5.0
    assert value("hours_since(d)", zone="America/New_York", d=date(2027, 5, 10)) == 5.0


def test_duration_and_date_arithmetic() -> None:
    assert value("duration('3d')") == timedelta(days=3)
    assert value("duration('1d12h')") == timedelta(days=1, hours=12)
    assert value("duration('PT12H')") == timedelta(hours=12)
    assert value("duration('2w') + duration('45s')") == timedelta(weeks=2, seconds=45)
    assert value("now + duration('3d')") == datetime(2027, 5, 13, 9, 0, tzinfo=UTC)
    assert render("{{ (now + duration('30m')).isoformat() }}") == "2027-05-10T09:30:00+00:00"


def test_is_anniversary_uses_the_customers_time_zone() -> None:
    # 13:00 UTC on May 11 is already May 12 (01:00) in Auckland
    now = datetime(2027, 5, 11, 13, 0, tzinfo=UTC)
    birthday = {"birthday": "1990-05-12"}
    source = "is_anniversary(customer.birthday)"
    assert value(source, customer=birthday, now=now, zone="Pacific/Auckland") is True
    assert value(source, customer=birthday, now=now) is False
    assert value(source, customer=birthday, now=now, zone="America/Los_Angeles") is False
    # an aware timestamp is moved into the customer's zone first: 20:00 UTC May 11 is May 12
    # in Auckland; at 00:30 UTC May 12 a UTC customer is on May 12, the stamp on May 11
    signup = {"signed_up_at": "2020-05-11T20:00:00Z"}
    later = datetime(2027, 5, 12, 0, 30, tzinfo=UTC)
    source = "is_anniversary(customer.signed_up_at)"
    assert value(source, customer=signup, now=later, zone="Pacific/Auckland") is True
    assert value(source, customer=signup, now=later) is False
    assert value("is_anniversary(d)", d=date(2001, 5, 10)) is True
    assert value("is_anniversary(d)", d=datetime(2001, 5, 10, 23, 0, tzinfo=UTC)) is True
    assert value("is_anniversary(customer.birthday)", customer={}) is False


@pytest.mark.parametrize(
    ("today", "expected"),
    [
        (datetime(2027, 2, 28, 12, tzinfo=UTC), True),  # not a leap year: Feb 28 stands in
        (datetime(2027, 3, 1, 12, tzinfo=UTC), False),
        (datetime(2028, 2, 28, 12, tzinfo=UTC), False),  # leap year: wait for the 29th
        (datetime(2028, 2, 29, 12, tzinfo=UTC), True),
    ],
)
def test_is_anniversary_of_feb_29(today: datetime, expected: bool) -> None:
    leapling = {"birthday": "2000-02-29"}
    assert value("is_anniversary(customer.birthday)", customer=leapling, now=today) is expected


def test_catalog_lookup() -> None:
    assert value("catalog('TEA-1').category") == "tea"
    assert value("catalog(trigger.data.items[0].sku).name") == "Green tea"
    assert value("catalog('NOPE')") is None
    assert holds("catalog(trigger.data.items[1].sku) == none")
    assert render("{{ catalog('TEA-1').name }}") == "Green tea"


def test_helpers_default_to_utc_and_an_empty_catalog() -> None:
    scope = {"now": NOW, "customer": {"birthday": "1990-05-10"}}
    assert compile_value("is_anniversary(customer.birthday)")(scope) is True
    assert compile_value("catalog('TEA-1')")(scope) is None


# -- syntax errors -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("source", "line", "col", "fragment"),
    [
        ("customer.orders_count >=", 1, 25, "end of template"),
        ("customer.first_name vip", 1, 21, "after the expression"),
        ("customer.a and\n  customer.b\n  and )", 3, 7, "unexpected ')'"),
        ("customer.a $ 2", 1, 12, "unexpected character '$'"),
        ("customer.tier | shout", 1, 17, "No filter named 'shout'"),
        ("customer.tier is gold", 1, 18, "No test named 'gold'"),
        ("", 1, 1, "end of template"),
    ],
)
def test_expression_syntax_errors_have_a_message_and_position(
    source: str, line: int, col: int, fragment: str
) -> None:
    for compile_ in (compile_condition, compile_value):
        with pytest.raises(ExpressionSyntaxError) as caught:
            compile_(source)
        error = caught.value
        assert isinstance(error, ValueError)
        assert fragment in error.message
        assert "Traceback" not in error.message
        assert (error.line, error.col) == (line, col)


def test_template_syntax_errors_have_the_line_within_the_source() -> None:
    with pytest.raises(ExpressionSyntaxError) as caught:
        compile_template("Hello,\n\nYour {{ trigger.data.items | lenght }} items", name="x.txt")
    assert caught.value.line == 3
    assert "No filter named 'lenght'" in caught.value.message
    with pytest.raises(ExpressionSyntaxError) as caught:
        compile_template("Hi\n{% if customer.vip %}VIP")
    assert caught.value.line == 2
    assert "endif" in caught.value.message
    with pytest.raises(ExpressionSyntaxError):
        compile_template("{{ customer.first_name ")


# -- sandbox -------------------------------------------------------------------------------
ESCAPES = [
    "''.__class__.__mro__[1].__subclasses__()",
    "customer.missing.__class__",
    "lipsum.__globals__",
    "'{0.__class__}'.format(1)",
    "trigger.data.items.append(1)",
    "trigger.data.items.pop()",
]


@pytest.mark.parametrize("source", ESCAPES)
def test_sandbox_escapes_fail_everywhere(source: str) -> None:
    scope = make_scope()
    assert compile_condition(f"({source}) is not none")(scope) is False
    with pytest.raises(EvalError):
        compile_value(source)(scope)
    with pytest.raises(RenderError):
        compile_template("{{ " + source + " }}")(scope)
    assert len(ORDER["data"]["items"]) == 2  # nothing was mutated


def test_mapping_methods_are_not_reachable() -> None:
    assert value("customer.__class__") is None  # a key lookup, and there is no such key
    assert value("customer.update") is None
    with pytest.raises(EvalError):
        value("customer.update({'x': 1})")
    assert "x" not in make_scope()["customer"]


def test_literal_values_are_evaluated_once_and_never_shared() -> None:
    gold = compile_value("'gold'")
    assert gold({}) == "gold"
    listed = compile_value("[1, {'a': 2}]")
    first = listed({})
    first.append(3)
    first[1]["a"] = 9
    assert listed({}) == [1, {"a": 2}]  # a caller's mutation never leaks into the next call
    assert compile_condition("true")({}) is True
    assert compile_condition("none")({}) is False


def test_two_timestamps_compare_as_instants_not_as_text() -> None:
    scope = {
        "a": "2027-01-01T10:00:00.500000Z",
        "b": "2027-01-01T10:00:00Z",
        "c": "2027-01-01T11:00:00+01:00",
    }
    assert compile_condition("a > b")(scope)  # text order would say '.' < 'Z'
    assert compile_condition("b == c")(scope)  # the same instant written two ways
    assert not compile_condition("b < c")(scope)
    assert compile_condition("'abc' < 'abd'")({})  # other strings keep text order


def test_free_names_of_an_expression_that_is_one_bare_name() -> None:
    # Jinja's find_all skips the node it starts from; a bare name is that node.
    from postflow.expressions import free_names

    assert free_names(compile_value("custmer")) == {"custmer"}
    assert free_names(compile_condition("custmer.x == 1")) == {"custmer"}
