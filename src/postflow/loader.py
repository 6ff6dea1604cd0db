"""YAML with positions, and JSON Schema errors as located, human messages.

Every file a user writes (journeys, ``postflow.yaml``, ``*.test.yaml``) is read here, so a
mistake is reported as ``FILE:LINE:COL: error: MESSAGE`` at the key or value that is wrong, in
words a marketer can act on ("unknown key 'stpes' (did you mean 'steps'?)") instead of
jsonschema's raw text. Positions come from walking ``yaml.compose()`` nodes with SafeLoader
semantics. Schemas are bundled in ``postflow/schemas``; annotations in them (``x-error``,
``x-name``, ``x-label``, ``x-none``, ``x-many``) word the messages, so the rules and their
wording live side by side. Events (JSON, no YAML) use :func:`explain`: same messages, keyed by
JSON path.
"""

from __future__ import annotations

import difflib
import functools
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource
from yaml.reader import ReaderError

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


@dataclass
class _Pos:
    """Where a value starts; for mappings where each key starts; the children's positions."""

    line: int
    col: int
    text: str | None = None  # source of a plain scalar, for "quote it" hints
    keys: dict[str, tuple[int, int]] = field(default_factory=dict)
    kids: dict[str | int, _Pos] = field(default_factory=dict)


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
        """(line, col), 1-based, of the value at ``path`` (else of its nearest located ancestor)."""
        node, _ = self._walk(tuple(path))
        return (node.line, node.col) if node is not None else (1, 1)

    def where_key(self, path: Path) -> tuple[int, int]:
        """(line, col) of the mapping key that is the last element of ``path``."""
        path = tuple(path)
        if path and isinstance(path[-1], str):
            parent, depth = self._walk(path[:-1])
            if parent is not None and depth == len(path) - 1 and path[-1] in parent.keys:
                return parent.keys[path[-1]]
        return self.where(path)

    def source(self, path: Path) -> str | None:
        """The source text of a plain scalar that YAML read as a non-string (``21:00``, ``yes``)."""
        node, depth = self._walk(tuple(path))
        return node.text if node is not None and depth == len(path) else None

    def problem(
        self, path: Path, message: str, *, severity: str = "error", at_key: bool = False
    ) -> Problem:
        line, col = self.where_key(path) if at_key else self.where(path)
        return Problem(self.path, line, col, severity, message)


def load_yaml(path: str | os.PathLike[str]) -> Document:
    """Read and parse one YAML file; raise :class:`ProblemsError` with located problems."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise ProblemsError([Problem(name, 1, 1, "error", f"cannot read: {e.strerror}")]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        before = raw[: e.start].decode("utf-8")
        line, col = _line_col(before, len(before))
        message = f"not UTF-8 (byte 0x{raw[e.start]:02x}): save the file as UTF-8"
        raise ProblemsError([Problem(name, line, col, "error", message)]) from None
    return load_yaml_text(text, name)


def load_yaml_text(text: str, path: str) -> Document:
    """Parse YAML text (one document); ``path`` names it in messages."""
    try:
        loader = yaml.SafeLoader(text)
    except ReaderError as e:  # raised at once for str input: a control character
        message = f"unacceptable character #x{e.character:04x}: special characters are not allowed"
        raise ProblemsError(
            [Problem(path, *_line_col(text, e.position), "error", message)]
        ) from None
    try:
        try:
            node = loader.get_single_node()
        except yaml.MarkedYAMLError as e:
            raise ProblemsError([_syntax_problem(path, e)]) from None
        if node is None:
            raise ProblemsError([Problem(path, 1, 1, "error", "empty file: expected a mapping")])
        builder = _Builder(path, loader)
        data, root = builder.build(node)
    finally:
        loader.dispose()
    if builder.problems:
        raise ProblemsError(builder.problems)
    return Document(path, data, root)


def _line_col(text: str, index: int) -> tuple[int, int]:
    before = text[:index]
    return before.count("\n") + 1, len(before) - before.rfind("\n")


def _syntax_problem(path: str, e: yaml.MarkedYAMLError) -> Problem:
    mark = e.problem_mark or e.context_mark
    line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
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


class _Builder:
    """Turns composed nodes into plain data plus a parallel tree of positions."""

    def __init__(self, file: str, loader: yaml.SafeLoader) -> None:
        self.file, self.loader = file, loader
        self.problems: list[Problem] = []
        self.done: dict[int, tuple[Any, _Pos]] = {}  # aliases share one result (no blow-up)
        self.active: set[int] = set()

    def error(self, mark: yaml.Mark, message: str) -> None:
        self.problems.append(Problem(self.file, mark.line + 1, mark.column + 1, "error", message))

    def build(self, node: yaml.Node) -> tuple[Any, _Pos]:
        key = id(node)
        if key in self.done:
            return self.done[key]
        pos = _Pos(node.start_mark.line + 1, node.start_mark.column + 1)
        if key in self.active:
            self.error(node.start_mark, "recursive alias: an anchor cannot contain itself")
            return None, pos
        self.active.add(key)
        try:
            if isinstance(node, yaml.MappingNode):
                result = self.mapping(node, pos), pos
            elif isinstance(node, yaml.SequenceNode):
                self.check_tag(node, "seq")
                items = []
                for i, child in enumerate(node.value):
                    value, pos.kids[i] = self.build(child)
                    items.append(value)
                result = items, pos
            else:
                result = self.scalar(node, pos), pos
        finally:
            self.active.discard(key)
        self.done[key] = result
        return result

    def check_tag(self, node: yaml.Node, kind: str) -> None:
        if node.tag != _TAG + kind:
            self.error(node.start_mark, f"unsupported YAML tag {node.tag!r}")

    def scalar(self, node: yaml.Node, pos: _Pos) -> Any:
        if node.tag in _AS_TEXT:
            return node.value
        if node.tag in _CONSTRUCTED:
            try:
                value = self.loader.construct_object(node)
            except (ValueError, yaml.YAMLError):
                self.error(node.start_mark, f"cannot read {node.value!r} as {node.tag}")
                return node.value
            if node.style is None and node.value:
                pos.text = node.value
            return value
        self.error(node.start_mark, f"unsupported YAML tag {node.tag!r}")
        return node.value

    def mapping(self, node: yaml.MappingNode, pos: _Pos) -> dict[str, Any]:
        self.check_tag(node, "map")
        own: dict[str, tuple[Any, tuple[int, int], _Pos]] = {}
        merged: dict[str, tuple[Any, tuple[int, int], _Pos]] = {}
        first: dict[str, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _TAG + "merge":
                for k, entry in self.merge_source(value_node).items():
                    merged.setdefault(k, entry)
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self.error(key_node.start_mark, "a key must be a plain name, not a list or mapping")
                continue
            key, mark = key_node.value, key_node.start_mark
            if key in first:
                self.error(mark, f"duplicate key '{key}' (first at line {first[key]})")
                continue
            first[key] = mark.line + 1
            value, value_pos = self.build(value_node)
            own[key] = (value, (mark.line + 1, mark.column + 1), value_pos)
        data: dict[str, Any] = {}
        for k, (value, key_pos, value_pos) in (merged | own).items():
            data[k], pos.keys[k], pos.kids[k] = value, key_pos, value_pos
        return data

    def merge_source(self, node: yaml.Node) -> dict[str, tuple[Any, tuple[int, int], _Pos]]:
        """The entries a ``<<:`` merge brings in (earlier sources win, as in YAML 1.1)."""
        sources = node.value if isinstance(node, yaml.SequenceNode) else [node]
        out: dict[str, tuple[Any, tuple[int, int], _Pos]] = {}
        for source in sources:
            if not isinstance(source, yaml.MappingNode):
                self.error(source.start_mark, "'<<' merges a mapping or a list of mappings")
                continue
            data, pos = self.build(source)
            for k in data:
                out.setdefault(k, (data[k], pos.keys[k], pos.kids[k]))
        return out


# ------------------------------------------------------------------------------ schemas


@functools.cache
def load_schema(name: str) -> dict[str, Any]:
    """A bundled schema by name (journey, event, config, testfile); cached, do not mutate."""
    if name not in SCHEMAS:
        raise ValueError(f"unknown schema {name!r} (known: {', '.join(SCHEMAS)})")
    text = (resources.files("postflow") / "schemas" / f"{name}.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@functools.cache
def _registry() -> tuple[Registry[Any], dict[int, str]]:
    """All bundled schemas by $id, and the base URI of every subschema (to resolve its $refs)."""
    base: dict[int, str] = {}

    def index(node: Any, uri: str) -> None:
        if isinstance(node, dict):
            base[id(node)] = uri
            for child in node.values():
                index(child, uri)
        elif isinstance(node, list):
            for child in node:
                index(child, uri)

    pairs = []
    for name in SCHEMAS:
        schema = load_schema(name)
        index(schema, schema["$id"])
        pairs.append((schema["$id"], Resource.from_contents(schema)))
    return Registry().with_resources(pairs), base


@functools.cache
def _validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(load_schema(name), registry=_registry()[0])


def _resolve(schema: Any) -> dict[str, Any]:
    """A subschema with its $ref followed (sibling keywords such as description win)."""
    if not isinstance(schema, dict):
        return {}
    ref = schema.get("$ref")
    if not isinstance(ref, str):
        return schema
    registry, base = _registry()
    try:
        target = registry.resolver(base_uri=base.get(id(schema), "")).lookup(ref).contents
    except Exception:  # noqa: BLE001 - a ref we cannot follow only costs message quality
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
    found = _Explainer(schema, tuple(subpath), doc.source).run(instance)
    return sorted({doc.problem(path, text, at_key=at_key) for path, at_key, text in found})


def explain(instance: Any, schema: str) -> list[tuple[Path, str]]:
    """The same messages as :func:`schema_problems`, by JSON path (for events: no YAML)."""
    found = _Explainer(schema, (), None).run(instance)
    return sorted({(p, t) for p, _, t in found}, key=lambda pt: ([_order(x) for x in pt[0]], pt[1]))


def _order(part: str | int) -> tuple[bool, str | int]:
    return isinstance(part, str), part


# ------------------------------------------------------------------------ messages

_TYPE, _SHAPE, _VALUE = 0, 1, 2  # at one place: a type error says it all; one value error
_WORDS = {"object": "a mapping", "array": "a list", "string": "a string", "integer": "an integer"}
_WORDS |= {"number": "a number", "boolean": "a boolean", "null": "null"}


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
    if value is None or isinstance(value, bool):
        return "null" if value is None else "a boolean"
    names = {int: "an integer", float: "a number", str: "a string", dict: "a mapping"}
    return names.get(type(value), "a list")


def _join(words: list[str], last: str = "or") -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} {last} {words[-1]}"


def _show(value: Any) -> str:
    return f"'{value}'" if isinstance(value, str) else json.dumps(value, default=str)


def _fmt(template: str, **values: Any) -> str:
    try:
        return template.format(**values)
    except (KeyError, IndexError, ValueError, AttributeError):
        return template


def _name(path: Path, root: str, quoted: bool = True) -> str:
    if not path:
        return root
    last = path[-1]
    if isinstance(last, int):
        return f"{_name(path[:-1], root, quoted=False)}[{last}]"
    return f"'{last}'" if quoted else last


@dataclass(frozen=True)
class _Branch:
    """The chosen branch of a oneOf at ``path``: keys of the other branches clash with ``anchor``."""

    path: Path
    others: frozenset[str]
    anchor: str


class _Explainer:
    def __init__(self, schema: str, prefix: Path, source: Callable[[Path], str | None] | None):
        self.validator = _validator(schema)
        self.root = str(load_schema(schema).get("x-name", "the document"))
        self.prefix, self.source = prefix, source

    def run(self, instance: Any) -> list[tuple[Path, bool, str]]:
        msgs = [m for e in self.validator.iter_errors(instance) for m in self.error(e, None)]
        return _prune(msgs)

    def error(self, e: ValidationError, branch: _Branch | None) -> Iterator[_Msg]:
        path: Path = self.prefix + tuple(e.absolute_path)
        kw, value, inst = e.validator, e.validator_value, e.instance
        schema = e.schema if isinstance(e.schema, dict) else {}
        name = _name(path, self.root)
        custom = schema.get("x-error")
        rel = list(e.relative_schema_path)
        if len(rel) >= 2 and rel[-2] == "propertyNames":
            text = _fmt(custom, value=inst, name=f"'{inst}'") if custom else f"bad key '{inst}'"
            yield _Msg(path + (inst,), True, text, _VALUE)
        elif kw == "type":
            yield _Msg(path, False, self.type_text(path, name, value, inst), _TYPE)
        elif kw == "required":
            for k in value:
                if k not in inst:
                    yield _Msg(path, False, f"missing required key '{k}'", _SHAPE, (k,), k)
        elif kw == "dependentRequired":
            for k, deps in value.items():
                for d in (d for d in deps if k in inst and d not in inst):
                    text = f"missing required key '{d}' (needed with '{k}')"
                    yield _Msg(path, False, text, _SHAPE, (d,))
        elif kw == "additionalProperties":
            yield from self.unknown(path, schema, inst, branch)
        elif kw in ("oneOf", "anyOf"):
            yield from self.choice(e, path, name, schema, inst)
        elif isinstance(custom, str):
            yield _Msg(path, False, _fmt(custom, value=inst, name=name), _VALUE)
        else:
            yield self.generic(e, path, name)

    def type_text(self, path: Path, name: str, expected: Any, inst: Any) -> str:
        types = [expected] if isinstance(expected, str) else list(expected)
        want = _join([_WORDS.get(t, t) for t in types])
        if inst is None:
            return f"{name} must be {want}, but it has no value"
        text = f"{name} must be {want}, not {_a(inst)}"
        src = self.source(path) if self.source else None
        if "string" in types and src and src != str(inst):
            text += f' (YAML reads {src} as {_a(inst)}: write "{src}")'
        return text

    def unknown(
        self, path: Path, schema: dict[str, Any], inst: Any, branch: _Branch | None
    ) -> Iterator[_Msg]:
        allowed = list(schema.get("properties", {}))
        patterns = list(schema.get("patternProperties", {}))
        for key in inst:
            if key in allowed or any(re.search(p, key) for p in patterns):
                continue
            if branch is not None and branch.path == path and key in branch.others:
                yield _Msg(
                    path + (key,),
                    True,
                    f"'{key}' cannot be combined with '{branch.anchor}'",
                    _SHAPE,
                )
            else:
                yield _unknown_key(path, key, allowed, inst)

    def choice(
        self, e: ValidationError, path: Path, name: str, schema: dict[str, Any], inst: Any
    ) -> Iterator[_Msg]:
        keys = _key_choice(e.validator_value)
        if keys is not None:  # "exactly one of these keys" (on a non-mapping: a type error)
            if not isinstance(inst, dict):
                return
            present = [k for k in inst if k in keys]
            label = self.label(schema, inst, name)
            found = [k for k in keys if k in inst]
            args = dict(name=label, keys=", ".join(keys), found=", ".join(found), count=len(found))
            args["found_and"] = _join(found, "and") if found else ""
            if not present:
                text = _fmt(schema.get("x-none", "{name} needs one of {keys}"), **args)
                yield _Msg(path, False, text, _SHAPE, tuple(keys))
            else:
                text = _fmt(schema.get("x-many", "{name} has {found}: use only one"), **args)
                yield _Msg(path + (present[-1],), True, text, _SHAPE)
            return
        branches = [_resolve(b) for b in e.validator_value]
        fits = [i for i, b in enumerate(branches) if _type_fits(inst, b)]
        errors = {i: [c for c in e.context if c.relative_schema_path[0] == i] for i in fits}

        def score(i: int) -> tuple[int, int, int]:
            b = branches[i]
            required = sum(k in inst for k in b.get("required", []))
            return required, sum(k in inst for k in b.get("properties", {})), -len(errors[i])

        chosen: int | None = fits[0] if len(fits) == 1 else None
        if len(fits) > 1 and isinstance(inst, dict):
            best = max(fits, key=score)
            chosen = best if score(best)[:2] != (0, 0) else None
        if chosen is not None and errors[chosen]:
            mine = branches[chosen]
            anchor = next((k for k in mine.get("required", []) if k in inst), None)
            others = {k for b in branches for k in b.get("properties", {})}
            others -= set(mine.get("properties", {}))
            ctx = _Branch(path, frozenset(others), anchor) if anchor else None
            for sub in errors[chosen]:
                yield from self.error(sub, ctx)
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

    def label(self, schema: dict[str, Any], inst: Any, name: str) -> str:
        template = schema.get("x-label")
        if isinstance(template, str) and isinstance(inst, dict):
            label = _fmt(template, **{k: v for k, v in inst.items() if isinstance(k, str)})
            if label != template:
                return label
        return name

    def generic(self, e: ValidationError, path: Path, name: str) -> _Msg:
        kw, v, inst = e.validator, e.validator_value, e.instance
        plain = _name(path, self.root, quoted=False)
        empty = f"{name} must not be empty"
        texts: dict[str | None, Callable[[], str]] = {
            "enum": lambda: f"{plain} must be one of {', '.join(map(str, v))} (got {_show(inst)})",
            "const": lambda: f"{name} must be {_show(v)}",
            "pattern": lambda: f"{name} {_show(inst)} does not match the pattern {v}",
            "format": lambda: f"{name} {_show(inst)} is not a valid {v}",
            "minLength": lambda: empty if v == 1 else f"{name} must be at least {v} characters",
            "maxLength": lambda: f"{name} must be at most {v} characters",
            "minItems": lambda: empty if v == 1 else f"{name} needs at least {v} items",
            "maxItems": lambda: f"{name} may have at most {v} items",
            "minProperties": lambda: empty if v == 1 else f"{name} needs at least {v} keys",
            "minimum": lambda: f"{name} must be at least {v} (got {_show(inst)})",
            "exclusiveMinimum": lambda: f"{name} must be greater than {v} (got {_show(inst)})",
            "maximum": lambda: f"{name} must be at most {v} (got {_show(inst)})",
            "exclusiveMaximum": lambda: f"{name} must be less than {v} (got {_show(inst)})",
        }
        if kw == "uniqueItems":
            seen: list[Any] = []
            for i, item in enumerate(inst):
                if item in seen:
                    return _Msg(path + (i,), False, f"{plain} lists {_show(item)} twice", _VALUE)
                seen.append(item)
        if kw in (None, "not", "false"):
            return _Msg(
                path,
                bool(path) and isinstance(path[-1], str),
                f"{name} is not allowed here",
                _VALUE,
            )
        text = texts[kw]() if kw in texts else f"{name}: {e.message}"
        return _Msg(path, False, text, _VALUE)


def _unknown_key(path: Path, key: str, allowed: list[str], inst: dict[str, Any]) -> _Msg:
    close = difflib.get_close_matches(key, [a for a in allowed if a not in inst], n=1, cutoff=0.6)
    if close:
        text = f"unknown key '{key}' (did you mean '{close[0]}'?)"
    elif allowed:
        text = f"unknown key '{key}' (allowed: {', '.join(allowed)})"
    else:
        text = f"unknown key '{key}' (no keys are allowed here)"
    return _Msg(path + (key,), True, text, _SHAPE, suggest=close[0] if close else None)


def _key_choice(branches: Any) -> list[str] | None:
    """The keys of a oneOf whose every branch is just ``{"required": [KEY]}``, else None."""
    keys = []
    for b in branches:
        if not (isinstance(b, dict) and set(b) == {"required"} and len(b["required"]) == 1):
            return None
        keys.append(b["required"][0])
    return keys


def _type_fits(inst: Any, branch: dict[str, Any]) -> bool:
    types = branch.get("type")
    if types is None:
        return True
    checker = Draft202012Validator.TYPE_CHECKER
    return any(checker.is_type(inst, t) for t in ([types] if isinstance(types, str) else types))


def _prune(msgs: list[_Msg]) -> list[tuple[Path, bool, str]]:
    """One verdict per place: no cascades, missing keys combined, typos silence 'missing'."""
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
