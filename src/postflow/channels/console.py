"""Print messages instead of sending them: the channel that needs no account.

It is what ``auto`` resolves to without credentials, so a new project runs end to end on a
laptop and shows, message by message, what customers would receive. Webhooks print here
too until a real webhook channel exists (method, URL, headers and JSON body). Each message
is rendered into one string and written with one ``write`` under a lock, then flushed, so
blocks from concurrent dispatcher threads never mix and a piped stdout shows them at once.
Header values that look like credentials are masked: this output ends up in logs.
"""

from __future__ import annotations

import io
import os
import re
import sys
import threading
from typing import Any, TextIO

import orjson

from postflow.channels.base import Delivery, os_error_text
from postflow.durations import format_instant
from postflow.effects import OutboundMessage

INDENT = "  "
_SECRET_HEADER = re.compile(r"auth|token|secret|key|cookie|signature|password", re.IGNORECASE)
_STYLES = {"head": "bold cyan", "meta": "dim", "body": ""}

Line = tuple[str, str]
"""(text, style name): a line of a rendered message."""


class ConsoleChannel:
    """Writes each message as a readable block to ``stream`` (default: the current stdout).

    ``color``: None colours when the stream is a terminal and ``NO_COLOR`` is unset."""

    name = "console"

    def __init__(self, stream: TextIO | None = None, *, color: bool | None = None) -> None:
        self._stream = stream
        self._color = color
        self._lock = threading.Lock()
        self._rich: Any = None

    def send(self, message: OutboundMessage) -> Delivery:
        lines = render(message)
        with self._lock:
            stream = self._stream if self._stream is not None else sys.stdout
            try:
                block = self._ansi(lines) if self._use_color(stream) else _plain(lines)
                _write(stream, block)
            except (OSError, ValueError) as exc:  # closed pipe or closed file
                error = os_error_text(exc) if isinstance(exc, OSError) else f"closed {exc}"
                return Delivery("failed", self.name, error=error)
        return Delivery("sent", self.name, provider_id=message.message_id)

    def close(self) -> None:
        with self._lock:
            stream = self._stream if self._stream is not None else sys.stdout
            try:
                stream.flush()
            except (OSError, ValueError):
                pass

    def _use_color(self, stream: TextIO) -> bool:
        if self._color is not None:
            return self._color
        try:
            return stream.isatty() and "NO_COLOR" not in os.environ
        except (OSError, ValueError):
            return False

    def _ansi(self, lines: list[Line]) -> str:
        from rich.console import Console  # only when colouring: rich is slow to import
        from rich.text import Text

        if self._rich is None:
            self._rich = Console(
                file=io.StringIO(),
                force_terminal=True,
                color_system="standard",
                soft_wrap=True,
                highlight=False,
                markup=False,
                emoji=False,
            )
        text = Text()
        for content, style in lines:
            text.append(content, style=_STYLES[style])
            text.append("\n")
        with self._rich.capture() as captured:
            self._rich.print(text, end="")
        return str(captured.get())


def render(message: OutboundMessage) -> list[Line]:
    """The block for one message: a header line, then the content indented."""
    head = (
        f"── {message.channel} → {message.to} · {message.journey}/{message.step}"
        f" · {format_instant(message.at)}"
    )
    if message.transactional and message.channel != "webhook":
        head += " · transactional"
    lines: list[Line] = [(head, "head")]
    if message.channel == "webhook":
        lines += _webhook(message)
    elif message.channel == "email":
        lines += _email(message)
    else:
        lines += _body(message.text if message.text is not None else message.html)
    return lines


def _email(message: OutboundMessage) -> list[Line]:
    lines: list[Line] = []
    if message.subject is not None:
        lines.append((f"{INDENT}Subject: {message.subject}", "meta"))
    if message.sendgrid_template_id:
        lines.append((f"{INDENT}Template: {message.sendgrid_template_id}", "meta"))
        if message.template_data is not None:
            lines += _indented(_json(message.template_data), "meta")
    if message.text is not None and message.html is not None:
        lines.append((f"{INDENT}[+ HTML part, {len(message.html)} characters]", "meta"))
    body = message.text if message.text is not None else message.html
    if body is not None or not message.sendgrid_template_id:
        lines.append(("", "body"))
        lines += _body(body)
    return lines


def _webhook(message: OutboundMessage) -> list[Line]:
    lines: list[Line] = [(f"{INDENT}{message.method or 'POST'} {message.to}", "meta")]
    for name, value in message.headers:
        shown = "[masked]" if _SECRET_HEADER.search(name) else value
        lines.append((f"{INDENT}{name}: {shown}", "meta"))
    if message.json is not None:
        lines += _indented(_json(message.json), "body")
    return lines


def _body(text: str | None) -> list[Line]:
    if not text:
        return [(f"{INDENT}(empty)", "meta")]
    return _indented(text, "body")


def _indented(text: str, style: str) -> list[Line]:
    return [(f"{INDENT}{line}".rstrip(), style) for line in text.splitlines()]


def _json(value: Any) -> str:
    option = orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS
    return orjson.dumps(value, option=option, default=str).decode()


def _plain(lines: list[Line]) -> str:
    return "".join(f"{content}\n" for content, _ in lines)


def _write(stream: TextIO, block: str) -> None:
    try:
        stream.write(block)
    except UnicodeEncodeError:  # a stdout without UTF-8: degrade the arrows, keep the text
        encoding = getattr(stream, "encoding", None) or "ascii"
        stream.write(block.encode(encoding, "backslashreplace").decode(encoding))
    stream.flush()
