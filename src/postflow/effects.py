"""What the engine returns besides the new state: its effects, as plain values.

The engine performs nothing. Records go to the history, outbound messages to the outbox (a
dispatcher delivers them later), emitted events to the event store: each shell (simulate, the
daemon) decides how. Suppression changes are not effects: they are ingested facts
(:func:`postflow.compliance.suppression_change`).
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


@dataclass(slots=True)
class Advance:
    """What :func:`postflow.engine.advance` returns for one customer.

    ``state`` is the new state (the input state is left as it was); ``records`` are the
    records of contract section 3 in production order; ``messages`` go to the outbox;
    ``emitted`` are the events the customer's journeys raised, already applied (a store keeps
    them as applied events, so their ids stay taken); ``unapplied`` are given events not yet
    due; ``next_wake`` is the customer's earliest timer (None: nothing until an event)."""

    state: CustomerState
    records: list[dict[str, Any]] = field(default_factory=list)
    messages: list[OutboundMessage] = field(default_factory=list)
    emitted: list[Event] = field(default_factory=list)
    unapplied: list[Event] = field(default_factory=list)
    next_wake: int | None = None
    history: list[tuple[str, int, dict[str, Any]]] | None = None
    """The customer's event history after this call (None: no journey uses history)."""
    applied_at: list[tuple[int, int]] = field(default_factory=list)
    """(seq, effective at) of each given event applied, when history is kept."""
