"""YAML with positions, and JSON Schema errors as located, human messages.

Every file a user writes (journeys, ``postflow.yaml``, ``*.test.yaml``) is read here, so a
mistake is reported as ``FILE:LINE:COL: error: MESSAGE`` at the key or value that is wrong, in
words a marketer can act on ("unknown key 'stpes' (did you mean 'steps'?)") instead of
jsonschema's raw text. Positions come from walking ``yaml.compose()`` nodes with SafeLoader
semantics. The bundled schemas (``postflow/schemas``) carry annotations (``x-error``,
``x-name``, ``x-label``, ``x-none``, ``x-many``) that word the messages, so each rule and its
wording live side by side. Events (JSON, no YAML) use :func:`explain`: the same messages,
keyed by JSON path.
"""

from __future__ import annotations

import difflib
import functools
import gc
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING, Any

import fastjsonschema
import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.events import (
    AliasEvent,
    DocumentEndEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)
from yaml.reader import ReaderError
from yaml.resolver import Resolver

if TYPE_CHECKING:  # imported when first needed: jsonschema only explains rejections
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import ValidationError
    from referencing import Registry

try:
    from yaml._yaml import CParser
except ImportError:  # PyYAML built without libyaml: the pure-Python parser does it all
    CParser = None  # type: ignore[assignment,misc]

from postflow import durations
from postflow.problems import Problem, ProblemsError

Path = tuple[str | int, ...]
SCHEMAS = ("journey", "event", "config", "testfile")

_TAG = "tag:yaml.org,2002:"
_AS_TEXT = {_TAG + "str", _TAG + "timestamp"}  # timestamps stay strings: the schema checks them
_CONSTRUCTED = {_TAG + t for t in ("null", "bool", "int", "float")}
_HINTS = (
    ("'\\t'", "; indent with spaces, not tabs"),
    ("mapping values are not allowed", "; quote a value that contains ': '"),
    ("expected <block end>", "; check the indentation of this line"),
)


@dataclass(init=False, slots=True)
class _Pos:
    """Where a value starts; for a mapping, where each key starts; the children's positions.
    One per value read, so its ``__init__`` is written out: twice as fast as a generated one."""

    line: int
    col: int
    text: str | None  # source of a plain scalar YAML read as a non-string ("21:00")
    block: bool  # a literal (|) or folded (>) scalar: its text starts a line lower
    keys: dict[str, tuple[int, int]]
    kids: dict[str | int, _Pos]

    def __init__(self, line: int, col: int, block: bool = False) -> None:
        self.line, self.col, self.block = line, col, block
        self.text = None
        self.keys, self.kids = {}, {}


@dataclass
class Document:
    """A loaded YAML file: its data as plain Python, and where each value came from."""

    path: str  # as given (used verbatim in messages)
    data: Any
    _root: _Pos | None = field(default=None, repr=False, compare=False)

    def _walk(self, path: Path) -> tuple[_Pos | None, int]:
        node, depth = self._root, 0
        for part in path:
            child = node.kids.get(part) if node is not None else None
            if child is None:
                break
            node, depth = child, depth + 1
        return node, depth

    def where(self, path: Path) -> tuple[int, int]:
        """(line, col), 1-based, of the value at ``path``, else of its nearest located ancestor."""
        node, _ = self._walk(tuple(path))
        return (node.line, node.col) if node is not None else (1, 1)

    def text_line(self, path: Path, line: int) -> int:
        """The file line of line ``line`` (1-based) inside the string value at ``path``: block
        scalars (``|``, ``>``) start on the line after their indicator."""
        node, depth = self._walk(tuple(path))
        start = self.where(path)[0]
        if node is not None and depth == len(tuple(path)) and node.block:
            return start + line
        return start + line - 1

    def where_key(self, path: Path) -> tuple[int, int]:
        """(line, col) of the mapping key that ends ``path`` (else :meth:`where`)."""
        path = tuple(path)
        parent, depth = self._walk(path[:-1])
        if path and parent is not None and depth == len(path) - 1 and path[-1] in parent.keys:
            return parent.keys[str(path[-1])]
        return self.where(path)

    def source(self, path: Path) -> str | None:
        """The source of a plain scalar that YAML read as a non-string (``21:00``, ``yes``)."""
        node, depth = self._walk(tuple(path))
        return node.text if node is not None and depth == len(path) else None

    def problem(
        self, path: Path, message: str, *, severity: str = "error", at_key: bool = False
    ) -> Problem:
        line, col = self.where_key(path) if at_key else self.where(path)
        return Problem(self.path, line, col, severity, message)


MAX_DEPTH = 100
"""Lists and mappings may nest at most this deep, aliases expanded (the root mapping is level 1;
a real journey nests under 10). Deeper input is refused with a located error before anything
recurses over it: PyYAML's composer, the builder below and the schema checks recurse once or
more per level, and 500 levels ended in a RecursionError."""

MAX_ALIAS_VALUES = 100_000
"""Aliases may add at most this many values (scalars, lists, mappings) to a file, each alias
counting the whole value it repeats. Loading shares what an alias repeats, but every later stage
walks the data as a tree: a "billion laughs" file (8 anchors, each repeating the previous one 9
times) would be 9^8 values there and ran out of memory. A few reused anchors add hundreds."""

MAX_FILE_BYTES = 1024 * 1024
"""A larger file (1 MiB) is refused unread, at line 1. Journeys, test files and postflow.yaml
are written by hand (the largest real ones are tens of kB). Reading is linear but PyYAML's
pure-Python parser, which reads a file with errors or without libyaml, takes seconds per MB."""


def load_yaml(path: str | os.PathLike[str]) -> Document:
    """Read and parse one YAML file; raise :class:`ProblemsError` with located problems."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > MAX_FILE_BYTES:
                message = (
                    f"file too large: {size:,} bytes (the limit is {MAX_FILE_BYTES // 2**20} MiB)"
                )
                raise ProblemsError([Problem(name, 1, 1, "error", message)])
            raw = f.read()
        text = raw.decode("utf-8")
    except OSError as e:
        raise ProblemsError([Problem(name, 1, 1, "error", f"cannot read: {e.strerror}")]) from None
    except UnicodeDecodeError as e:
        before = raw[: e.start].decode("utf-8")
        message = f"not UTF-8 (byte 0x{raw[e.start]:02x}): save the file as UTF-8"
        raise ProblemsError([_problem(name, before, len(before), message)]) from None
    return load_yaml_text(text, name)


def load_yaml_text(text: str, path: str) -> Document:
    """Parse YAML text holding one document; ``path`` names it in messages.

    Where PyYAML has libyaml, :func:`_read_fast` reads the text from libyaml's events, ~15x
    faster than PyYAML's pure-Python parser, with the same line and column marks. Whatever it
    does not take (a YAML error, anchors, tags, what libyaml reads differently: see there and
    :data:`_PY_ONLY`) is read by the pure-Python path, as before; so every problem keeps its
    wording and position, and the two agree on everything the fast path accepts.
    """
    if CParser is not None and not _PY_ONLY.search(text, 1 if text[:1] == "\ufeff" else 0):
        try:
            return _read_fast(text, path)
        except (_Bail, yaml.YAMLError):
            pass  # read it again: problems are always worded by the pure-Python parser
    return _load(text, path)


def _load(text: str, path: str) -> Document:
    """The pure-Python path: PyYAML's parser, its composer with the limits, :class:`_Builder`;
    every file was read so before libyaml was used."""
    try:
        loader = _PyLoader(text)
    except ReaderError as e:  # raised at once for str input: a control character
        message = f"unacceptable character #x{e.character:04x}: special characters are not allowed"
        raise ProblemsError([_problem(path, text, e.position, message)]) from None
    try:
        node = loader.get_single_node()
        if node is None or node.tag == _TAG + "null" and node.value == "":  # nothing, or "---"
            raise ProblemsError([Problem(path, 1, 1, "error", "empty file: expected a mapping")])
        builder = _Builder(path, loader)
        data, root = builder.build(node)
    except yaml.MarkedYAMLError as e:
        raise ProblemsError([_syntax_problem(path, e)]) from None
    finally:
        loader.dispose()
    if builder.problems:
        raise ProblemsError(builder.problems)
    return Document(path, data, root)


_PY_ONLY = re.compile(r"[\t\x85\u2028\u2029\ufeff\ud800-\udfff]|[|>][-+0-9]*#")
"""What libyaml reads otherwise than PyYAML (found by feeding both 150,000 mutated journeys):
a tab (PyYAML ends a plain scalar there), other line breaks, a byte-order mark past the start,
lone surrogates, a block scalar header running into a comment (``>#``). Such a text is read by
PyYAML alone; a false alarm (``">#"`` inside a string) only costs speed."""


class _Limits(Composer):
    """PyYAML's composer, refusing input nested deeper than :data:`MAX_DEPTH` or whose aliases
    add more than :data:`MAX_ALIAS_VALUES` values, where the offending list, mapping or alias
    starts. It refuses while composing, before any memory is spent or any recursion runs deep
    (the composer recurses: three frames a level). The fast path takes neither such input."""

    check_event: Callable[..., bool]  # the parser's
    peek_event: Callable[[], Any]

    def get_single_node(self) -> yaml.Node | None:
        self.depth, self.added = 0, 0  # open lists and mappings; values aliases added so far
        self.sizes: dict[int, tuple[int, int]] = {}  # see measure()
        return super().get_single_node()

    def compose_sequence_node(self, anchor: Any) -> yaml.SequenceNode:
        self.enter()
        node = super().compose_sequence_node(anchor)
        self.depth -= 1
        return node

    def compose_mapping_node(self, anchor: Any) -> yaml.MappingNode:
        self.enter()
        node = super().compose_mapping_node(anchor)
        self.depth -= 1
        return node

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            self.refuse(
                f"lists and mappings nest deeper than {MAX_DEPTH} levels here: flatten them"
            )

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if not self.check_event(AliasEvent):
            return super().compose_node(parent, index)
        alias = self.peek_event()
        node = super().compose_node(parent, index)
        size, height = self.measure(node)
        self.added += size
        if self.added > MAX_ALIAS_VALUES:
            message = f"alias *{alias.anchor} takes the values aliases repeat in this file past"
            self.refuse(f"{message} {MAX_ALIAS_VALUES:,} (each alias counts all it repeats)", alias)
        if self.depth + height > MAX_DEPTH:
            message = f"alias *{alias.anchor} nests lists and mappings deeper than {MAX_DEPTH}"
            self.refuse(message + " levels here", alias)
        return node

    def measure(self, node: Any) -> tuple[int, int]:
        """(values, nesting levels) of a node with its aliases expanded; memoized, and iterative
        so that no chain of aliases can recurse deep. A node still being composed (an alias
        inside its own anchor, refused later) counts as one value."""
        sizes, todo = self.sizes, [(node, False)]
        while todo:
            item, ready = todo.pop()
            if ready:
                kids = [sizes.get(id(k), (1, 0)) for k in _children(item)]
                size, height = sum(s for s, _ in kids), max((h for _, h in kids), default=0)
                sizes[id(item)] = (1 + size, 1 + height)
            elif id(item) not in sizes and isinstance(item, yaml.CollectionNode):
                if item.end_mark is None:  # still being composed
                    continue
                sizes[id(item)] = (1, 1)  # until its children are measured (cycles stop here)
                todo.append((item, True))
                todo.extend((k, False) for k in _children(item) if id(k) not in sizes)
        return sizes.get(id(node), (1, 0))

    def refuse(self, message: str, event: Any = None) -> None:
        mark = (event or self.peek_event()).start_mark
        raise _LimitError(None, None, message, mark)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return list(node.value) if isinstance(node, yaml.SequenceNode) else []


class _LimitError(yaml.MarkedYAMLError):
    """Input refused by :class:`_Limits` (reported as is, not as a syntax error)."""


class _PyLoader(_Limits, yaml.SafeLoader):
    """PyYAML's pure-Python safe loader, with the limits."""


class _Bail(Exception):
    """:func:`_read_fast` leaves this text to the pure-Python path."""


@dataclass
class _Open:
    """A list or mapping :func:`_read_fast` is filling, and the key whose value comes next."""

    data: dict[str, Any] | list[Any]
    pos: _Pos
    flow: bool
    key: str | None = None
    key_at: tuple[int, int] = (0, 0)


def _read_fast(text: str, path: str) -> Document:
    """Data and positions straight from libyaml's events, for what most journeys are: plain
    lists, mappings and scalars. It builds what :class:`_Builder` builds from PyYAML's nodes,
    iteratively, and raises :class:`_Bail` on anything else: anchors, aliases, tags, merge
    keys, keys that are lists or mappings, duplicate keys, nesting past :data:`MAX_DEPTH`, no
    document or a second one, and the plain scalars libyaml and PyYAML are known to read
    differently (an empty one: placed differently; one holding ``?`` inside ``[]`` or ``{}``:
    PyYAML ends the scalar there).

    The garbage collector is paused meanwhile: a tree holds no reference cycles, yet the
    thousands of objects it is made of would trigger collections that rescan every object the
    process holds (a quarter of this function's time when ``validate`` keeps 500 trees)."""
    reader, collecting = _CReader(text), gc.isenabled()
    gc.disable()
    try:
        data, root = _fast_tree(reader)
    finally:
        reader.dispose()
        if collecting:
            gc.enable()
    return Document(path, data, root)


def _fast_tree(reader: Any) -> tuple[Any, _Pos]:
    get, resolve, construct = reader.get_event, reader.resolve, reader.construct_object
    stack: list[_Open] = []
    flow, root = 0, None  # open flow collections; the document's value, once read
    get(), get()  # stream start, document start
    while True:
        event = get()
        kind = type(event)
        if kind is ScalarEvent:
            if event.anchor is not None or event.tag is not None:
                raise _Bail
            mark, value, plain = event.start_mark, event.value, event.style == ""
            if plain and (not value or flow and "?" in value):
                raise _Bail
            top = stack[-1] if stack else None
            if top is not None and top.key is None and type(top.data) is dict:  # a key
                if value in top.data or plain and value == "<<":
                    raise _Bail
                top.key, top.key_at = value, (mark.line + 1, mark.column + 1)
                continue
            pos = _Pos(mark.line + 1, mark.column + 1, event.style in ("|", ">"))
            tag = resolve(yaml.ScalarNode, value, event.implicit) if plain else _TAG + "str"
            if tag not in _AS_TEXT:
                if tag not in _CONSTRUCTED:
                    raise _Bail
                try:
                    value = construct(yaml.ScalarNode(tag, value, mark, mark))
                except Exception:  # 0b_ looks like an int: worded by the pure-Python path
                    raise _Bail from None
                pos.text = event.value
        elif kind is MappingStartEvent or kind is SequenceStartEvent:
            if event.anchor is not None or event.tag is not None or len(stack) == MAX_DEPTH:
                raise _Bail
            if stack and stack[-1].key is None and type(stack[-1].data) is dict:
                raise _Bail  # a list or mapping as a key
            mark, is_flow = event.start_mark, bool(event.flow_style)
            pos, flow = _Pos(mark.line + 1, mark.column + 1), flow + is_flow
            stack.append(_Open({} if kind is MappingStartEvent else [], pos, is_flow))
            continue
        elif kind is MappingEndEvent or kind is SequenceEndEvent:
            done = stack.pop()
            value, pos, flow = done.data, done.pos, flow - done.flow
        elif kind is DocumentEndEvent and root is not None:
            if type(get()) is not StreamEndEvent:
                raise _Bail  # a second document
            return root
        else:
            raise _Bail  # an alias, or no document
        if not stack:
            root = value, pos
            continue
        top = stack[-1]
        into, key = top.data, top.key
        if isinstance(into, dict):
            assert key is not None
            into[key], top.pos.keys[key], top.pos.kids[key], top.key = value, top.key_at, pos, None
        else:
            top.pos.kids[len(into)] = pos
            into.append(value)


if CParser is not None:

    class _CReader(CParser, yaml.SafeLoader):
        """libyaml's events with SafeLoader's resolver and constructors (only those)."""

        def __init__(self, text: str) -> None:
            CParser.__init__(self, text)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)


def _problem(path: str, text: str, index: int, message: str) -> Problem:
    before = text[:index]
    line, col = before.count("\n") + 1, len(before) - before.rfind("\n")
    return Problem(path, line, col, "error", message)


def _syntax_problem(path: str, e: yaml.MarkedYAMLError) -> Problem:
    mark = e.problem_mark or e.context_mark
    line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
    if isinstance(e, _LimitError):
        return Problem(path, line, col, "error", str(e.problem))
    if e.problem == "but found another document":
        message = "more than one YAML document in this file ('---' starts another): keep one"
        return Problem(path, line, col, "error", message)
    message = e.problem or e.context or "invalid YAML"
    if e.problem and e.context:
        where = e.context_mark
        at = f" at line {where.line + 1}" if where is not None and where.line + 1 != line else ""
        message += f" ({e.context}{at})"
    hint = next((h for needle, h in _HINTS if needle in message), "")
    return Problem(path, line, col, "error", f"YAML syntax error: {message}{hint}")


_Entry = tuple[Any, tuple[int, int], _Pos]  # a mapping entry: value, key position, value position


class _Builder:
    """Turns composed nodes into plain data plus a parallel tree of positions."""

    def __init__(self, file: str, loader: yaml.SafeLoader) -> None:
        self.file, self.loader = file, loader
        self.problems: list[Problem] = []
        self.done: dict[int, tuple[Any, _Pos]] = {}  # aliases share one result (no blow-up)
        self.active: set[int] = set()

    def error(self, mark: yaml.error.Mark, message: str) -> None:
        self.problems.append(Problem(self.file, mark.line + 1, mark.column + 1, "error", message))

    def build(self, node: yaml.Node) -> tuple[Any, _Pos]:
        key, mark = id(node), node.start_mark
        if key in self.done:
            return self.done[key]
        pos = _Pos(mark.line + 1, mark.column + 1)
        if key in self.active:
            self.error(mark, "recursive alias: an anchor cannot contain itself")
            return None, pos
        self.active.add(key)
        value: Any = node.value
        if isinstance(node, yaml.MappingNode):
            self.check_tag(node, {_TAG + "map"})
            value = self.mapping(node, pos)
        elif isinstance(node, yaml.SequenceNode):
            self.check_tag(node, {_TAG + "seq"})
            built = [self.build(child) for child in node.value]
            value, pos.kids = [v for v, _ in built], {i: p for i, (_, p) in enumerate(built)}
        elif self.check_tag(node, _AS_TEXT | _CONSTRUCTED) and node.tag in _CONSTRUCTED:
            try:
                value = self.loader.construct_object(node)
            except (ValueError, KeyError):  # an explicit tag on a wrong value: !!int abc, !!bool x
                self.error(mark, f"cannot read {node.value!r} as {node.tag.replace(_TAG, '!!')}")
            pos.text = node.value if getattr(node, "style", None) is None and node.value else None
        if isinstance(node, yaml.ScalarNode):
            pos.block = node.style in ("|", ">")
        self.active.discard(key)
        self.done[key] = value, pos
        return value, pos

    def check_tag(self, node: yaml.Node, allowed: set[str]) -> bool:
        if node.tag not in allowed:
            self.error(node.start_mark, f"unsupported YAML tag {node.tag!r}")
        return node.tag in allowed

    def mapping(self, node: yaml.MappingNode, pos: _Pos) -> dict[str, Any]:
        own: dict[str, _Entry] = {}
        merged: dict[str, _Entry] = {}
        for key_node, value_node in node.value:
            mark = key_node.start_mark
            if key_node.tag == _TAG + "merge":
                for k, entry in self.merge_source(value_node).items():
                    merged.setdefault(k, entry)
            elif not isinstance(key_node, yaml.ScalarNode):
                self.error(mark, "a key must be a plain name, not a list or mapping")
            elif key_node.value in own:
                first = own[key_node.value][1][0]
                self.error(mark, f"duplicate key '{key_node.value}' (first at line {first})")
            else:
                value, value_pos = self.build(value_node)
                own[key_node.value] = (value, (mark.line + 1, mark.column + 1), value_pos)
        data: dict[str, Any] = {}
        for k, (value, key_pos, value_pos) in (merged | own).items():  # own keys win, YAML 1.1
            data[k], pos.keys[k], pos.kids[k] = value, key_pos, value_pos
        return data

    def merge_source(self, node: yaml.Node) -> dict[str, _Entry]:
        """The entries a ``<<:`` merge brings in (earlier sources win)."""
        out: dict[str, _Entry] = {}
        for source in node.value if isinstance(node, yaml.SequenceNode) else [node]:
            if not isinstance(source, yaml.MappingNode):
                self.error(source.start_mark, "'<<' merges a mapping or a list of mappings")
                continue
            data, pos = self.build(source)
            for k in data if isinstance(data, dict) else ():  # None: a recursive alias
                out.setdefault(k, (data[k], pos.keys[k], pos.kids[k]))
        return out


# ------------------------------------------------------------------------------ schemas


@functools.cache
def load_schema(name: str) -> dict[str, Any]:
    """A bundled schema by name (journey, event, config, testfile); cached: do not mutate."""
    if name not in SCHEMAS:
        raise ValueError(f"unknown schema {name!r} (known: {', '.join(SCHEMAS)})")
    text = (resources.files("postflow") / "schemas" / f"{name}.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@functools.cache
def _registry() -> tuple[Registry[Any], dict[int, str]]:
    """All bundled schemas by $id, and the base URI of every subschema (to follow its $refs)."""
    from referencing import Registry, Resource

    base: dict[int, str] = {}

    def index(node: Any, uri: str) -> None:
        if isinstance(node, dict | list):
            base[id(node)] = uri
            for child in node.values() if isinstance(node, dict) else node:
                index(child, uri)

    for name in SCHEMAS:
        index(load_schema(name), load_schema(name)["$id"])
    pairs = [(load_schema(n)["$id"], Resource.from_contents(load_schema(n))) for n in SCHEMAS]
    return Registry().with_resources(pairs), base


@functools.cache
def _validator(name: str) -> Draft202012Validator:
    """jsonschema, which words every rejection; imported here, on the first one, as a valid
    journey never needs it and importing it costs a tenth of ``validate``'s start-up."""
    from jsonschema import Draft202012Validator

    return Draft202012Validator(load_schema(name), registry=_registry()[0])


def _resolve(schema: Any) -> dict[str, Any]:
    """A subschema with its $ref followed (sibling keywords such as description win)."""
    if not isinstance(schema, dict) or not isinstance(schema.get("$ref"), str):
        return schema if isinstance(schema, dict) else {}
    registry, base = _registry()
    try:
        target = registry.resolver(base.get(id(schema), "")).lookup(schema["$ref"]).contents
    except Exception:  # a $ref we cannot follow only costs message quality
        return schema
    return {**_resolve(target), **{k: v for k, v in schema.items() if k != "$ref"}}


def schema_problems(doc: Document, schema: str, *, subpath: Path = ()) -> list[Problem]:
    """Validate ``doc.data`` (or the part at ``subpath``) against a bundled schema."""
    instance = doc.data
    try:
        for part in subpath:
            instance = instance[part]
    except (KeyError, IndexError, TypeError):
        return []
    if schema in _FAST_SCHEMAS and _fast_valid(schema, instance):
        return []
    found = _Explainer(schema, tuple(subpath), doc.source).run(instance)
    return sorted({doc.problem(path, text, at_key=at_key) for path, at_key, text in found})


_FAST_SCHEMAS = ("journey",)
"""Schemas also compiled with fastjsonschema: ~50x faster than jsonschema on valid input, which
keeps ``validate`` of hundreds of files fast. It only answers "valid?": any rejection is
explained by jsonschema. A test checks both agree on every good and bad journey we have."""


@functools.cache
def _fast_validator(name: str) -> Any:
    return fastjsonschema.compile(_one_key_rewritten(load_schema(name)))


def _one_key_rewritten(schema: Any) -> Any:
    """A copy of ``schema`` where each "exactly one of these keys" (a ``oneOf`` whose branches
    are ``{"required": [KEY]}``, see :func:`_key_choice`) says the same without ``oneOf``: some
    key is there (``not`` all absent) and each key rules out the others (``dependencies``).
    fastjsonschema tries every branch of a ``oneOf`` and raises and catches an exception for
    each that fails (nine per step), which made this check three quarters of its time. Only
    the valid? answer uses this copy; jsonschema explains rejections from the original."""
    if isinstance(schema, list):
        return [_one_key_rewritten(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _one_key_rewritten(v) for k, v in schema.items()}
    keys = _key_choice(schema["oneOf"]) if isinstance(schema.get("oneOf"), list) else None
    if keys:
        del out["oneOf"]
        others = {k: {"properties": {o: False for o in keys if o != k}} for k in keys}
        some = {"not": {"properties": {k: False for k in keys}}}
        out["allOf"] = [*out.get("allOf", []), some, {"dependencies": others}]
    return out


def _fast_valid(name: str, instance: Any) -> bool:
    try:
        _fast_validator(name)(instance)
    except fastjsonschema.JsonSchemaException:
        return False
    return True


def _checked(check: Any, value: Any) -> str | None:
    """A schema's ``x-check`` names the parser that knows the value best: its own message
    ("units go from largest to smallest, e.g. 1d12h") beats the generic pattern's."""
    if check != "duration" or not isinstance(value, str):
        return None
    try:
        durations.parse_duration(value)
    except durations.DurationError as exc:
        return str(exc)
    return None


def explain(instance: Any, schema: str) -> list[tuple[Path, str]]:
    """The same messages as :func:`schema_problems`, by JSON path (for events: no YAML)."""
    found = {(path, text) for path, _, text in _Explainer(schema, (), None).run(instance)}
    return sorted(found, key=lambda pt: ([(isinstance(x, str), x) for x in pt[0]], pt[1]))


# ------------------------------------------------------------------------------ messages

_TYPE, _SHAPE, _VALUE = 0, 1, 2  # at one place: a type error says it all; one value error
_WORDS = {"object": "a mapping", "array": "a list", "string": "a string", "integer": "an integer"}
_WORDS |= {"number": "a number", "boolean": "a boolean", "null": "null"}
_GENERIC: dict[str, str | tuple[str, str]] = {  # a pair: (when the limit is 1, otherwise)
    "enum": "{plain} must be one of {options} (got {got})",
    "const": "{name} must be {want}",
    "pattern": "{name} {got} does not match the pattern {v}",
    "format": "{name} {got} is not a valid {v}",
    "minLength": ("{name} must not be empty", "{name} must be at least {v} characters"),
    "maxLength": "{name} must be at most {v} characters",
    "minItems": ("{name} must not be empty", "{name} needs at least {v} items"),
    "maxItems": "{name} may have at most {v} items",
    "minProperties": ("{name} must not be empty", "{name} needs at least {v} keys"),
    "minimum": "{name} must be at least {v} (got {got})",
    "exclusiveMinimum": "{name} must be greater than {v} (got {got})",
    "maximum": "{name} must be at most {v} (got {got})",
    "exclusiveMaximum": "{name} must be less than {v} (got {got})",
}


@dataclass(frozen=True)
class _Msg:
    path: Path
    at_key: bool
    text: str
    rank: int
    needs: tuple[str, ...] = ()  # keys whose absence this reports (a typo of one silences it)
    required: str | None = None  # a missing required key (several at one mapping combine)
    suggest: str | None = None  # an unknown key's close match


def _a(value: Any) -> str:
    """The kind of a value in the words of :data:`_WORDS` ("a mapping", "an integer")."""
    kinds = {bool: "boolean", int: "integer", float: "number", str: "string", dict: "object"}
    return _WORDS["null" if value is None else kinds.get(type(value), "array")]


def _join(words: list[str], last: str = "or") -> str:
    return ", ".join(words[:-1]) + f" {last} " + words[-1] if len(words) > 1 else "".join(words)


def _show(value: Any) -> str:
    return f"'{value}'" if isinstance(value, str) else json.dumps(value, default=str)


def _fmt(template: str, /, **values: Any) -> str:
    try:
        return template.format(**values)
    except (KeyError, IndexError, ValueError, AttributeError):
        return template


def _name(path: Path, root: str, quoted: bool = True) -> str:
    if not path:
        return root
    if isinstance(path[-1], int):
        return f"{_name(path[:-1], root, quoted=False)}[{path[-1]}]"
    return f"'{path[-1]}'" if quoted else path[-1]


class _Explainer:
    def __init__(self, schema: str, prefix: Path, source: Callable[[Path], str | None] | None):
        self.validator = _validator(schema)
        self.root = str(load_schema(schema).get("x-name", "the document"))
        self.prefix, self.source = prefix, source

    def run(self, instance: Any) -> list[tuple[Path, bool, str]]:
        return _prune([m for e in self.validator.iter_errors(instance) for m in self.error(e)])

    def error(
        self, e: ValidationError, clash: tuple[Path, set[str], str] | None = None
    ) -> Iterator[_Msg]:
        """Messages for one jsonschema error; ``clash``: (where, keys, anchor) of a oneOf."""
        path: Path = self.prefix + tuple(e.absolute_path)
        kw, value, inst = e.validator, e.validator_value, e.instance
        schema = e.schema if isinstance(e.schema, dict) else {}
        name, custom = _name(path, self.root), schema.get("x-error")
        if list(e.relative_schema_path)[-2:-1] == ["propertyNames"]:
            text = _fmt(custom, value=inst, name=f"'{inst}'") if custom else f"bad key '{inst}'"
            yield _Msg(path + (inst,), True, text, _VALUE)
        elif kw == "type":
            yield _Msg(path, False, self.type_text(path, name, value, inst), _TYPE)
        elif kw == "required":
            for k in (k for k in value if k not in inst):
                yield _Msg(path, False, f"missing required key '{k}'", _SHAPE, (k,), k)
        elif kw == "additionalProperties":
            allowed, patterns = list(schema.get("properties", {})), schema.get("patternProperties")
            for key in inst:
                if key in allowed or any(re.search(p, key) for p in patterns or ()):
                    continue
                if clash and clash[0] == path and key in clash[1]:
                    text = f"'{key}' cannot be combined with '{clash[2]}'"
                    yield _Msg(path + (key,), True, text, _SHAPE)
                else:
                    yield _unknown_key(path, key, allowed, inst)
        elif kw in ("oneOf", "anyOf"):
            yield from self.choice(e, path, name, schema, inst)
        elif isinstance(custom, str):
            text = _checked(schema.get("x-check"), inst) or _fmt(custom, value=inst, name=name)
            yield _Msg(path, False, text, _VALUE)
        else:
            yield self.generic(e, path, name)

    def type_text(self, path: Path, name: str, expected: Any, inst: Any) -> str:
        types = [expected] if isinstance(expected, str) else list(expected)
        want = _join([_WORDS.get(t, t) for t in types])
        if inst is None:
            return f"{name} must be {want}, but it has no value"
        src = self.source(path) if self.source else None
        hint = f' (YAML reads {src} as {_a(inst)}: write "{src}")'
        return f"{name} must be {want}, not {_a(inst)}" + (
            hint if "string" in types and src and src != str(inst) else ""
        )

    def choice(
        self, e: ValidationError, path: Path, name: str, schema: dict[str, Any], inst: Any
    ) -> Iterator[_Msg]:
        keys = _key_choice(e.validator_value)
        if keys is not None:  # "exactly one of these keys"; a non-mapping has a type error
            if isinstance(inst, dict):
                yield self.one_key(path, name, schema, inst, keys)
            return
        branches = [_resolve(b) for b in e.validator_value]
        fits = [i for i, b in enumerate(branches) if _type_fits(inst, b)]
        errors = {i: [c for c in e.context if c.relative_schema_path[0] == i] for i in fits}

        def score(i: int) -> tuple[int, int, int]:  # how well a mapping fits branch i
            b = branches[i]
            required = sum(k in inst for k in b.get("required", []))
            return required, sum(k in inst for k in b.get("properties", {})), -len(errors[i])

        chosen = fits[0] if len(fits) == 1 else None
        if len(fits) > 1 and isinstance(inst, dict):
            best = max(fits, key=score)
            chosen = best if score(best)[:2] != (0, 0) else None
        if chosen is not None and errors[chosen]:  # report the errors of the branch meant
            mine = branches[chosen]
            anchor = next((k for k in mine.get("required", []) if k in inst), None)
            others = {k for b in branches for k in b.get("properties", {})}
            clash = (path, others - set(mine.get("properties", {})), anchor) if anchor else None
            for sub in errors[chosen]:
                yield from self.error(sub, clash)
            return
        if isinstance(inst, dict):  # no branch fits: typos first, they explain the rest
            union = list(dict.fromkeys(k for b in branches for k in b.get("properties", {})))
            typos = [_unknown_key(path, k, union, inst) for k in inst if k not in union]
            yield from typos
            if any(t.suggest for t in typos):
                return
        if "x-error" in schema:
            yield _Msg(path, False, _fmt(schema["x-error"], value=inst, name=name), _VALUE)
            return
        forms = [b.get("description") or _WORDS.get(str(b.get("type")), "") for b in branches]
        text = f"{name} must be {_join([f for f in forms if f])}"
        yield _Msg(path, False, text + ("" if fits else f", not {_a(inst)}"), _VALUE)

    def one_key(
        self, path: Path, name: str, schema: dict[str, Any], inst: dict[str, Any], keys: list[str]
    ) -> _Msg:
        """A mapping that needs exactly one of ``keys`` has none or several (x-none, x-many)."""
        template = str(schema.get("x-label", ""))
        label = _fmt(template, **inst)
        found = [k for k in keys if k in inst]
        args: dict[str, Any] = dict(name=label if template and label != template else name)
        args |= dict(keys=", ".join(keys), found=", ".join(found), count=len(found))
        args["found_and"] = _join(found, "and")
        if not found:
            text = _fmt(schema.get("x-none", "{name} needs one of {keys}"), **args)
            return _Msg(path, False, text, _SHAPE, tuple(keys))
        last = [k for k in inst if k in keys][-1]
        text = _fmt(schema.get("x-many", "{name} has {found_and}: use only one"), **args)
        return _Msg(path + (last,), True, text, _SHAPE)

    def generic(self, e: ValidationError, path: Path, name: str) -> _Msg:
        kw, v, inst = e.validator, e.validator_value, e.instance
        plain = _name(path, self.root, quoted=False)
        if kw == "uniqueItems":
            i = next((i for i, item in enumerate(inst) if item in inst[:i]), 0)
            return _Msg(path + (i,), False, f"{plain} lists {_show(inst[i])} twice", _VALUE)
        if kw in (None, "not"):  # a false schema: this key may not be here
            at_key = bool(path) and isinstance(path[-1], str)
            return _Msg(path, at_key, f"{name} is not allowed here", _VALUE)
        template = _GENERIC.get(str(kw), "{name}: {message}")
        if isinstance(template, tuple):
            template = template[v != 1]
        options = ", ".join(map(str, v)) if kw == "enum" else ""
        values = dict(name=name, plain=plain, v=v, got=_show(inst), want=_show(v))
        return _Msg(
            path, False, template.format(options=options, message=e.message, **values), _VALUE
        )


def _unknown_key(path: Path, key: str, allowed: list[str], inst: dict[str, Any]) -> _Msg:
    close = difflib.get_close_matches(key, [a for a in allowed if a not in inst], n=1, cutoff=0.6)
    if close:
        text = f"unknown key '{key}' (did you mean '{close[0]}'?)"
    else:
        text = f"unknown key '{key}' (allowed: {', '.join(allowed) or 'none'})"
    return _Msg(path + (key,), True, text, _SHAPE, suggest=close[0] if close else None)


def _key_choice(branches: Any) -> list[str] | None:
    """The keys of a oneOf whose every branch is just ``{"required": [KEY]}``, else None."""
    ok = all(
        isinstance(b, dict) and list(b) == ["required"] and len(b["required"]) == 1
        for b in branches
    )
    return [b["required"][0] for b in branches] if ok else None


def _type_fits(inst: Any, branch: dict[str, Any]) -> bool:
    from jsonschema import Draft202012Validator

    types = branch.get("type", list(_WORDS))
    checker = Draft202012Validator.TYPE_CHECKER
    return any(checker.is_type(inst, t) for t in ([types] if isinstance(types, str) else types))


def _prune(msgs: list[_Msg]) -> list[tuple[Path, bool, str]]:
    """One verdict per place: no cascades, missing keys combined, a typo silences 'missing'."""
    typos = {(m.path[:-1], m.suggest) for m in msgs if m.suggest}
    groups: dict[tuple[Path, bool], list[_Msg]] = {}
    for m in msgs:
        if not any((m.path, k) in typos for k in m.needs):
            groups.setdefault((m.path, m.at_key), []).append(m)
    out: list[tuple[Path, bool, str]] = []
    for (path, at_key), group in groups.items():
        texts = [m.text for m in group if m.rank == _TYPE][:1]
        if not texts:
            texts = [m.text for m in group if m.rank == _SHAPE and m.required is None]
            missing = [f"'{k}'" for k in dict.fromkeys(m.required for m in group if m.required)]
            if missing:
                plural = "s" if len(missing) > 1 else ""
                texts.append(f"missing required key{plural} {_join(missing, 'and')}")
            texts += [m.text for m in group if m.rank == _VALUE][:1]
        out += [(path, at_key, text) for text in dict.fromkeys(texts)]
    return out
