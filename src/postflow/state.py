"""The per-customer state the engine reads and returns: profile, instances, send history.

These are plain, JSON-friendly containers so any store can persist them (memory for
``simulate``, SQL for the daemon). The engine never mutates what it is given: it clones, works
on the copy and returns it, which keeps it a pure function of its inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ACTIVE = "active"
ENDED = "ended"


@dataclass(slots=True)
class Instance:
    """One customer's passage through one journey version."""

    id: str
    journey: str
    version: str
    n: int
    key: str | None
    entered_at: int
    trigger: dict[str, Any]
    status: str = ACTIVE
    step: str | None = None
    step_started: int = 0
    wake_at: int | None = None
    waiting: str | None = None  # "wait" | "wait_for" | "hold" (quiet hours) | None
    last_event: dict[str, Any] | None = None
    vars: dict[str, Any] = field(default_factory=dict)
    variant: str | None = None
    converted: bool = False
    ended_at: int | None = None
    exit_reason: str | None = None
    counters: dict[str, int] = field(default_factory=dict)  # emits per step, messages

    def clone(self) -> Instance:
        # Hand-written (not dataclasses.replace): cloning is on the engine's hot path.
        return Instance(
            self.id,
            self.journey,
            self.version,
            self.n,
            self.key,
            self.entered_at,
            self.trigger,
            self.status,
            self.step,
            self.step_started,
            self.wake_at,
            self.waiting,
            self.last_event,
            dict(self.vars),
            self.variant,
            self.converted,
            self.ended_at,
            self.exit_reason,
            dict(self.counters),
        )


@dataclass(slots=True)
class CustomerState:
    """Everything the engine knows about one customer.

    ``entries`` counts entries per journey (the ``n`` of instance ids); ``last_entered`` feeds
    ``cooldown``; ``keys`` remembers entry keys for ``reentry: never``; ``sent`` holds
    (channel, at) of recent marketing messages decided ``sent``, for frequency caps.
    ``instances`` holds active instances and ended ones whose goal window is still open,
    ordered by journey id, then entry.
    """

    customer_id: str
    profile: dict[str, Any] = field(default_factory=dict)
    processed_at: int | None = None
    instances: list[Instance] = field(default_factory=list)
    entries: dict[str, int] = field(default_factory=dict)
    last_entered: dict[str, int] = field(default_factory=dict)
    keys: dict[str, list[str]] = field(default_factory=dict)
    sent: list[tuple[str, int]] = field(default_factory=list)

    def clone(self) -> CustomerState:
        return CustomerState(
            customer_id=self.customer_id,
            profile=dict(self.profile),
            processed_at=self.processed_at,
            instances=[i.clone() for i in self.instances],
            entries=dict(self.entries),
            last_entered=dict(self.last_entered),
            keys={k: list(v) for k, v in self.keys.items()},
            sent=list(self.sent),
        )
