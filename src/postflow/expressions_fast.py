"""Jinja-free renderers for the templates and expressions that are only lookups.

Most journey text is literal text and ``{{ trigger.data.order_id }}``-style lookups, and most
keys and conditions are a lookup or a comparison of one. For those, Jinja's per-call work (a
new context copying the globals, a generator, the code object) costs several times what the
lookups do. :func:`template_renderer` and :func:`expression_evaluator` recognise them in the
parse Jinja does anyway and return a plain function instead; anything else gets ``None`` and
keeps Jinja.

Exactness is by construction, not by imitation: the functions make the very calls Jinja's
generated code makes, in the same order, on the same environment -- ``environment.getattr`` /
``getitem`` (key-first lookup, the sandbox), ``environment.undefined(name=...)`` for a missing
name, ``finalize`` then ``str``/``escape`` for output, the environment's test functions for
comparisons -- and resolve names the way ``new_context`` does (scope first, then the
template's globals). Constants in output are folded the way Jinja's compiler folds them.
The only code of their own is an inlined key lookup on a plain ``dict`` (and an index into a
``list``) that falls back to the environment's method whenever it does not simply succeed, so
misses, errors and everything unusual still take Jinja's path. tests/test_expressions_fast.py
compares both renderings on generated templates, expressions and scopes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from jinja2 import nodes
from jinja2.environment import Environment
from markupsafe import escape

Scope = dict[str, Any]
Step = tuple[bool, Any]
"""One lookup step: (True, name) is ``.name``, (False, key) is ``[key]``."""
Lookup = tuple[str, tuple[Step, ...]]

_NAMES_WITH_MEANING = frozenset({"self", "super", "loop", "caller", "varargs", "kwargs"})
"""Names Jinja's compiler may bind itself instead of resolving them from the context."""
_MAX_DEPTH = 16
"""Deeper expressions keep Jinja: nested closures must not recurse where Jinja does not."""

_NO = object()


def _scalar(node: nodes.Node) -> Any:
    """The value of a literal the compiler writes back as Python source that evaluates to an
    equal value of the same type (``repr``): strings, numbers, booleans, ``none``; a
    negated number too (the optimizer folds ``-1``). Not ``1e999``: Jinja writes ``inf``."""
    if type(node) is nodes.Neg and type(node.node) is nodes.Const:
        value = node.node.value
        if type(value) in (int, float):
            value = -value
        else:
            return _NO
    elif type(node) is nodes.Const:
        value = node.value
    else:
        return _NO
    if value is None or type(value) in (str, int, bool):
        return value
    if type(value) is float and math.isfinite(value):
        return value
    return _NO


def _lookup(node: nodes.Node) -> Lookup | None:
    """``name``, ``name.attr``, ``name[CONST]`` and chains of them, else None."""
    steps: list[Step] = []
    while True:
        if type(node) is nodes.Getattr:
            steps.append((True, node.attr))
        elif type(node) is nodes.Getitem:
            key = _scalar(node.arg)
            if key is _NO:
                return None
            steps.append((False, key))
        elif type(node) is nodes.Name:
            if node.ctx != "load" or node.name in _NAMES_WITH_MEANING:
                return None
            steps.reverse()
            return node.name, tuple(steps)
        else:
            return None
        node = node.node


Evaluator = Callable[[Scope], Any]


def _getter(lookup: Lookup, env: Environment, names: dict[str, Any]) -> Evaluator:
    """Evaluate a lookup as Jinja's generated code does (see the module docstring): the name
    from the scope, else the globals, else ``undefined(name=...)``; then each step through
    ``environment.getattr``/``getitem``, with a plain ``dict`` (and a ``list`` by an int)
    tried inline first -- any miss or oddity goes to the environment, which decides."""
    name, steps = lookup
    undefined = env.undefined
    # (key, inline on a list too, the environment's method) per step
    plan = tuple(
        (key, not attribute and type(key) is int, env.getattr if attribute else env.getitem)
        for attribute, key in steps
    )

    def get(scope: Scope) -> Any:
        if name in scope:
            value = scope[name]
        elif name in names:
            value = names[name]
        else:
            value = undefined(name=name)
        for key, by_index, method in plan:
            kind = type(value)
            if kind is dict or (by_index and kind is list):
                try:
                    value = value[key]
                    continue
                except Exception:
                    pass  # a miss: the environment decides what it is, or raises the same way
            value = method(value, key)
        return value

    return get


# -- templates -------------------------------------------------------------------------------
def _folded(value: Any, env: Environment) -> str:
    """A constant in output, as Jinja's compiler folds it (``_output_child_to_const``): escaped
    *before* finalize, so ``{{ none }}`` prints ``None`` in an HTML template, nothing in text."""
    if env.autoescape:
        value = escape(value)
    return str(env.finalize(value) if env.finalize else value)


def template_renderer(
    ast: nodes.Template, env: Environment, names: dict[str, Any]
) -> Callable[[Scope], str] | None:
    """A renderer for a parsed template made only of text, constants and lookups, else None.
    ``names`` is the compiled template's globals. Only for an environment whose autoescape is
    one fixed answer (not a function), whose finalize takes just the value (no
    ``pass_context``: Jinja would not fold constants then) and that is not async."""
    if (
        not isinstance(env.autoescape, bool)
        or getattr(env.finalize, "jinja_pass_arg", None) is not None
        or env.is_async
    ):
        return None
    parts: list[str | Evaluator] = []
    for output in ast.body:
        if type(output) is not nodes.Output:
            return None
        for child in output.nodes:
            if type(child) is nodes.TemplateData:
                text = child.data
            elif (value := _scalar(child)) is not _NO:
                text = _folded(value, env)
            elif (lookup := _lookup(child)) is not None:
                parts.append(_getter(lookup, env, names))
                continue
            else:
                return None
            if parts and type(parts[-1]) is str:
                parts[-1] += text
            else:
                parts.append(text)
    return _render_parts(tuple(parts), env)


def _render_parts(parts: tuple[str | Evaluator, ...], env: Environment) -> Callable[[Scope], str]:
    """Jinja's ``yield str(finalize(x))`` (``escape(finalize(x))`` in HTML), joined."""
    finalize = env.finalize or (lambda value: value)

    def text(value: Any) -> str:
        return value if type(value) is str else str(finalize(value))  # a str is kept as is

    def html(value: Any) -> str:
        return escape(value if type(value) is str else finalize(value))

    output = html if env.autoescape else text
    if len(parts) == 1:
        (only,) = parts
        if type(only) is str:
            return lambda scope: only
        return lambda scope: "".join((output(only(scope)),))  # type: ignore[operator]
    return lambda scope: "".join(
        [part if type(part) is str else output(part(scope)) for part in parts]  # type: ignore[operator]
    )


# -- expressions -----------------------------------------------------------------------------


def expression_evaluator(
    expr: nodes.Expr, env: Environment, names: dict[str, Any], tests: frozenset[str]
) -> Evaluator | None:
    """An evaluator for an expression built only from lookups, scalar literals, ``not``,
    ``and``, ``or`` and the named ``tests`` (postflow's comparison tests, which take their
    operands as plain arguments), else None. Jinja compiles those to ``(not x)``,
    ``(a and b)``, ``(a or b)`` and ``test(a, b)``: so do these closures."""
    return _Builder(env, names, tests).build(expr, 0)


class _Builder:
    def __init__(self, env: Environment, names: dict[str, Any], tests: frozenset[str]) -> None:
        self.env, self.names, self.tests = env, names, tests

    def build(self, node: nodes.Node, depth: int) -> Evaluator | None:
        if depth > _MAX_DEPTH:
            return None
        value = _scalar(node)
        if value is not _NO:
            return lambda scope: value
        lookup = _lookup(node)
        if lookup is not None:
            return _getter(lookup, self.env, self.names)
        if type(node) is nodes.Not:
            inner = self.build(node.node, depth + 1)
            return None if inner is None else (lambda scope: not inner(scope))
        if type(node) is nodes.And or type(node) is nodes.Or:
            left, right = self.build(node.left, depth + 1), self.build(node.right, depth + 1)
            if left is None or right is None:
                return None
            if type(node) is nodes.And:
                return lambda scope: left(scope) and right(scope)
            return lambda scope: left(scope) or right(scope)
        if type(node) is nodes.Test:
            return self.test(node, depth)
        return None

    def test(self, node: nodes.Test, depth: int) -> Evaluator | None:
        if node.name not in self.tests or node.kwargs or node.dyn_args or node.dyn_kwargs:
            return None
        test: Any = self.env.tests[node.name]  # typed as a bare "function" by Jinja
        first = self.build(node.node, depth + 1)
        if first is None or len(node.args) > 1:
            return None
        if not node.args:
            return lambda scope: test(first(scope))
        second = self.build(node.args[0], depth + 1)
        if second is None:
            return None
        return lambda scope: test(first(scope), second(scope))
