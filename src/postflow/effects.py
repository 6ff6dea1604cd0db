"""What the engine returns besides the new state: its effects, as plain values.

The engine performs nothing. Records go to the history, outbound messages to the outbox (a
dispatcher delivers them later), emitted events back to ingestion, suppression changes to the
suppression list: each shell (simulate, the daemon) decides how.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from postflow.events import Event
from postflow.state import CustomerState


@dataclass(slots=True)
class OutboundMessage:
    """A message the engine decided to send: what the outbox stores and a channel delivers.

    Not frozen: one is built per message on the hot path, and a frozen dataclass pays a
    ``object.__setattr__`` per field. Treat it as immutable all the same."""

    message_id: str
    customer_id: str
    instance: str
    journey: str
    step: str
    channel: str
    at: int
    to: str
    transactional: bool = False
    subject: str | None = None
    html: str | None = None
    text: str | None = None
    sendgrid_template_id: str | None = None
    template_data: Any = None
    method: str | None = None
    json: Any = None
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class SuppressionChange:
    address: str
    reason: str | None
    remove: bool = False


@dataclass
class Outcome:
    state: CustomerState
    records: list[dict[str, Any]] = field(default_factory=list)
    messages: list[OutboundMessage] = field(default_factory=list)
    emitted: list[Event] = field(default_factory=list)
    suppressions: list[SuppressionChange] = field(default_factory=list)
