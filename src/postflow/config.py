"""``postflow.yaml`` (plus environment variables) turned into one immutable :class:`Settings`.

``simulate``, ``test``, ``run`` and ``report`` all read their configuration through
:func:`load_settings`, so limits, quiet hours and the default time zone act identically in
every command. Paths in the file are relative to the file; with no file the defaults apply,
relative to the working directory.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import phonenumbers
import yaml

from postflow import durations, loader
from postflow.machine import MESSAGE_KINDS, QuietHours, SendWindow, weekdays
from postflow.problems import MissingPath, Problem, ProblemsError

DEFAULT_DATABASE = "sqlite:///postflow.db"


@dataclass(frozen=True)
class Limit:
    """At most ``max`` marketing messages on a channel per ``per`` microseconds."""

    max: int
    per: int


@dataclass(frozen=True)
class Settings:
    path: Path | None
    base_dir: Path
    database: str
    journeys: Path
    templates: Path
    catalog: Mapping[str, Any]
    timezone: str
    zone: ZoneInfo
    default_region: str | None
    purchase_event: str
    quiet_hours: QuietHours | None
    limits: Mapping[str, Limit]
    raw: Mapping[str, Any] = field(default_factory=dict)
    tag_limits: Mapping[str, Mapping[str, Limit]] = field(default_factory=dict)
    """tag -> channel -> limit (``limits.tags``)."""
    send_window: SendWindow | None = None
    history_keep: int = 400 * 86_400_000_000
    """``history.keep``: how far back expressions see applied events."""


def find_config(explicit: str | os.PathLike[str] | None) -> Path | None:
    """``--config FILE``, else ``POSTFLOW_CONFIG``, else ``./postflow.yaml`` if it exists."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("POSTFLOW_CONFIG")
    if env:
        return Path(env)
    default = Path("postflow.yaml")
    return default if default.is_file() else None


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Overrides win key by key; nested mappings merge (used by journey test files)."""
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def load_settings(
    explicit: str | os.PathLike[str] | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
    overrides_doc: loader.Document | None = None,
    overrides_at: tuple[str | int, ...] = (),
) -> Settings:
    """Read, validate and resolve the configuration. Raises :class:`ProblemsError` with located
    messages for anything wrong in the file, or in ``overrides`` (a journey test file's
    ``config:``; its problems are located in ``overrides_doc`` under ``overrides_at``)."""
    path = find_config(explicit)
    data: dict[str, Any] = {}
    doc: loader.Document | None = None
    if path is not None:
        if not path.is_file():
            raise MissingPath(f"{path} (the configuration file)")
        doc = loader.load_yaml(path)
        if not isinstance(doc.data, dict):
            raise ProblemsError([doc.problem((), "the configuration must be a mapping")])
        problems = loader.schema_problems(doc, "config")
        if problems:
            raise ProblemsError(problems)
        data = doc.data
    if overrides:
        data = deep_merge(data, overrides)
    # Not resolved: paths stay as the user wrote them, so messages read journeys/x.yaml.
    base_dir = path.parent if path is not None else Path()
    overridden = (overrides or {}, overrides_doc, overrides_at)
    return _resolve(data, base_dir, path, doc, overridden)


def _resolve(
    data: dict[str, Any],
    base_dir: Path,
    path: Path | None,
    doc: loader.Document | None,
    overridden: tuple[Mapping[str, Any], loader.Document | None, tuple[str | int, ...]],
) -> Settings:
    problems: list[Problem] = []
    where = str(path) if path else "postflow.yaml"
    overrides, overrides_doc, overrides_at = overridden

    def problem(keys: tuple[str | int, ...], message: str) -> None:
        if overrides_doc is not None and keys and keys[0] in overrides:
            problems.append(overrides_doc.problem((*overrides_at, *keys), message))
        elif doc is not None:
            problems.append(doc.problem(keys, message))
        else:
            problems.append(Problem(where, 1, 1, "error", f"{'.'.join(map(str, keys))}: {message}"))

    timezone = str(data.get("timezone", "UTC"))
    zone = ZoneInfo("UTC")
    try:
        zone = durations.load_zone(timezone)
    except durations.DurationError as exc:
        problem(("timezone",), str(exc))

    region = data.get("default_region")
    if region is not None and str(region).upper() not in phonenumbers.SUPPORTED_REGIONS:
        problem(
            ("default_region",), f"unknown region '{region}' (use a two-letter code such as US)"
        )

    quiet: QuietHours | None = None
    qh = data.get("quiet_hours")
    if isinstance(qh, Mapping):
        try:
            start = durations.parse_time_of_day(str(qh["start"]))
            end = durations.parse_time_of_day(str(qh["end"]))
            if start == end:
                problem(("quiet_hours", "end"), "quiet hours start and end are equal")
            quiet = QuietHours(start, end, frozenset(qh.get("channels") or MESSAGE_KINDS))
        except durations.DurationError as exc:
            problem(("quiet_hours",), str(exc))

    keep = 400 * 86_400_000_000
    history_conf = data.get("history") or {}
    if "keep" in history_conf:
        try:
            keep = durations.parse_duration(str(history_conf["keep"]))
        except durations.DurationError as exc:
            problem(("history", "keep"), str(exc))

    window: SendWindow | None = None
    sw = data.get("send_window")
    if isinstance(sw, Mapping):
        try:
            start = durations.parse_time_of_day(str(sw["start"]))
            end = durations.parse_time_of_day(str(sw["end"]))
            if start == end:
                problem(("send_window", "end"), "send window start and end are equal")
            channels = frozenset(sw.get("channels") or MESSAGE_KINDS)
            window = SendWindow(weekdays(sw.get("days")), start, end, channels)
        except durations.DurationError as exc:
            problem(("send_window",), str(exc))

    limits: dict[str, Limit] = {}
    tag_limits: dict[str, dict[str, Limit]] = {}
    for channel, limit in (data.get("limits") or {}).items():
        if channel == "tags":
            for tag, per_channel in (limit or {}).items():
                for kind, tag_limit in (per_channel or {}).items():
                    parsed = _limit(tag_limit, ("limits", "tags", tag, kind), problem)
                    if parsed is not None:
                        tag_limits.setdefault(tag, {})[kind] = parsed
            continue
        parsed = _limit(limit, ("limits", channel), problem)
        if parsed is not None:
            limits[channel] = parsed

    catalog: Mapping[str, Any] = {}
    if data.get("catalog"):
        catalog_path = base_dir / str(data["catalog"])
        if catalog_path.is_file():
            try:
                loaded = yaml.safe_load(catalog_path.read_text(encoding="utf-8")) or {}
            except yaml.YAMLError as exc:
                mark = getattr(exc, "problem_mark", None)
                problems.append(
                    Problem(
                        str(catalog_path),
                        mark.line + 1 if mark else 1,
                        mark.column + 1 if mark else 1,
                        "error",
                        f"invalid YAML: {getattr(exc, 'problem', exc)}",
                    )
                )
                loaded = {}
            if not isinstance(loaded, Mapping):
                problems.append(
                    Problem(
                        str(catalog_path), 1, 1, "error", "the catalog must map SKUs to records"
                    )
                )
            else:
                catalog = {str(k): v for k, v in loaded.items()}
        else:
            problem(("catalog",), f"catalog file not found: {catalog_path}")

    if problems:
        raise ProblemsError(problems)
    database = os.environ.get("POSTFLOW_DATABASE_URL") or str(
        data.get("database", DEFAULT_DATABASE)
    )
    return Settings(
        path=path,
        base_dir=base_dir,
        database=database,
        journeys=base_dir / str(data.get("journeys", "journeys")),
        templates=base_dir / str(data.get("templates", "templates")),
        catalog=catalog,
        timezone=timezone,
        zone=zone,
        default_region=str(region).upper() if region else None,
        purchase_event=str(data.get("purchase_event", "order_placed")),
        quiet_hours=quiet,
        limits=limits,
        tag_limits=tag_limits,
        send_window=window,
        history_keep=keep,
        raw=data,
    )


def _limit(
    value: Mapping[str, Any], where: tuple[str, ...], problem: Callable[..., None]
) -> Limit | None:
    try:
        return Limit(int(value["max"]), durations.parse_duration(str(value["per"])))
    except durations.DurationError as exc:
        problem((*where, "per"), str(exc))
        return None
