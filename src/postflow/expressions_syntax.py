"""Syntax errors of journey expressions and templates, and the limits that keep hostile input
from reaching Jinja's recursive parser and compiler.

An author's typo must come back as ``FILE:LINE:COL: error: ...``, never a traceback; so must
an expression nested a hundred brackets deep, which would otherwise end in a RecursionError
from Jinja's parser (about 14 Python frames a bracket) or in a SyntaxError from Python
compiling the code Jinja generates for it.
"""

from __future__ import annotations

import re

from jinja2 import nodes
from jinja2.exceptions import TemplateSyntaxError


class ExpressionSyntaxError(ValueError):
    """A journey's expression or template cannot be compiled; ``validate`` locates it.

    ``line`` and ``col`` are 1-based within the source (``col`` is best effort, 1 if unknown)
    so the caller can add the position of the YAML value or template file.
    """

    def __init__(self, message: str, line: int = 1, col: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.col = col


def column(text: str, line: int, message: str) -> int:
    """Best-effort 1-based column (Jinja reports lines only): the lexer's offset, else the end
    of the line for a premature end, else the one place on the line the message quotes."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    at = re.search(r"unexpected char .* at (\d+)$", message)
    if at:
        pos = int(at.group(1))
        return pos - (text.rfind("\n", 0, pos) + 1) + 1
    lines = text.split("\n")
    if not 1 <= line <= len(lines):
        return 1
    row = lines[line - 1]
    if "end of template" in message:
        return len(row.rstrip()) + 1
    for quoted in re.findall(r"'([^']+)'", message):
        if row.count(quoted) == 1:
            return row.index(quoted) + 1
    return 1


def syntax_error(exc: TemplateSyntaxError, source: str) -> ExpressionSyntaxError:
    message = exc.message or "syntax error"
    line = exc.lineno or 1
    col = column(source, line, message)
    message = re.sub(r"^unexpected char (.*) at \d+$", r"unexpected character \1", message)
    return ExpressionSyntaxError(message, line, col)


MAX_NESTING = 50
"""Brackets nested deeper than this are refused before Jinja's recursive parser sees them (it
needs about 14 Python frames a level, so 70 levels already exhaust the default stack)."""
_TAG_START = re.compile(r"\{\{|\{%|\{#")
_STRING_REST = {q: re.compile(rf"[^{q}\\]*(?:\\.[^{q}\\]*)*{q}", re.S) for q in "'\""}
"""The rest of a string literal after its opening quote, as Jinja's lexer reads it."""
_CODE = re.compile(r"""[()\[\]{}'"%]""")
"""What matters inside a tag: brackets, quotes, and ``%`` (of a closing ``%}``)."""
_RAW = re.compile(r"\{%[-+]?\s*raw\s*[-+]?%\}")
_END_RAW = re.compile(r"\{%[-+]?\s*endraw\s*[-+]?%\}")


def check_nesting(source: str, *, template: bool) -> None:
    """Refuse brackets nested more than :data:`MAX_NESTING` deep, located at the first bracket
    too many. Only code counts: in a template the text outside ``{{ }}``/``{% %}`` (comments
    and raw blocks too), and everywhere the inside of string literals, are skipped the way
    Jinja's lexer skips them; a closing brace ends a tag only outside brackets, as there."""
    if sum(source.count(bracket) for bracket in "([{") <= MAX_NESTING:
        return  # the common case, settled without a scan
    text = source.replace("\r\n", "\n").replace("\r", "\n")
    pos, depth, end = 0, 0, None if template else ""
    while pos < len(text):
        if end is None:  # in template text: find the next tag
            found = _TAG_START.search(text, pos)
            if found is None:
                return
            if found.group() == "{#":
                pos = text.find("#}", found.end())
            elif (raw := _RAW.match(text, found.start())) is not None:
                after = _END_RAW.search(text, raw.end())
                pos = -1 if after is None else after.end()
            else:
                pos, end = found.end(), "}}" if found.group() == "{{" else "%}"
            if pos < 0:
                return  # unterminated: Jinja reports it
            continue
        code = _CODE.search(text, pos)
        if code is None:
            return
        pos, char = code.start(), code.group()
        if char in "'\"":
            found = _STRING_REST[char].match(text, pos + 1)
            if found is None:
                return  # unterminated string: Jinja reports it
            pos = found.end()
            continue
        if depth == 0 and end and text.startswith(end, pos):
            pos, end = pos + 2, None
            continue
        if char in "([{":
            depth += 1
            if depth > MAX_NESTING:
                line = text.count("\n", 0, pos) + 1
                col = pos - (text.rfind("\n", 0, pos) + 1) + 1
                message = f"nested too deeply (more than {MAX_NESTING} levels of brackets)"
                raise ExpressionSyntaxError(message, line, col)
        elif char in ")]}":
            depth = max(depth - 1, 0)
        pos += 1


MAX_OPERATIONS = 100
"""Operations nested deeper than this (``not not ...``, ``a.b.c...``, ``x | f | f ...``,
``a or b or ...``) are refused: Jinja's compiler takes time cubic in the depth (0.2 s at
100, 10 s at 300) and Python stops compiling its output at about 200."""


def check_depth(tree: nodes.Node, source: str) -> None:
    """Refuse a parsed expression or template whose operations nest more than
    :data:`MAX_OPERATIONS` deep, located at the line of the first one too deep. Walked with
    an explicit stack, since the point is that recursion would not survive it. Every level
    takes at least one character of ``source`` (an operator, a dot, a bracket, a name), so a
    short source is settled without the walk."""
    if len(source) <= MAX_OPERATIONS:
        return
    stack: list[tuple[nodes.Node, int]] = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, nodes.Expr):
            depth += 1
            if depth > MAX_OPERATIONS:
                message = f"nested too deeply (more than {MAX_OPERATIONS} operations deep)"
                raise ExpressionSyntaxError(message, node.lineno or 1)
        for name in node.fields:
            child = getattr(node, name, None)
            if isinstance(child, nodes.Node):
                stack.append((child, depth))
            elif isinstance(child, list):
                stack.extend((item, depth) for item in child if isinstance(item, nodes.Node))


def too_complex() -> ExpressionSyntaxError:
    """What is left once brackets and operations are bounded: blocks nested past what Python
    compiles (20 ``for`` loops, 100 indents), a call stack already deep. Jinja then fails with
    a RecursionError or Python's own SyntaxError (about its generated code, so its details
    would only mislead); both mean the same thing to an author."""
    return ExpressionSyntaxError("nested too deeply or too long to compile")
