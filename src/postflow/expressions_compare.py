"""The comparison rules of journey expressions and templates (contract §2), kept apart from the
environments that use them.

Every comparison is rewritten, at compile time, into a call to a hidden comparison test, so
``none`` compares the way a marketer expects: ``none == none`` holds, ordering with ``none``
or across incompatible types is false (never an error), ``!=`` is ``not ==``; ISO strings
compare with datetimes and two ISO timestamps as instants.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from datetime import datetime
from typing import Any

from jinja2 import Undefined, nodes
from jinja2.visitor import NodeTransformer

from postflow import durations


def _looks_like_instant(text: str) -> bool:
    return len(text) >= 17 and text[4] == "-" and text[10] == "T" and text[:4].isdigit()


def _coerce_times(a: Any, b: Any) -> tuple[Any, Any] | None:
    """Let an ISO string compare with a datetime (``customer.last_order_at < now``), because
    event and profile times are strings in JSON while ``now`` is a datetime; and two ISO
    timestamps compare as instants (``...T10:00:00.5Z`` is after ``...T10:00:00Z``, which text
    order gets wrong)."""
    try:
        if isinstance(a, str) and isinstance(b, str):
            if _looks_like_instant(a) and _looks_like_instant(b):
                return durations.parse_instant(a), durations.parse_instant(b)
            return None
        if isinstance(a, datetime) and isinstance(b, str):
            return a, datetime.fromisoformat(b)
        if isinstance(b, datetime) and isinstance(a, str):
            return datetime.fromisoformat(a), b
    except (ValueError, durations.DurationError):
        pass
    return None


def _equal(a: Any, b: Any) -> bool:
    if a is b:
        return True
    if a is None or b is None:
        return False
    try:
        if a == b:
            return True
        pair = _coerce_times(a, b)
        return pair is not None and bool(pair[0] == pair[1])
    except Exception:
        return False


def _order(a: Any, b: Any, op: Callable[[Any, Any], Any]) -> bool:
    if a is None or b is None:
        return False
    if isinstance(a, str) and isinstance(b, str):
        pair = _coerce_times(a, b)
        if pair is not None:
            return bool(op(*pair))
    try:
        return bool(op(a, b))
    except TypeError:
        pair = _coerce_times(a, b)
        try:
            return pair is not None and bool(op(*pair))
        except Exception:
            return False
    except Exception:
        return False


def _contains(a: Any, b: Any) -> bool:
    if b is None:
        return False
    try:
        return bool(a in b)
    except Exception:
        return False


def lenient(value: Any) -> Any:
    return None if isinstance(value, Undefined) else value


def strict(value: Any) -> Any:
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()
    return value


def comparison_tests(norm: Callable[[Any], Any]) -> dict[str, Callable[..., bool]]:
    """The hidden tests Compare nodes become, named ``(eq)``, ``(lt)``... (names the grammar
    cannot produce, so a user cannot call them), plus a ``none`` test that agrees with them;
    ``norm`` maps undefined to none (expressions) or raises (templates)."""

    def ordered(op: Callable[[Any, Any], Any]) -> Callable[[Any, Any], bool]:
        return lambda a, b: _order(norm(a), norm(b), op)

    return {
        "(eq)": lambda a, b: _equal(norm(a), norm(b)),
        "(ne)": lambda a, b: not _equal(norm(a), norm(b)),
        "(lt)": ordered(operator.lt),
        "(lteq)": ordered(operator.le),
        "(gt)": ordered(operator.gt),
        "(gteq)": ordered(operator.ge),
        "(in)": lambda a, b: _contains(norm(a), norm(b)),
        "(notin)": lambda a, b: not _contains(norm(a), norm(b)),
        "none": lambda a: norm(a) is None,
    }


class RewriteCompares(NodeTransformer):
    """``a < b < c`` becomes ``(a is (lt)(b)) and (b is (lt)(c))``: Python short-circuits the
    same way, and ``b`` is pure, so evaluating it twice is harmless."""

    def visit_Compare(self, node: nodes.Compare) -> nodes.Expr:
        self.generic_visit(node)
        left: nodes.Expr = node.expr
        result: nodes.Expr | None = None
        for operand in node.ops:
            name = f"({operand.op})"
            test = nodes.Test(left, name, [operand.expr], [], None, None, lineno=node.lineno)
            result = test if result is None else nodes.And(result, test, lineno=node.lineno)
            left = operand.expr
        assert result is not None  # the parser never builds a Compare without operands
        return result
