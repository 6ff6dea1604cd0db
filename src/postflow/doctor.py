"""``postflow doctor``: say what would happen, and what would fail, without sending.

A person about to start the daemon wants, in one screen: does the configuration load, do
the journeys compile, which provider each channel would use and whether its credentials
are there, whether the webhook secrets are set (and well-formed), and whether the database
answers at the schema this postflow needs. Every check runs even when an earlier one
fails, so one run lists every problem. Nothing is sent, and no database is created or
upgraded.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import sqlalchemy as sa

from postflow import config
from postflow.problems import MissingPath, ProblemsError

Level = Literal["ok", "warn", "fail"]


@dataclass(frozen=True)
class Finding:
    level: Level
    topic: str
    text: str


def diagnose(
    config_path: str | None,
    db_option: str | None = None,
    journeys_option: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> list[Finding]:
    """Every finding, in the order a person reads them."""
    env = os.environ if environ is None else environ
    try:
        settings = config.load_settings(config_path)
    except ProblemsError as exc:
        return [Finding("fail", "configuration", str(p)) for p in exc.problems]
    except MissingPath as exc:
        return [Finding("fail", "configuration", f"no such file: {exc}")]
    where = str(settings.path) if settings.path else "none found: the defaults apply"
    found = [Finding("ok", "configuration", where)]
    found += _journeys(settings, journeys_option)
    found += _channels(settings, env)
    found += _secrets(settings, env)
    found += _database(settings, db_option)
    return found


def _journeys(settings: config.Settings, option: str | None) -> list[Finding]:
    from postflow.runtime.service import load_machines

    directory = Path(option) if option else settings.journeys
    try:
        machines = load_machines(settings, directory)
    except MissingPath:
        return [Finding("fail", "journeys", f"no such directory: {directory}")]
    except ProblemsError as exc:
        shown = [Finding("fail", "journeys", str(p)) for p in exc.problems[:10]]
        if len(exc.problems) > 10:
            shown.append(Finding("fail", "journeys", f"... {len(exc.problems) - 10} more"))
        return shown
    return [Finding("ok", "journeys", f"{len(machines)} journey(s) in {directory}")]


def _channels(settings: config.Settings, env: Mapping[str, str]) -> list[Finding]:
    from postflow.channels.base import ChannelConfigError
    from postflow.channels.registry import BASE_URL_VARS, resolve

    try:
        choices = resolve(settings, env)
    except ChannelConfigError as exc:
        return [Finding("fail", "channels", line) for line in str(exc).splitlines()]
    found = []
    for name, choice in choices.items():
        text = choice.provider
        if choice.provider == "console":
            text += " (messages are printed, not sent)"
        elif choice.path is not None:
            problem = _unwritable(choice.path)
            if problem:
                found.append(Finding("fail", name, f"channels.{name}.path: {problem}"))
                continue
            text += f" ({choice.path})"
        elif choice.provider in BASE_URL_VARS:
            base = choice.options.get("base_url")
            text += f" (credentials set{f', base URL {base}' if base else ''})"
        found.append(Finding("ok", name, text))
    return found


def _secrets(settings: config.Settings, env: Mapping[str, str]) -> list[Finding]:
    from postflow.http.signatures import sendgrid_key_problem

    http = settings.raw.get("http") or {}
    found: list[Finding] = []
    key = env.get("SENDGRID_WEBHOOK_PUBLIC_KEY")
    if key:
        problem = sendgrid_key_problem(key)
        found.append(
            Finding("fail", "sendgrid events", problem)
            if problem
            else Finding("ok", "sendgrid events", "signatures checked")
        )
    else:
        found.append(
            Finding(
                "warn", "sendgrid events", "SENDGRID_WEBHOOK_PUBLIC_KEY not set: accepted unsigned"
            )
        )
    if env.get("TWILIO_AUTH_TOKEN"):
        public = http.get("public_url")
        if public:
            found.append(Finding("ok", "twilio webhooks", f"signatures checked against {public}"))
        else:
            found.append(
                Finding(
                    "warn",
                    "twilio webhooks",
                    "http.public_url not set: no status callbacks; signatures checked "
                    "against the request's own URL",
                )
            )
    else:
        found.append(Finding("warn", "twilio webhooks", "TWILIO_AUTH_TOKEN not set: answered 503"))
    if env.get("SHOPIFY_WEBHOOK_SECRET"):
        found.append(Finding("ok", "shopify webhooks", "signatures checked"))
    else:
        found.append(
            Finding("warn", "shopify webhooks", "SHOPIFY_WEBHOOK_SECRET not set: answered 503")
        )
    if not env.get("POSTFLOW_API_TOKEN"):
        found.append(
            Finding("warn", "http api", "POSTFLOW_API_TOKEN not set: no bearer token needed")
        )
    return found


def _database(settings: config.Settings, option: str | None) -> list[Finding]:
    from postflow.runtime.service import database_url
    from postflow.store import database, migrate

    url = database_url(settings, option)
    shown = database.describe_url(url)
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError:
        return [Finding("fail", "database", f"{shown}: not a database URL")]
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        path = Path(parsed.database or "")
        if not path.exists():
            parent = path.parent if str(path.parent) else Path(".")
            if parent.is_dir() and os.access(parent, os.W_OK):
                return [Finding("ok", "database", f"{shown}: will be created on the first run")]
            return [Finding("fail", "database", f"{shown}: {parent} is not a writable directory")]
    try:
        engine = database.create_engine(url)
    except database.DatabaseError as exc:
        return [Finding("fail", "database", str(exc))]
    try:
        revision = migrate.current_revision(engine)
    except sa.exc.SQLAlchemyError as exc:
        return [Finding("fail", "database", database.explain(exc, url))]
    finally:
        engine.dispose()
    if revision == migrate.HEAD:
        return [Finding("ok", "database", f"{shown} answers, schema {revision}")]
    if revision is None:
        return [
            Finding("warn", "database", f"{shown} answers, not initialised: postflow db upgrade")
        ]
    if revision < migrate.HEAD:
        return [
            Finding("warn", "database", f"{shown} answers, schema {revision}: postflow db upgrade")
        ]
    return [Finding("fail", "database", f"{shown}: schema {revision} is newer than this postflow")]


def _unwritable(path: Path) -> str | None:
    """Why ``provider: file`` could not append to ``path`` (None: it could), creating
    nothing."""
    if path.exists():
        if path.is_dir():
            return f"{path} is a directory"
        return None if os.access(path, os.W_OK) else f"{path} is not writable"
    parent = path.parent
    if not parent.is_dir():
        return f"{parent} is not a directory"
    return None if os.access(parent, os.W_OK) else f"cannot create files in {parent}"
