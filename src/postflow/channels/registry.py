"""Turn ``channels:`` in postflow.yaml (plus credentials in the environment) into channels.

Resolution happens once, at startup, so a missing API key, a sender that is not an address
or an unwritable outbox path stops ``postflow run`` with a message naming the setting or
variable to fix, before any message is claimed. ``auto`` picks SendGrid (email) or Twilio
(SMS) when their credentials are set and the console otherwise, so a new project runs on a
laptop and the same files send for real in production. Secrets come only from the
environment; ``POSTFLOW_SENDGRID_BASE_URL`` / ``POSTFLOW_TWILIO_BASE_URL`` override
``base_url`` (staging, tests). Webhooks need no credentials: ``auto`` calls the URL the
journey names once some provider's credentials are set (a deployment), and prints it
otherwise, so with nothing set everything goes to the console; ``http`` always calls.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from postflow import durations
from postflow.channels.base import Channel, ChannelConfigError
from postflow.channels.console import ConsoleChannel
from postflow.channels.file import FileChannel
from postflow.config import Settings

CHANNELS = ("email", "sms", "webhook")
PROVIDERS = {
    "email": ("auto", "console", "file", "sendgrid"),
    "sms": ("auto", "console", "file", "twilio"),
    "webhook": ("auto", "console", "file", "http"),
}
CREDENTIALS = {
    "sendgrid": ("SENDGRID_API_KEY",),
    "twilio": ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN"),
}
BASE_URL_VARS = {"sendgrid": "POSTFLOW_SENDGRID_BASE_URL", "twilio": "POSTFLOW_TWILIO_BASE_URL"}
AUTO = {"email": "sendgrid", "sms": "twilio", "webhook": "http"}
DEFAULT_FILE = "outbox.jsonl"
"""Where ``provider: file`` writes without a ``path`` (relative to the config file)."""
DEFAULT_TIMEOUT = "10s"
STATUS_PATH = "/webhooks/twilio/status"
_TOKEN = re.compile(r"[\x21-\x7e]+")
_BASE_URL = re.compile(r"https?://[^\s/?#]+/?")


@dataclass(frozen=True)
class Choice:
    """The provider a channel resolved to, the file for ``file``, and the provider's
    settings (credentials included) for the network ones."""

    provider: str
    path: Path | None = None
    options: Mapping[str, Any] = field(default_factory=dict)


def resolve(settings: Settings, environ: Mapping[str, str] | None = None) -> dict[str, Choice]:
    """Choose a provider for every channel without opening anything. Raises
    :class:`ChannelConfigError` listing every problem, one per line."""
    env = os.environ if environ is None else environ
    config = settings.raw.get("channels") or {}
    choices: dict[str, Choice] = {}
    problems: list[str] = []
    for name in CHANNELS:
        conf: Mapping[str, Any] = config.get(name) or {}
        provider = str(conf.get("provider", "auto"))
        if provider not in PROVIDERS[name]:
            allowed = ", ".join(PROVIDERS[name])
            problems.append(f"channels.{name}.provider: unknown provider {provider!r} ({allowed})")
            continue
        if provider == "auto":
            provider = AUTO[name]
            if provider in CREDENTIALS and _missing(provider, env):
                provider = "console"
            elif provider == "http" and not _deployed(env):
                provider = "console"
        if provider == "file":
            path = settings.base_dir / str(conf.get("path", DEFAULT_FILE))
            choices[name] = Choice("file", Path(os.path.abspath(path)))
        elif provider == "console":
            choices[name] = Choice("console")
        else:
            try:
                choices[name] = Choice(
                    provider, options=_options(name, provider, conf, settings, env)
                )
            except ChannelConfigError as exc:
                problems.append(str(exc))
    if problems:
        raise ChannelConfigError("\n".join(problems))
    return choices


def describe(settings: Settings, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Channel name -> provider name, e.g. ``{"email": "sendgrid", "sms": "console", ...}``,
    for ``postflow doctor`` and startup logs. Raises :class:`ChannelConfigError` like
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
            elif choice.provider == "console":
                console = console or ConsoleChannel(console_stream)
                built[name] = console
            else:
                built[name] = _network_channel(choice)
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


def _missing(provider: str, env: Mapping[str, str]) -> list[str]:
    return [var for var in CREDENTIALS[provider] if not env.get(var)]


def _deployed(env: Mapping[str, str]) -> bool:
    """Some provider's credentials are set: this is a deployment, not a laptop, so ``auto``
    webhooks call their URLs (with nothing set, everything goes to the console)."""
    return any(not _missing(provider, env) for provider in CREDENTIALS)


def _checked_env(env: Mapping[str, str], var: str, pattern: re.Pattern[str], hint: str) -> str:
    value = env[var]
    if not pattern.fullmatch(value):
        raise ChannelConfigError(f"{var}: {hint}")
    return value


def _options(
    name: str, provider: str, conf: Mapping[str, Any], settings: Settings, env: Mapping[str, str]
) -> dict[str, Any]:
    """Everything a network channel is built from, checked: credentials, sender, base URL,
    timeout and rate."""
    where = f"channels.{name}"
    options: dict[str, Any] = {
        "timeout_s": _seconds(conf.get("timeout", DEFAULT_TIMEOUT), f"{where}.timeout")
    }
    if provider in CREDENTIALS:
        missing = _missing(provider, env)
        if missing:
            verb = "is" if len(missing) == 1 else "are"
            raise ChannelConfigError(
                f"{where}.provider is {provider}, but {' and '.join(missing)} {verb} not set"
            )
        for var in CREDENTIALS[provider]:
            _checked_env(env, var, _TOKEN, "holds spaces or control characters (a pasted newline?)")
        options["base_url"] = conf.get("base_url")
        if env.get(BASE_URL_VARS[provider]):
            hint = "not a base URL: write a scheme and host, like http://127.0.0.1:8999"
            options["base_url"] = _checked_env(env, BASE_URL_VARS[provider], _BASE_URL, hint)
        rate = conf.get("rate")
        if rate:
            options["rate"] = (float(rate["per_second"]), rate.get("burst"))
    if provider == "sendgrid":
        if not conf.get("from"):
            raise ChannelConfigError(f"{where}.from is not set: SendGrid needs a sender address")
        from postflow.channels.sendgrid import parse_sender

        parse_sender(str(conf["from"]), f"{where}.from")
        if conf.get("reply_to"):
            parse_sender(str(conf["reply_to"]), f"{where}.reply_to")
        options.update(
            api_key=env["SENDGRID_API_KEY"],
            sender=str(conf["from"]),
            reply_to=conf.get("reply_to"),
            unsubscribe_group_id=conf.get("unsubscribe_group_id"),
        )
    elif provider == "twilio":
        if not conf.get("from") and not conf.get("messaging_service_sid"):
            raise ChannelConfigError(
                f"{where}.from (or messaging_service_sid) is not set: Twilio needs a sender"
            )
        public = ((settings.raw.get("http") or {}).get("public_url") or "").rstrip("/")
        options.update(
            account_sid=env["TWILIO_ACCOUNT_SID"],
            auth_token=env["TWILIO_AUTH_TOKEN"],
            sender=conf.get("from"),
            messaging_service_sid=conf.get("messaging_service_sid"),
            status_callback=public + STATUS_PATH if public else None,
        )
    return options


def _seconds(value: Any, setting: str) -> float:
    try:
        return durations.parse_duration(str(value)) / 1_000_000
    except durations.DurationError as exc:
        raise ChannelConfigError(f"{setting}: {exc}") from None


def _network_channel(choice: Choice) -> Channel:
    options = dict(choice.options)
    if choice.provider == "sendgrid":
        from postflow.channels.sendgrid import SendGridChannel

        api_key = options.pop("api_key")
        return SendGridChannel(api_key, **options)
    if choice.provider == "twilio":
        from postflow.channels.twilio import TwilioChannel

        return TwilioChannel(options.pop("account_sid"), options.pop("auth_token"), **options)
    from postflow.channels.webhook import WebhookChannel

    return WebhookChannel(options["timeout_s"])


def _file_channel(name: str, path: Path) -> FileChannel:
    try:
        return FileChannel(path)
    except ChannelConfigError as exc:
        raise ChannelConfigError(f"channels.{name}.path: {exc}") from None
