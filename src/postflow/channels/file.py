"""Append messages to a JSON Lines file: a provider for tests, demos and other tools to read.

Each message is one line, written with a single ``write(2)`` on an ``O_APPEND`` descriptor
under a lock: no user-space buffer can hold half a line, so lines from concurrent
dispatcher threads never interleave and nothing is left to flush. The file is opened when
the channel is built, so a missing directory or a permission problem stops startup with the
path in the message instead of failing every message later. At run time a full disk is
transient (``retry``); anything else, like a directory removed under us, is ``failed``.
"""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path
from typing import Any

import orjson

from postflow.channels.base import ChannelConfigError, Delivery, DeliveryStatus, os_error_text
from postflow.durations import format_instant
from postflow.effects import OutboundMessage

TRANSIENT_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EAGAIN, errno.EINTR, errno.EBUSY, errno.ETIMEDOUT}
)
_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_APPEND_NEWLINE


class FileChannel:
    """Appends one JSON object per message to ``path`` (created if missing, never truncated).

    After a failed write the file is reopened on the next message, so a replaced or
    freed-up file is picked up; ``close`` releases it the same way (a later ``send``
    reopens)."""

    name = "file"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._torn = False  # the last write stopped mid-line
        try:
            self._fd: int | None = os.open(self.path, _FLAGS, 0o644)
        except OSError as exc:
            raise ChannelConfigError(
                f"cannot open {self.path} for the file channel: {exc.strerror or exc}"
            ) from None

    def send(self, message: OutboundMessage) -> Delivery:
        try:
            line = orjson.dumps(record(message), option=_OPTIONS)
        except orjson.JSONEncodeError as exc:
            return Delivery("failed", self.name, error=f"EncodeError {exc}")
        with self._lock:
            try:
                self._append(line)
            except OSError as exc:
                self._drop()
                status: DeliveryStatus = "retry" if exc.errno in TRANSIENT_ERRNOS else "failed"
                return Delivery(status, self.name, error=os_error_text(exc))
        return Delivery("sent", self.name, provider_id=message.message_id)

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _append(self, line: bytes) -> None:
        if self._fd is None:
            self._fd = os.open(self.path, _FLAGS, 0o644)
        if self._torn:  # end the broken line so this one stays readable
            line = b"\n" + line
        view = memoryview(line)
        while view:
            written = os.write(self._fd, view)
            self._torn = True
            view = view[written:]
        self._torn = False

    def _drop(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.close(fd)
            except OSError:
                pass


def record(message: OutboundMessage) -> dict[str, Any]:
    """The JSON object for one message; absent parts (None, no headers) are left out."""
    fields: dict[str, Any] = {
        "message_id": message.message_id,
        "customer_id": message.customer_id,
        "journey": message.journey,
        "instance": message.instance,
        "step": message.step,
        "channel": message.channel,
        "at": format_instant(message.at),
        "to": message.to,
        "transactional": message.transactional,
        "subject": message.subject,
        "text": message.text,
        "html": message.html,
        "sendgrid_template_id": message.sendgrid_template_id,
        "template_data": message.template_data,
        "method": message.method,
        "json": message.json,
        "headers": [list(pair) for pair in message.headers] or None,
    }
    return {key: value for key, value in fields.items() if value is not None}
