"""Helpers for the provider acceptance tests: a project whose CLI and daemon run with
provider credentials and base URLs in their environment, and small readers of what the
SendGrid and Twilio fakes received.

``helpers.Project`` and ``helpers.Daemon`` run the CLI with ``clean_env()``, which drops every
``SENDGRID_*`` / ``TWILIO_*`` variable so that a developer's real keys never reach a test.
These subclasses add back exactly the variables a test names (pointing at loopback fakes).
"""

from __future__ import annotations

import collections
import json
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from fakes import FakeSendGrid, FakeServer, FakeTwilio
from helpers import COMMAND, Daemon, Project, Result, clean_env, iso

T = TypeVar("T")

SENDER = "Shop <hi@shop.example>"
SMS_FROM = "+15555550100"
WAIT_TIMEOUT = 120.0
"""Seconds a condition gets before the test fails: generous, so a slow machine passes."""


def provider_env(
    *,
    sendgrid: FakeSendGrid | None = None,
    twilio: FakeTwilio | None = None,
    credentials: bool = True,
) -> dict[str, str]:
    """The variables that point the real SDKs at the fakes: base URLs always, and the
    credentials the fakes expect unless ``credentials`` is False."""
    env: dict[str, str] = {}
    if sendgrid is not None:
        env["POSTFLOW_SENDGRID_BASE_URL"] = sendgrid.base_url
        if credentials:
            env["SENDGRID_API_KEY"] = sendgrid.api_key
    if twilio is not None:
        env["POSTFLOW_TWILIO_BASE_URL"] = twilio.base_url
        if credentials:
            env["TWILIO_ACCOUNT_SID"] = twilio.account_sid
            env["TWILIO_AUTH_TOKEN"] = twilio.auth_token
    return env


class ProviderProject(Project):
    """A :class:`helpers.Project` with its own ``channels:`` / ``dispatch:`` settings whose
    CLI commands and daemons get ``env`` on top of ``clean_env()``."""

    def __init__(
        self,
        root: Path,
        *,
        journeys: dict[str, str],
        channels: Mapping[str, Any],
        dispatch: Mapping[str, Any] | None = None,
        db_url: str | None = None,
        poll: str = "1s",
        lease: str = "2s",
        env: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(root, db_url=db_url, poll=poll, lease=lease, journeys=journeys)
        self.env = dict(env or {})
        settings: dict[str, Any] = {
            "timezone": "UTC",
            "templates": "templates",
            "worker": {"batch": self.batch, "poll": poll, "lease": lease},
            "channels": dict(channels),
            "log": {"format": "json"},
        }
        if dispatch is not None:
            settings["dispatch"] = dict(dispatch)
        self.config.write_text(yaml.safe_dump(settings, sort_keys=False), encoding="utf-8")

    def environment(self) -> dict[str, str]:
        return {**clean_env(), **self.env}

    def cli(self, *args: str, timeout: float = 300.0, check: bool = True) -> Result:
        proc = subprocess.run(
            [*COMMAND, *args],
            cwd=self.root,
            env=self.environment(),
            capture_output=True,
            timeout=timeout,
        )
        result = Result(proc.returncode, proc.stdout.decode(), proc.stderr.decode())
        if check and proc.returncode != 0:
            raise AssertionError(f"postflow {' '.join(args)} exited {proc.returncode}:\n{result}")
        return result

    def load(self, events: list[dict[str, Any]]) -> Result:
        """Create the schema (PostgreSQL needs it first) and ingest ``events``."""
        self.upgrade()
        return self.ingest(self.events_file(events))

    def daemon(self, name: str = "d") -> EnvDaemon:
        return EnvDaemon(self, name)

    def outbox_rows(self, channel: str | None = None) -> dict[str, dict[str, Any]]:
        """message_id -> the outbox row's delivery columns (of one channel, or all)."""
        sql = (
            "SELECT message_id, channel, status, attempts, error, provider, provider_id, "
            "to_address FROM outbox"
        )
        params: tuple[Any, ...] = ()
        if channel is not None:
            sql += " WHERE channel = ?"
            params = (channel,)
        names = ("channel", "status", "attempts", "error", "provider", "provider_id", "to")
        return {row[0]: dict(zip(names, row[1:], strict=True)) for row in self.query(sql, *params)}


class EnvDaemon(Daemon):
    """``helpers.Daemon`` started with the project's provider environment."""

    project: ProviderProject

    def start(self, *extra: str) -> EnvDaemon:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.starts += 1
        log_path = self.project.root / f"daemon-{self.name}-{self.starts}.log"
        self.log_paths.append(log_path)
        with log_path.open("wb") as err:
            self.proc = subprocess.Popen(
                [
                    *COMMAND,
                    "run",
                    "--journeys",
                    str(self.project.journeys),
                    *self.project.db_args(),
                    *extra,
                ],
                cwd=self.project.root,
                env=self.project.environment(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        return self


# -- waiting -----------------------------------------------------------------------------------
def wait_for(
    check: Callable[[], T | None],
    what: str,
    *,
    daemons: Sequence[Daemon] = (),
    timeout: float = WAIT_TIMEOUT,
    interval: float = 0.2,
) -> T:
    """Poll ``check`` until it returns something truthy and return it. Fails after
    ``timeout`` seconds, or as soon as one of ``daemons`` has exited (with its stderr)."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        for d in daemons:
            if not d.alive():
                raise AssertionError(
                    f"daemon {d.name} exited ({d.proc and d.proc.returncode}) while waiting "
                    f"for {what}:\n{d.stderr()[-4000:]}"
                )
        if time.monotonic() > deadline:
            logs = "\n".join(d.stderr()[-3000:] for d in daemons)
            raise AssertionError(f"no {what} within {timeout}s\n{logs}")
        time.sleep(interval)


# -- the fakes ---------------------------------------------------------------------------------
def clear_script(fake: FakeServer) -> None:
    """Drop the answers still queued: from now on the fake answers Ok (the provider has
    recovered)."""
    fake.clear_script()


def sendgrid_ids(requests: Iterable[Any]) -> list[str]:
    """``custom_args.postflow_message_id`` of each valid SendGrid send request, in order."""
    out = []
    for r in requests:
        if r.answer is not None and isinstance(r.json, dict):
            out.append(r.json["custom_args"]["postflow_message_id"])
    return out


def counts(items: Iterable[str]) -> collections.Counter[str]:
    return collections.Counter(items)


# -- projects and events -------------------------------------------------------------------------
def order_events(n: int, at_us: int, *, phone: bool = True) -> list[dict[str, Any]]:
    """One ``order_placed`` per customer ``c000``...: all at ``at_us``, each with an email
    address and (optionally) a valid, unique E.164 phone number."""
    out = []
    for i in range(n):
        customer: dict[str, Any] = {"email": f"c{i:03d}@example.com", "first_name": "Ann"}
        if phone:
            customer["phone"] = f"+1555{i:07d}"
        out.append(
            {
                "id": f"order-{i}",
                "type": "order_placed",
                "customer_id": f"c{i:03d}",
                "at": iso(at_us),
                "customer": customer,
                "data": {"order_id": f"o{i}", "total": 20},
            }
        )
    return out


def message_records(history: list[str]) -> list[dict[str, Any]]:
    return [r for r in map(json.loads, history) if r["kind"] == "message"]
