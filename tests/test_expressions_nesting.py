"""Hostile input: expressions and templates nested or chained past what Jinja's recursive parser
(or Python's compiler, for the code Jinja generates) can take are clean, located syntax errors
-- in the library and through ``postflow validate`` -- never a RecursionError traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import write

from postflow.expressions import (
    ExpressionSyntaxError,
    RenderError,
    compile_condition,
    compile_template,
    compile_value,
)
from postflow.expressions_syntax import MAX_NESTING, MAX_OPERATIONS

DEEP = "(" * 100 + "1 == 1" + ")" * 100
TOO_DEEP = f"nested too deeply (more than {MAX_NESTING} levels of brackets)"
TOO_COMPLEX = "nested too deeply or too long to compile"


def syntax_error(compile_: Any, source: str) -> ExpressionSyntaxError:
    with pytest.raises(ExpressionSyntaxError) as caught:
        compile_(source)
    return caught.value


@pytest.mark.parametrize("compile_", [compile_condition, compile_value])
def test_deep_parentheses_in_an_expression_are_a_located_syntax_error(compile_: Any) -> None:
    error = syntax_error(compile_, DEEP)
    assert error.message == TOO_DEEP
    assert (error.line, error.col) == (1, MAX_NESTING + 1)  # the first bracket too many
    error = syntax_error(compile_, "customer.vip and\n  " + "[" * 60 + "1" + "]" * 60)
    assert (error.message, error.line, error.col) == (TOO_DEEP, 2, 3 + MAX_NESTING)
    mixed = "f(" + "[{'a': (" * 20 + "1" + ")}]" * 20 + ")"
    assert syntax_error(compile_, mixed).message == TOO_DEEP


def test_nesting_up_to_the_limit_still_works() -> None:
    at_limit = "(" * MAX_NESTING + "customer.orders >= 2" + ")" * MAX_NESTING
    assert compile_condition(at_limit)({"customer": {"orders": 3}}) is True
    lists = "[" * MAX_NESTING + "1" + "]" * MAX_NESTING
    assert compile_template("{{ " + lists + " | length }}")({}) == "1"


def test_deep_brackets_in_a_template_are_located_within_it() -> None:
    source = "Hello,\n\nYour total: {{ " + "(" * 80 + "1" + ")" * 80 + " }}\n"
    error = syntax_error(compile_template, source)
    assert (error.message, error.line, error.col) == (TOO_DEEP, 3, 16 + MAX_NESTING)
    block = "{% if " + "[" * 80 + "1" + "]" * 80 + " %}x{% endif %}"
    assert syntax_error(compile_template, block).message == TOO_DEEP


def test_brackets_that_are_not_code_do_not_count() -> None:
    parens = "(" * 300
    assert compile_template(f"{parens} {{{{ customer.name }}}}")({"customer": {"name": "A"}}) == (
        f"{parens} A"
    )
    assert compile_template("{{ '" + parens + "' }}")({}) == parens
    assert compile_template("{# " + parens + " #}{% raw %}" + parens + "{% endraw %}")({}) == parens
    assert compile_value("'" + parens + '\' ~ "[[["')({}) == parens + "[[["
    dict_in_tag = "{{ " + "{'a': " * 10 + "1" + "}" * 10 + " }}"  # '}}' inside brackets
    assert compile_template(dict_in_tag)({}) == str(eval("{'a': " * 10 + "1" + "}" * 10))


TOO_LONG = f"nested too deeply (more than {MAX_OPERATIONS} operations deep)"


@pytest.mark.parametrize(
    "source",
    [
        "not " * 300 + "customer.vip",
        "customer" + ".a" * 300,
        " + ".join(["1"] * 2000),
        "customer.name" + " | string" * 300,
        " or ".join(["customer.state == 'x'"] * 150),
    ],
)
def test_runaway_chains_of_operations_are_located_syntax_errors(source: str) -> None:
    for compile_ in (compile_condition, compile_value):
        error = syntax_error(compile_, "customer.vip and\n" + source)
        assert (error.message, error.line) == (TOO_LONG, 2)
    error = syntax_error(compile_template, "Hi,\n\n{{ " + source + " }}")
    assert (error.message, error.line) == (TOO_LONG, 3)


def test_long_but_reasonable_chains_still_work() -> None:
    states = " or ".join(f"customer.state == 's{i}'" for i in range(60))
    assert compile_condition(states)({"customer": {"state": "s59"}}) is True
    assert compile_value("not " * 90 + "customer.vip")({"customer": {"vip": True}}) is True


@pytest.mark.parametrize("tag", ["if x", "for i in x"])
def test_blocks_nested_past_what_python_compiles_are_clean_syntax_errors(tag: str) -> None:
    end = "{% end" + tag.split()[0] + " %}"
    source = ("{% " + tag + " %}") * 120 + "deep" + end * 120
    assert syntax_error(compile_template, source).message == TOO_COMPLEX


def test_deeply_nested_data_is_a_render_error_not_a_crash() -> None:
    deep: list[Any] = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(RenderError, match="recursion"):
        compile_template("{{ trigger.data }}")({"trigger": {"data": deep}})
    with pytest.raises(RenderError, match="recursion"):
        compile_template("{{ trigger.data | tojson }}")({"trigger": {"data": deep}})
    # comparing them recurses too deep: an error inside a condition counts as false
    condition = compile_condition("trigger.data == trigger.other")
    assert condition({"trigger": {"data": deep, "other": [deep]}}) is False


def test_a_bad_first_character_is_a_syntax_error_too() -> None:
    error = syntax_error(compile_condition, "$x")
    assert (error.message, error.line, error.col) == ("unexpected character '$'", 1, 1)


# -- through the command line ----------------------------------------------------------------
JOURNEY = """
    id: j
    trigger:
      event: order_placed
      if: "{deep}"
    steps:
      - id: a
        email: {{subject: "Hi", template: receipt}}
"""


def run_validate(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "postflow", "validate", "journeys"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k != "POSTFLOW_CONFIG"},
    )


def test_validate_reports_deep_nesting_located_and_exits_1(tmp_path: Path) -> None:
    write(tmp_path, "journeys/j.yaml", JOURNEY.format(deep=DEEP))
    receipt = "<p>Hi</p>\n<p>{{ " + "[" * 70 + "1" + "]" * 70 + " }}</p>\n"
    write(tmp_path, "templates/receipt.html", receipt)
    write(tmp_path, "templates/receipt.txt", "Hi\n{{ " + "not " * 400 + "customer.vip }}\n")
    proc = run_validate(tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stderr.splitlines()
    assert f"journeys/j.yaml:4:7: error: expression syntax error: {TOO_DEEP}" in lines
    html, text = str(Path("templates/receipt.html")), str(Path("templates/receipt.txt"))
    found = [line.replace(str(tmp_path) + os.sep, "") for line in lines]
    assert f"{html}:2:{7 + MAX_NESTING}: error: {TOO_DEEP}" in found
    assert f"{text}:2:1: error: {TOO_LONG}" in found
    assert lines[-1] == "1 journey file(s), 3 error(s), 0 warning(s)"
