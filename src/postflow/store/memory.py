"""The in-memory store: customers, the suppression timeline and seen event ids, in dicts.

``simulate`` and ``postflow test`` use it; it ships in the package so users can drive the
engine from their own tests too. It holds state only: deciding is the engine's job.
"""

from __future__ import annotations

from bisect import bisect_right, insort
from collections.abc import Iterator, Mapping

from postflow.compliance import SuppressionChange
from postflow.state import CustomerState

_EMPTY: frozenset[str] = frozenset()
_LAST = (1 << 63, 1 << 63)


class SuppressionTimeline:
    """Each address's suppression reasons over logical time, built at ingestion.

    A change applies from its ``at`` on (changes with equal ``at`` in ingestion order): a
    suppression adds its reason to those in force, an unsuppression clears them. Answers the
    engine's :class:`postflow.world.SuppressionLookup`."""

    def __init__(self) -> None:
        # address -> sorted [(at, seq, reasons in force from then on)]
        self._changes: dict[str, list[tuple[int, int, frozenset[str]]]] = {}
        self._raw: dict[str, list[SuppressionChange]] = {}

    def add(self, change: SuppressionChange) -> None:
        raw = self._raw.setdefault(change.address, [])
        insort(raw, change, key=lambda c: (c.at, c.seq))
        timeline = []
        reasons = _EMPTY
        for c in raw:
            reasons = _EMPTY if c.reason is None else reasons | {c.reason}
            timeline.append((c.at, c.seq, reasons))
        self._changes[change.address] = timeline

    def reasons_at(self, address: str, at: int) -> frozenset[str]:
        timeline = self._changes.get(address)
        if not timeline:
            return _EMPTY
        index = bisect_right(timeline, (at, *_LAST))
        return timeline[index - 1][2] if index else _EMPTY


LIVE_LIMIT = 20_000
"""Customers the memory store keeps as live objects; the least recently saved beyond this are
kept as state documents."""


class MemoryStore:
    """Customers' states, the suppression timeline and seen event ids.

    The most recently saved :data:`LIVE_LIMIT` customers stay live objects (handed to the
    engine without a copy); older ones are kept as state documents, exactly the bytes the SQL
    store keeps, so a sleeping customer costs a few hundred bytes instead of a few kilobytes
    and a million customers fit in well under 1.5 GB. ``live_limit=0`` keeps every customer
    as a document (tests use it to prove both forms decide alike)."""

    def __init__(self, live_limit: int = LIVE_LIMIT) -> None:
        self.live_limit = live_limit
        self.live: dict[str, CustomerState] = {}  # in order of last save
        self.documents: dict[str, bytes] = {}
        self.suppressions = SuppressionTimeline()
        self.seen_ids: set[str] = set()

    def take(self, customer_id: str) -> CustomerState | bytes:
        """Hand a customer's state over to the caller (who saves the new one): the live object,
        the stored document, or a new state for a customer never seen."""
        state = self.live.pop(customer_id, None)
        if state is not None:
            return state
        doc = self.documents.pop(customer_id, None)
        return doc if doc is not None else CustomerState(customer_id)

    def customer(self, customer_id: str) -> CustomerState:
        """A copy of a customer's state, for inspection."""
        state = self.live.get(customer_id)
        if state is not None:
            return state.clone()
        doc = self.documents.get(customer_id)
        return CustomerState.from_document(doc) if doc is not None else CustomerState(customer_id)

    def save(self, state: CustomerState) -> None:
        live = self.live
        live[state.customer_id] = state
        while len(live) > self.live_limit:
            oldest = next(iter(live))
            # orjson hands back its whole output buffer (about 4 KB whatever the length):
            # keep an exact-size copy, or a million documents would cost 4 GB.
            self.documents[oldest] = memoryview(live.pop(oldest).to_document()).tobytes()

    def known(self) -> list[str]:
        """Every customer with a stored state."""
        return [*self.live, *self.documents]

    @property
    def customers(self) -> Mapping[str, CustomerState]:
        """Every known customer's state, decoded on access (for inspection and tests)."""
        return _Decoded(self)

    def first_sighting(self, event_id: str | None) -> bool:
        """Idempotent ingestion: True the first time an id is seen (events without id always)."""
        if event_id is None:
            return True
        if event_id in self.seen_ids:
            return False
        self.seen_ids.add(event_id)
        return True


class _Decoded(Mapping[str, CustomerState]):
    def __init__(self, store: MemoryStore) -> None:
        self._store = store

    def __getitem__(self, customer_id: str) -> CustomerState:
        if customer_id not in self._store.live and customer_id not in self._store.documents:
            raise KeyError(customer_id)
        return self._store.customer(customer_id)

    def __iter__(self) -> Iterator[str]:
        return iter(self._store.known())

    def __len__(self) -> int:
        return len(self._store.live) + len(self._store.documents)
