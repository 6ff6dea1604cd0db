"""Turn ``channels:`` in postflow.yaml (plus credentials in the environment) into channels.

Resolution happens once, at startup, so a missing API key or an unwritable outbox path
stops ``postflow run`` with a message naming the setting to fix, before any message is
claimed. ``auto`` is meant to pick SendGrid/Twilio when their credentials are set; until
those channels exist it always resolves to the console, and asking for them explicitly is
an error. Webhook messages go to the console as well until a webhook channel exists.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from postflow.channels.base import Channel, ChannelConfigError
from postflow.channels.console import ConsoleChannel
from postflow.channels.file import FileChannel
from postflow.config import Settings

CHANNELS = ("email", "sms", "webhook")
PROVIDERS = {
    "email": ("auto", "console", "file", "sendgrid"),
    "sms": ("auto", "console", "file", "twilio"),
}
CREDENTIALS = {
    "sendgrid": ("SENDGRID_API_KEY",),
    "twilio": ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN"),
}
DEFAULT_FILE = "outbox.jsonl"
"""Where ``provider: file`` writes without a ``path`` (relative to the config file)."""


@dataclass(frozen=True)
class Choice:
    """The provider a channel resolved to, and the file for ``file``."""

    provider: str
    path: Path | None = None


def resolve(settings: Settings, environ: Mapping[str, str] | None = None) -> dict[str, Choice]:
    """Choose a provider for every channel without opening anything. Raises
    :class:`ChannelConfigError` listing every problem, one per line."""
    env = os.environ if environ is None else environ
    config = settings.raw.get("channels") or {}
    choices: dict[str, Choice] = {"webhook": Choice("console")}
    problems: list[str] = []
    for name in ("email", "sms"):
        conf: Mapping[str, Any] = config.get(name) or {}
        provider = str(conf.get("provider", "auto"))
        if provider not in PROVIDERS[name]:
            allowed = ", ".join(PROVIDERS[name])
            problems.append(f"channels.{name}.provider: unknown provider {provider!r} ({allowed})")
        elif provider == "auto":
            choices[name] = Choice("console")  # later: sendgrid/twilio when credentials are set
        elif provider == "file":
            path = settings.base_dir / str(conf.get("path", DEFAULT_FILE))
            choices[name] = Choice("file", Path(os.path.abspath(path)))
        elif provider in CREDENTIALS:
            problems.append(_unavailable(name, provider, env))
        else:
            choices[name] = Choice(provider)
    if problems:
        raise ChannelConfigError("\n".join(problems))
    return choices


def describe(settings: Settings, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Channel name -> provider name, e.g. ``{"email": "console", "sms": "file", ...}``, for
    ``postflow doctor`` and startup logs. Raises :class:`ChannelConfigError` like
    :func:`build_channels`, but opens nothing."""
    return {name: choice.provider for name, choice in resolve(settings, environ).items()}


def build_channels(
    settings: Settings,
    *,
    console_stream: TextIO | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Channel]:
    """A channel for each of ``email``, ``sms`` and ``webhook``. Channels resolving to the
    same provider share one instance (one console, one FileChannel per file), so a shared
    file still gets whole lines. Close them with :func:`close_channels`."""
    choices = resolve(settings, environ)
    console: ConsoleChannel | None = None
    files: dict[Path, FileChannel] = {}
    built: dict[str, Channel] = {}
    try:
        for name in CHANNELS:
            choice = choices[name]
            if choice.path is not None:
                if choice.path not in files:
                    files[choice.path] = _file_channel(name, choice.path)
                built[name] = files[choice.path]
            else:
                console = console or ConsoleChannel(console_stream)
                built[name] = console
    except ChannelConfigError:
        close_channels(built.values())
        raise
    return built


def close_channels(channels: Iterable[Channel]) -> None:
    """Close each distinct channel once (shared instances appear under several names)."""
    seen: set[int] = set()
    for channel in channels:
        if id(channel) not in seen:
            seen.add(id(channel))
            channel.close()


def _file_channel(name: str, path: Path) -> FileChannel:
    try:
        return FileChannel(path)
    except ChannelConfigError as exc:
        raise ChannelConfigError(f"channels.{name}.path: {exc}") from None


def _unavailable(name: str, provider: str, env: Mapping[str, str]) -> str:
    missing = [var for var in CREDENTIALS[provider] if not env.get(var)]
    where = f"channels.{name}.provider is {provider}"
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        return f"{where}, but {' and '.join(missing)} {verb} not set"
    return (
        f"{where}, but the {provider} channel is not available in this version yet "
        f"(use auto, console or file)"
    )
