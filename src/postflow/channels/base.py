"""The seam between the outbox dispatcher and whatever delivers a message.

The dispatcher knows nothing about SendGrid, Twilio, files or terminals: it claims an outbox
row, calls :meth:`Channel.send` and stores the :class:`Delivery`. Every provider answer fits
one of three outcomes, so retry policy lives in the dispatcher, in one place: ``sent`` (with
the provider's id for tracing), ``retry`` (transient: timeout, connection error, 429, 5xx,
disk full; optionally with the provider's Retry-After) or ``failed`` (permanent; retrying
cannot help).
"""

from __future__ import annotations

import email.utils
import errno
import math
import re
import time
from dataclasses import dataclass
from datetime import UTC
from typing import Literal, Protocol

from postflow.effects import OutboundMessage

DeliveryStatus = Literal["sent", "retry", "failed"]


@dataclass(frozen=True, slots=True)
class Delivery:
    """One provider answer for one message.

    ``provider`` names who answered (``console``, ``file``, later ``sendgrid``...);
    ``provider_id`` is their id for the message when ``sent``; ``error`` is
    ``"<code> <message>"`` (an HTTP status, a provider error code or an errno name) when
    ``retry`` or ``failed``; ``retry_after`` is the provider's requested delay in seconds
    (None: the dispatcher's own backoff applies); ``suppress`` is a suppression reason when
    the refusal says the address must not be written to again (Twilio 21610: the number
    replied STOP), which the dispatcher turns into an ``address_suppressed`` event."""

    status: DeliveryStatus
    provider: str
    provider_id: str | None = None
    error: str | None = None
    retry_after: float | None = None
    suppress: str | None = None


class Channel(Protocol):
    """Delivers messages of one or more channels (``email``, ``sms``, ``webhook``).

    ``send`` may be called from several dispatcher threads at once and must be safe for it.
    It reports every provider answer as a :class:`Delivery` rather than raising, so one bad
    message never stops the dispatcher; an exception means a bug. ``close`` releases
    connections or files (idempotent).

    Optional attributes the dispatcher reads with defaults: ``concurrent`` (True for channels
    that wait on a network: their sends run in a bounded pool, and each is recorded as soon
    as it returns) and ``rate`` (``(per_second, burst)`` from the provider's configuration)."""

    name: str

    def send(self, message: OutboundMessage) -> Delivery: ...

    def close(self) -> None: ...


class ChannelConfigError(Exception):
    """The channel configuration cannot work (missing credentials, unwritable path...).

    Raised when channels are built, before anything is claimed from the outbox, with a
    message naming the setting or environment variable to fix."""


def os_error_text(exc: OSError) -> str:
    """``"<errno name> <message>"``, e.g. ``ENOSPC No space left on device``."""
    code = errno.errorcode.get(exc.errno or 0, type(exc).__name__)
    return f"{code} {exc.strerror or exc}"


MAX_RETRY_AFTER = 7 * 86_400.0
"""A longer Retry-After is read as none: a provider asking for more than a week means trouble
the dispatcher's own backoff and ``max_attempts`` handle better than a row parked for years."""


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` value: delta-seconds or an HTTP-date (past: 0).

    None when absent or unreadable, so the dispatcher's own backoff applies."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        seconds = float(text)
        return seconds if math.isfinite(seconds) and seconds <= MAX_RETRY_AFTER else None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # HTTP-dates are GMT; an unzoned one is read the same way
        when = when.replace(tzinfo=UTC)
    current = time.time() if now is None else now
    wait = max(0.0, when.timestamp() - current)
    return wait if wait <= MAX_RETRY_AFTER else None


MAX_ERROR = 300
"""Longest ``error`` a channel records: one line, enough for a provider's message."""


def one_line(text: str, limit: int = MAX_ERROR) -> str:
    """``text`` with runs of whitespace (newlines included) as one space, cut to ``limit``."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
