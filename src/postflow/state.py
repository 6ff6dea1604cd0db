"""The per-customer state the engine reads and returns: profile, instances, send history.

These are plain, JSON-friendly containers so any store can persist them: ``simulate`` keeps
them in memory, the daemon stores each customer's state as one JSON document
(:meth:`CustomerState.to_document`), so new engine fields need no database migration. The
engine never mutates what it is given: it works on a private copy (a clone, a decoded
document, or a state the caller explicitly hands over) and returns it, which keeps it a pure
function of its inputs.

Growth is bounded: ended instances leave once their goal window closes, send history older
than the longest frequency-cap window is dropped, and ``reentry: never`` remembers at most
:data:`MAX_KEYS_PER_JOURNEY` keys per journey (the oldest are forgotten).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

Sent = tuple[str, int, tuple[str, ...]]
"""A marketing message decided ``sent``: (channel, at, the tags of its journey version)."""

ACTIVE = "active"
ENDED = "ended"

DOCUMENT_VERSION = 1
"""The state document's format version; :func:`CustomerState.from_document` refuses others."""

MAX_KEYS_PER_JOURNEY = 1000
"""Entry keys remembered per (customer, journey) for ``reentry: never``. A customer with more
distinct keys (orders) than this in one journey could re-enter for one of the oldest."""


class StateFormatError(ValueError):
    """A stored state document this version of postflow cannot read."""


@dataclass(slots=True)
class Instance:
    """One customer's passage through one journey version.

    ``emits`` counts emits per step (the ``n`` of emitted event ids), ``messages`` the messages
    queued (the ``n`` of message ids); ``steps_at``/``steps`` count steps taken at one logical
    instant, the backstop against loops that never block.
    """

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
    waiting: str | None = None  # "wait" | "wait_for" | "wait_until" | "hold" | None
    last_event: dict[str, Any] | None = None
    vars: dict[str, Any] = field(default_factory=dict)
    variant: str | None = None
    converted: bool = False
    ended_at: int | None = None
    exit_reason: str | None = None
    emits: dict[str, int] = field(default_factory=dict)
    messages: int = 0
    steps_at: int | None = None
    steps: int = 0
    seen: list[dict[str, Any]] = field(default_factory=list)
    """Views of events applied since entry that a ``since: entry`` wait_for may want (§9)."""

    def clone(self) -> Instance:
        # Hand-written (not dataclasses.replace): cloning is on the engine's hot path.
        # ``trigger`` and ``last_event`` are event views: never mutated, so shared.
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
            dict(self.vars) if self.vars else {},
            self.variant,
            self.converted,
            self.ended_at,
            self.exit_reason,
            dict(self.emits) if self.emits else {},
            self.messages,
            self.steps_at,
            self.steps,
            list(self.seen) if self.seen else [],
        )

    def to_json(self) -> dict[str, Any]:
        """The instance as a JSON object; fields at their default are left out (smaller rows).
        Written out by hand: a sleeping customer is stored on every wake, so this is hot."""
        doc: dict[str, Any] = {
            "id": self.id,
            "journey": self.journey,
            "version": self.version,
            "n": self.n,
            "key": self.key,
            "entered_at": self.entered_at,
            "trigger": self.trigger,
            "status": self.status,
        }
        if self.step is not None:
            doc["step"] = self.step
        if self.step_started:
            doc["step_started"] = self.step_started
        if self.wake_at is not None:
            doc["wake_at"] = self.wake_at
        if self.waiting is not None:
            doc["waiting"] = self.waiting
        if self.last_event is not None:
            doc["last_event"] = self.last_event
        if self.vars:
            doc["vars"] = self.vars
        if self.variant is not None:
            doc["variant"] = self.variant
        if self.converted:
            doc["converted"] = True
        if self.ended_at is not None:
            doc["ended_at"] = self.ended_at
        if self.exit_reason is not None:
            doc["exit_reason"] = self.exit_reason
        if self.emits:
            doc["emits"] = self.emits
        if self.messages:
            doc["messages"] = self.messages
        if self.steps_at is not None:
            doc["steps_at"] = self.steps_at
        if self.steps:
            doc["steps"] = self.steps
        if self.seen:
            doc["seen"] = self.seen
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Instance:
        get = doc.get
        try:
            return cls(
                doc["id"],
                doc["journey"],
                doc["version"],
                doc["n"],
                doc["key"],
                doc["entered_at"],
                doc["trigger"],
                doc["status"],
                get("step"),
                get("step_started", 0),
                get("wake_at"),
                get("waiting"),
                get("last_event"),
                get("vars") or {},
                get("variant"),
                get("converted", False),
                get("ended_at"),
                get("exit_reason"),
                get("emits") or {},
                get("messages", 0),
                get("steps_at"),
                get("steps", 0),
                get("seen") or [],
            )
        except (KeyError, TypeError) as exc:
            raise StateFormatError(f"instance without {exc}") from None


@dataclass(slots=True)
class CustomerState:
    """Everything the engine knows about one customer.

    ``entries`` counts entries per journey (the ``n`` of instance ids); ``last_entered`` feeds
    ``cooldown``; ``keys`` remembers entry keys for ``reentry: never``; ``sent`` holds
    (channel, at) of recent marketing messages decided ``sent``, for frequency caps.
    ``instances`` holds active instances and ended ones whose goal window is still open,
    ordered by journey id, then entry. ``processed_at`` is the latest logical time applied:
    an event older than it is applied at it (history is never rewritten).
    """

    customer_id: str
    profile: dict[str, Any] = field(default_factory=dict)
    processed_at: int | None = None
    instances: list[Instance] = field(default_factory=list)
    entries: dict[str, int] = field(default_factory=dict)
    last_entered: dict[str, int] = field(default_factory=dict)
    keys: dict[str, list[str]] = field(default_factory=dict)
    sent: list[Sent] = field(default_factory=list)
    local_ticks: dict[str, int] = field(default_factory=dict)
    """``timezone: customer`` audience journeys: the last local tick handled (or when the
    customer was first seen with the journey: ticks at that instant are not theirs)."""

    def clone(self) -> CustomerState:
        return CustomerState(
            self.customer_id,
            dict(self.profile),
            self.processed_at,
            [i.clone() for i in self.instances],
            dict(self.entries),
            dict(self.last_entered),
            {k: list(v) for k, v in self.keys.items()} if self.keys else {},
            list(self.sent),
            dict(self.local_ticks) if self.local_ticks else {},
        )

    def next_wake(self) -> int | None:
        """The earliest timer of an active instance: when this customer next has work, unless
        an event arrives first."""
        wakes = [i.wake_at for i in self.instances if i.wake_at is not None]
        return min(wakes) if wakes else None

    def remember_key(self, journey: str, key: str) -> None:
        """Remember an entry key for ``reentry: never``, forgetting the oldest past the bound."""
        keys = self.keys.setdefault(journey, [])
        keys.append(key)
        if len(keys) > MAX_KEYS_PER_JOURNEY:
            del keys[: len(keys) - MAX_KEYS_PER_JOURNEY]

    # -- the stored document --------------------------------------------------------------
    def to_document(self) -> bytes:
        """One JSON document (UTF-8 bytes) holding everything the engine needs.

        Times are integer epoch microseconds. Keys and strings never contain NUL (PostgreSQL
        ``jsonb`` rejects it): events carrying one are refused at ingestion, and the engine's
        own keys are plain names."""
        doc: dict[str, Any] = {"v": DOCUMENT_VERSION, "customer_id": self.customer_id}
        if self.profile:
            doc["profile"] = self.profile
        if self.processed_at is not None:
            doc["processed_at"] = self.processed_at
        if self.instances:
            doc["instances"] = [i.to_json() for i in self.instances]
        if self.entries:
            doc["entries"] = self.entries
        if self.last_entered:
            doc["last_entered"] = self.last_entered
        if self.keys:
            doc["keys"] = self.keys
        if self.local_ticks:
            doc["local_ticks"] = self.local_ticks
        if self.sent:
            doc["sent"] = [[c, at, list(tags)] if tags else [c, at] for c, at, tags in self.sent]
        return orjson.dumps(doc)

    @classmethod
    def from_document(cls, data: bytes | str) -> CustomerState:
        """Read :meth:`to_document`'s output. Raises :class:`StateFormatError` for a document
        of another format version or a broken one."""
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise StateFormatError(f"state document is not JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise StateFormatError("state document is not a JSON object")
        version = doc.get("v")
        if version != DOCUMENT_VERSION:
            raise StateFormatError(
                f"state document format {version!r}; this postflow reads {DOCUMENT_VERSION}"
            )
        try:
            return cls(
                customer_id=doc["customer_id"],
                profile=doc.get("profile", {}),
                processed_at=doc.get("processed_at"),
                instances=[Instance.from_json(i) for i in doc.get("instances", ())],
                entries=doc.get("entries", {}),
                last_entered=doc.get("last_entered", {}),
                keys=doc.get("keys", {}),
                sent=[(e[0], e[1], tuple(e[2]) if len(e) > 2 else ()) for e in doc.get("sent", ())],
                local_ticks=doc.get("local_ticks", {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise StateFormatError(f"state document is broken: {exc}") from None
