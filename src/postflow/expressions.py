"""Sandboxed Jinja2 expressions and templates: the only code a journey author writes.

Conditions (``if``, ``audience``) and values (entry ``key``, ``wait.until``, ``set``/``emit``
values) are Jinja2 *expressions*; ``subject``, ``body``, template files and webhook values are
Jinja2 *templates*. Both are compiled once, when a journey is compiled, so ``validate`` reports
syntax errors and the hot path only calls compiled code: a constant string skips Jinja
entirely, and text with lookups, a lookup or a comparison of lookups skip it at run time
(:mod:`postflow.expressions_fast`, exact by construction). Input nested too deeply for Jinja's
recursive parser is refused first (:mod:`postflow.expressions_syntax`).

Why the Jinja defaults are bent (contract §2):

- Attribute lookup on a mapping is key-first and never falls back to methods, because journey
  data is JSON: ``trigger.data.items`` must be the order's list, not ``dict.items``.
- Expressions are forgiving, templates are strict. In an expression a missing name or key is
  ``none`` (a chain ``customer.a.b`` too); in a template it is an error naming the variable,
  because sending "Hi ," is worse than not sending.
- Every comparison is rewritten (:mod:`postflow.expressions_compare`), at compile time, into a
  call to a hidden comparison test, so
  ``none`` compares the way a marketer expects: ``none == none`` holds, ordering with ``none``
  or across incompatible types is false (never an error), ``!=`` is ``not ==``. Templates use
  the same tests, except that comparing an undefined value is a render error there.
- Messages read like Liquid-based tools: ``null`` renders as nothing and ``| default`` replaces
  it as it replaces a missing key.
- Everything runs in an immutable sandbox: no dunder access, no mutation of scope data.

Pure: no I/O and no clock reads; ``now`` and the per-customer :class:`Helpers` come from the
scope.
"""

from __future__ import annotations

import calendar
import copy
import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any, NoReturn
from zoneinfo import ZoneInfo

from jinja2 import ChainableUndefined, StrictUndefined, Undefined, nodes, pass_context
from jinja2 import Template as JinjaTemplate
from jinja2.exceptions import SecurityError, TemplateSyntaxError, UndefinedError
from jinja2.lexer import describe_token
from jinja2.parser import Parser
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import missing, object_type_repr

from postflow import durations, expressions_fast, history
from postflow.expressions_compare import RewriteCompares, comparison_tests, lenient, strict
from postflow.expressions_syntax import (
    ExpressionSyntaxError as ExpressionSyntaxError,  # re-exported: callers catch it from here
)
from postflow.expressions_syntax import check_depth, check_nesting, syntax_error, too_complex

Scope = dict[str, Any]
_UTC = ZoneInfo("UTC")
_DAY = timedelta(days=1)
_HOUR = timedelta(hours=1)


# -- errors ----------------------------------------------------------------------------------
class EvalError(Exception):
    """A value expression failed at run time; the engine ends the instance with ``error``."""

    def __init__(self, message: str, source: str | None = None) -> None:
        super().__init__(message if source is None else f"{message} (in expression: {source})")
        self.message = message
        self.source = source


class RenderError(Exception):
    """A template failed at run time; the message record is ``failed`` / ``render_error``.

    ``str()`` is the bare reason (``'coupon_code' is undefined``) because the contract puts the
    variable's name in the record's ``error``; ``variable`` holds that name when known.
    """

    def __init__(self, message: str, variable: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.variable = variable


# -- per-evaluation helpers ------------------------------------------------------------------
@dataclass(frozen=True)
class Helpers:
    """What the helper functions need beyond ``now``; the engine puts one at ``scope["_helpers"]``.

    Kept out of the environment so one compiled machine serves every customer and zone.
    """

    zone: ZoneInfo = _UTC
    catalog: Mapping[str, Any] = field(default_factory=dict)
    purchase_event: str = "order_placed"
    history_keep: int = 400 * 86_400_000_000


def _helpers(context: Context) -> Helpers:
    found = context.get("_helpers")
    return found if isinstance(found, Helpers) else Helpers()


def _now(context: Context) -> datetime:
    now = context.get("now")
    if not isinstance(now, datetime) or now.tzinfo is None:
        raise TypeError("'now' is not an aware datetime in this scope")
    return now


def _moment(value: Any, zone: ZoneInfo) -> datetime | None:
    """An aware datetime from what journeys carry; naive times and dates are local to ``zone``,
    because a profile's ``birthday: 1990-05-12`` means the customer's calendar, not UTC's."""
    if value is None or isinstance(value, Undefined):
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"not an ISO-8601 date or time: {value!r}") from None
    if isinstance(value, datetime):
        return value if value.utcoffset() is not None else value.replace(tzinfo=zone)
    if isinstance(value, date):
        return datetime.combine(value, time(), zone)
    raise TypeError(
        f"expected a date, a datetime or an ISO-8601 string, got {type(value).__name__}"
    )


@pass_context
def _days_since(context: Context, t: Any) -> float | None:
    moment = _moment(t, _helpers(context).zone)
    return None if moment is None else (_now(context) - moment) / _DAY


@pass_context
def _hours_since(context: Context, t: Any) -> float | None:
    moment = _moment(t, _helpers(context).zone)
    return None if moment is None else (_now(context) - moment) / _HOUR


_OFFSET = re.compile(r"([+-]?)(\d+)([dw])", re.ASCII)
_NUMERIC_TEXT = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*", re.ASCII)
_EPOCH = date(1970, 1, 1)
_MAX_ORDINAL = date.max.toordinal()


@functools.lru_cache(maxsize=256)
def _offset_days(text: str) -> int | None:
    """Days in an ``is_anniversary`` offset (``-7d``, ``1w``, ``+3d``), or ``None`` if ``text``
    is not one. Cached: journeys use a handful of literal offsets, evaluated per customer."""
    match = _OFFSET.fullmatch(text)
    if match is None or len(match[2]) > 8:  # 10**8 days is already past every date
        return None
    sign, count, unit = match.groups()
    days = int(count) * (7 if unit == "w" else 1)
    return -days if sign == "-" else days


def _calendar_date(value: Any, zone: ZoneInfo) -> date | None:
    """The calendar date ``is_anniversary`` compares, or ``None`` for anything that is not a
    date (never an exception): see :func:`_is_anniversary` for the forms."""
    if isinstance(value, bool):  # a bool is an int to Python, not a date to an author
        return None
    try:
        if isinstance(value, int | float):  # epoch seconds: the UTC date of that instant
            return _EPOCH + timedelta(seconds=value)
        if isinstance(value, str):
            if _NUMERIC_TEXT.fullmatch(value):  # "631152000", "19900512": ambiguous, not dates
                return None
            value = datetime.fromisoformat(value.strip())
        if isinstance(value, datetime):
            if value.utcoffset() is None:
                return value.date()  # naive: already the customer's local time
            return value.astimezone(zone).date()
        if isinstance(value, date):
            return value
    except (ValueError, OverflowError, OSError):  # bad ISO text, NaN, out-of-range instants
        return None
    return None


@pass_context
def _is_anniversary(context: Context, value: Any, offset: Any = "0d") -> bool:
    """``is_anniversary(date, offset="0d")`` (contract §9 "Dates"): true when the customer's
    local date today, moved back by ``offset``, has the month and day of ``date``; a 29 February
    ``date`` counts on 28 February when the moved date's year is not a leap year.

    ``offset`` is a string of an optionally signed whole number of days or weeks (``-7d`` is
    "a week before": today + 7 days is the anniversary; ``1w``, ``+3d``). ``date`` is a
    :class:`~datetime.date`, a datetime (aware: its date in the customer's zone; naive: read as
    the customer's local time), an ISO-8601 string of either, or Unix epoch seconds as an int
    or float (an instant whose *UTC* date is the date, so a birthday stored as midnight UTC
    keeps its day in every zone).

    Total, because it runs per customer on every audience tick: anything else is false, never
    an error -- ``none``, undefined, junk text, lists, booleans (not numbers here), and numeric
    *strings* such as ``"631152000"`` or ``"19900512"`` (epoch seconds or a basic-format ISO
    date? ambiguous, so neither), and so is a malformed offset (``"1h"``, ``"7"``, a number,
    ``none``). Literal offsets may be checked up front by ``validate``; this stays total anyway.
    """
    if not isinstance(offset, str):
        return False
    days = _offset_days(offset)
    if days is None:
        return False
    zone = _helpers(context).zone
    when = _calendar_date(value, zone)
    if when is None:
        return False
    ordinal = _now(context).astimezone(zone).date().toordinal() - days
    if not 1 <= ordinal <= _MAX_ORDINAL:
        return False
    moved = date.fromordinal(ordinal)
    month_day = (when.month, when.day)
    if month_day == (2, 29) and not calendar.isleap(moved.year):
        month_day = (2, 28)  # a leap-day date is celebrated on Feb 28 in other years
    return month_day == (moved.month, moved.day)


@pass_context
def _catalog(context: Context, sku: Any) -> Any:
    try:
        return _helpers(context).catalog[sku]
    except (KeyError, TypeError):
        return None


def _duration(text: Any) -> timedelta:
    """``duration("3d")``: the journey-file spellings (one parser for both), as a timedelta so
    ``now + duration("3d")`` is plain datetime arithmetic."""
    return timedelta(microseconds=durations.parse_duration(text))


def _default(value: Any, default_value: Any = "", boolean: bool = False) -> Any:
    """``| default``: JSON ``null`` counts as absent too, as in Liquid-based tools."""
    if value is None or isinstance(value, Undefined) or (boolean and not value):
        return default_value
    return value


def _finalize(value: Any) -> Any:
    """Render ``null`` as nothing rather than ``None`` in a message, and an aware datetime
    (``now``, ``now + duration("3d")``) the way records print times: ISO 8601 in UTC."""
    if value is None:
        return ""
    if isinstance(value, datetime) and value.tzinfo is not None:
        return durations.format_instant(durations.from_datetime(value))
    return value


# -- environments ----------------------------------------------------------------------------
def _undefined_message(undefined: Undefined) -> str:
    """Name the missing key itself (``'nickname' is undefined``), not ``'dict object' has no
    attribute``: the record's ``error`` must carry the variable's name."""
    if undefined._undefined_hint:
        return undefined._undefined_hint
    name = undefined._undefined_name
    if isinstance(name, str) or undefined._undefined_obj is missing:
        return f"{name!r} is undefined"
    return f"{object_type_repr(undefined._undefined_obj)} has no element {name!r}"


class _LenientUndefined(ChainableUndefined):
    __slots__ = ()

    @property
    def _undefined_message(self) -> str:
        return _undefined_message(self)


class _StrictUndefined(ChainableUndefined, StrictUndefined):
    """Strict on use, chainable on lookup: ``customer.address.city | default("-")`` works, and
    ``{{ customer.address.city }}`` names the first missing key, ``address``."""

    __slots__ = ()

    @property
    def _undefined_message(self) -> str:
        return _undefined_message(self)


class _Environment(ImmutableSandboxedEnvironment):
    """Key-first lookup on mappings, unsafe access raising at once (never a silent undefined)."""

    def getattr(self, obj: Any, attribute: str) -> Any:
        if type(obj) is dict or isinstance(obj, Mapping):
            try:
                return obj[attribute]
            except KeyError:
                return self.undefined(obj=obj, name=attribute)
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        if type(obj) is dict or isinstance(obj, Mapping):
            try:
                return obj[argument]
            except (KeyError, TypeError):
                return self.undefined(obj=obj, name=argument)
        return super().getitem(obj, argument)

    def unsafe_undefined(self, obj: Any, attribute: str) -> NoReturn:
        raise SecurityError(
            f"access to attribute {attribute!r} of {type(obj).__name__!r} object is unsafe"
        )


class _TemplateEnvironment(_Environment):
    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        check_depth(tree, source)  # before any recursive walk of the tree
        return RewriteCompares().visit(tree)  # type: ignore[no-any-return]


def _setup(env: _Environment, norm: Callable[[Any], Any]) -> _Environment:
    env.globals.update(
        days_since=_days_since,
        hours_since=_hours_since,
        duration=_duration,
        is_anniversary=_is_anniversary,
        catalog=_catalog,
        count_events=history.count_events,
        last_event_of=history.last_event_of,
        purchased=history.purchased,
    )
    env.filters["default"] = env.filters["d"] = _default
    env.tests.update(comparison_tests(norm))
    return env


_EXPRESSIONS = _setup(_Environment(undefined=_LenientUndefined), lenient)
_TEST_NAMES = frozenset(comparison_tests(lenient))
"""The tests the fast path may call: they take plain arguments, no context."""
_TEMPLATES = {
    escape: _setup(
        _TemplateEnvironment(
            undefined=_StrictUndefined,
            autoescape=escape,
            finalize=_finalize,
            keep_trailing_newline=True,  # a file's final newline survives, as in a constant
        ),
        strict,
    )
    for escape in (False, True)
}


# -- compiled objects ------------------------------------------------------------------------
def _flat_globals(env: _Environment) -> dict[str, Any]:
    """The globals a compiled template gets: a plain dict instead of Jinja's ChainMap makes
    every ``new_context`` several µs cheaper; the fast paths resolve names in the same dict."""
    return dict(env.make_globals(None))


def _describe(exc: BaseException) -> str:
    text = str(exc)
    if not text or isinstance(exc, LookupError):
        return f"{type(exc).__name__}: {text}".rstrip(": ")
    return text


_VARIES = object()
"""Marks an expression that is not a literal constant."""


class _Expression:
    __slots__ = ("source", "_template", "_fast")

    def __init__(self, source: str, template: JinjaTemplate) -> None:
        self.source = source
        self._template = template
        self._fast: expressions_fast.Evaluator | None = template.pf_fast  # type: ignore[attr-defined]

    def _run(self, scope: Scope) -> Any:
        template = self._template
        constant = template.pf_constant  # type: ignore[attr-defined]
        if constant is not _VARIES:
            return copy.deepcopy(constant) if isinstance(constant, (list, dict)) else constant
        if self._fast is not None:
            return self._fast(scope)
        return self._run_jinja(scope)

    def _run_jinja(self, scope: Scope) -> Any:
        template = self._template
        context = template.new_context(scope)
        for _ in template.root_render_func(context):
            pass
        return context.vars["result"]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.source!r})"


class Condition(_Expression):
    """A compiled ``if``/``audience``: true or false, never an exception (contract §2)."""

    __slots__ = ()

    def __call__(self, scope: Scope) -> bool:
        try:
            return bool(self._run(scope))
        except Exception:
            return False  # "an error inside a condition counts as false"


class Value(_Expression):
    """A compiled value expression; undefined becomes ``None``, failures raise
    :class:`EvalError` so the engine can end the instance with the reason."""

    __slots__ = ()

    def __call__(self, scope: Scope) -> Any:
        try:
            result = self._run(scope)
        except Exception as exc:
            raise EvalError(_describe(exc), self.source) from exc
        return None if isinstance(result, Undefined) else result


def _render_error(exc: Exception) -> RenderError:
    if isinstance(exc, UndefinedError):
        message = str(exc)
        found = re.fullmatch(r"'([^']*)' is undefined", message)
        return RenderError(message, found.group(1) if found else None)
    return RenderError(_describe(exc))


class Template:
    """A compiled template; a source without ``{{``/``{%``/``{#`` is kept as a constant, and
    one of only text and lookups renders without Jinja (see :mod:`postflow.expressions_fast`)."""

    __slots__ = ("source", "name", "is_constant", "_template", "_text", "_fast")

    def __init__(self, source: str, name: str | None, template: JinjaTemplate | None) -> None:
        self.source = source
        self.name = name
        self.is_constant = template is None
        self._template = template
        # Jinja normalises newlines to "\n"; a constant does the same so both paths agree.
        self._text = source.replace("\r\n", "\n").replace("\r", "\n")
        self._fast: Callable[[Scope], str] | None = (
            None if template is None else template.pf_fast  # type: ignore[attr-defined]
        )

    def __call__(self, scope: Scope) -> str:
        fast = self._fast
        if fast is None:
            return self._render_jinja(scope)
        try:
            return fast(scope)
        except Exception as exc:
            raise _render_error(exc) from exc

    def _render_jinja(self, scope: Scope) -> str:
        template = self._template
        if template is None:
            return self._text
        try:
            return "".join(template.root_render_func(template.new_context(scope)))
        except Exception as exc:
            raise _render_error(exc) from exc

    def __repr__(self) -> str:
        return f"Template({self.name or self.source!r})"


# -- compiling -------------------------------------------------------------------------------
@functools.lru_cache(maxsize=4096)
def _compile_expression(source: str) -> JinjaTemplate:
    """Parse with Jinja's own parser, rewrite comparisons, then wrap the expression as
    ``{% set result = EXPR %}`` -- what ``Environment.compile_expression`` does internally.
    Cached because validate and compile see the same sources, and many journeys share them."""
    env = _EXPRESSIONS
    check_nesting(source, template=False)
    try:
        parser = Parser(env, source, state="variable")  # lexes the first token: may raise
        expr = parser.parse_expression()
        if not parser.stream.eos:
            current = parser.stream.current
            message = f"unexpected {describe_token(current)!r} after the expression"
            raise TemplateSyntaxError(message, current.lineno)
        check_depth(expr, source)  # before any recursive walk of the tree
        names = _names_in(expr)
        expr = RewriteCompares().visit(expr)
        globals_ = _flat_globals(env)
        fast = expressions_fast.expression_evaluator(expr, env, globals_, _TEST_NAMES)
        body = nodes.Template([nodes.Assign(nodes.Name("result", "store"), expr)], lineno=1)
        body.set_environment(env)
        template = env.from_string(body)
        template.globals = globals_
        try:  # a literal ("'gold'", "true", "3"): evaluate once, skip Jinja at run time
            template.pf_constant = expr.as_const(nodes.EvalContext(env))  # type: ignore[attr-defined]
        except Exception:
            template.pf_constant = _VARIES  # type: ignore[attr-defined]
    except TemplateSyntaxError as exc:
        raise syntax_error(exc, source) from None
    except (RecursionError, SyntaxError):  # from Jinja's parser or Python's compiler
        raise too_complex() from None
    template.pf_names = names  # type: ignore[attr-defined]
    template.pf_fast = fast  # type: ignore[attr-defined]
    return template


@functools.lru_cache(maxsize=4096)
def _compile_template(source: str, autoescape: bool, name: str | None) -> JinjaTemplate:
    env = _TEMPLATES[autoescape]
    check_nesting(source, template=True)
    try:
        ast = env.parse(source, name, name)
        names = _names_in(ast)
        globals_ = _flat_globals(env)
        fast = expressions_fast.template_renderer(ast, env, globals_)  # before compile folds
        code = env.compile(ast, name, name)
    except TemplateSyntaxError as exc:
        raise syntax_error(exc, source) from None
    except (RecursionError, SyntaxError):  # from Jinja's parser or Python's compiler
        raise too_complex() from None
    template = env.template_class.from_code(env, code, globals_)
    template.pf_names = names  # type: ignore[attr-defined]
    template.pf_fast = fast  # type: ignore[attr-defined]
    return template


def compile_condition(source: str) -> Condition:
    """Compile an ``if``/``audience``; raises :class:`ExpressionSyntaxError`."""
    return Condition(source, _compile_expression(source))


def compile_value(source: str) -> Value:
    """Compile a value expression (``key``, ``until``, ``set``/``emit`` values)."""
    return Value(source, _compile_expression(source))


_DYNAMIC = re.compile(r"\{[{%#]")


def compile_template(source: str, *, autoescape: bool = False, name: str | None = None) -> Template:
    """Compile a template (``autoescape`` for HTML); raises :class:`ExpressionSyntaxError`.
    A source without ``{{``, ``{%`` or ``{#`` never reaches Jinja: it renders as itself."""
    if not _DYNAMIC.search(source):
        return Template(source, name, None)
    return Template(source, name, _compile_template(source, autoescape, name))


# -- names -----------------------------------------------------------------------------------
SCOPE_NAMES = frozenset({"customer", "trigger", "event", "last_event", "vars", "instance", "now"})
"""The names the engine puts in every scope (contract §2)."""
FUNCTION_NAMES = frozenset(
    {"days_since", "hours_since", "duration", "is_anniversary", "catalog", *history.NAMES}
)
"""postflow's own functions (contract §2), for "did you mean" hints."""


def _names_in(ast: nodes.Node) -> frozenset[str]:
    """Top-level names a parsed expression or template reads but does not define itself (a
    name stored anywhere, by ``for``, ``set`` or a macro, is its own), less the globals.
    Computed at compile time from the parse Jinja does anyway: ``validate`` warns about the
    ones outside :data:`SCOPE_NAMES`, since a typo such as ``custmer`` would make a condition
    always false or a message always fail."""
    loaded: set[str] = set()
    defined: set[str] = set()
    # find_all skips the node it starts from: an expression that is one bare name is that node.
    names = [ast] if isinstance(ast, nodes.Name) else []
    for name in [*names, *ast.find_all(nodes.Name)]:
        (loaded if name.ctx == "load" else defined).add(name.name)
    if next(ast.find_all(nodes.For), None) is not None:
        defined.add("loop")  # Jinja's loop variable (loop.index, loop.last) inside a for
    return frozenset(loaded - defined - set(_EXPRESSIONS.globals))


def free_names(compiled: Condition | Value | Template) -> frozenset[str]:
    """The names a compiled expression or template reads from its scope (see
    :func:`_names_in`); a constant template reads none."""
    jinja = compiled._template
    return frozenset() if jinja is None else jinja.pf_names  # type: ignore[attr-defined]
