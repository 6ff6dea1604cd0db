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

    def __len__(self) -> int:
        return len(self._changes)


class MemoryStore:
    """Customers as state documents, exactly as the SQL store keeps them.

    Each customer's state is stored as :meth:`CustomerState.to_document` bytes, not as live
    objects: a sleeping customer then costs a few hundred bytes instead of a few kilobytes
    (a million customers fit in well under 1.5 GB), and every ``simulate`` run proves that the
    document the daemon stores carries everything the engine needs."""

    def __init__(self) -> None:
        self.documents: dict[str, bytes] = {}
        self.suppressions = SuppressionTimeline()
        self.seen_ids: set[str] = set()

    def load(self, customer_id: str) -> CustomerState | bytes:
        """The customer's stored document, or a new state for a customer never seen."""
        doc = self.documents.get(customer_id)
        return doc if doc is not None else CustomerState(customer_id)

    def customer(self, customer_id: str) -> CustomerState:
        doc = self.documents.get(customer_id)
        return CustomerState.from_document(doc) if doc is not None else CustomerState(customer_id)

    def save(self, state: CustomerState) -> None:
        # orjson hands back its whole output buffer (about 4 KB whatever the length): keep an
        # exact-size copy, or a million stored documents would cost 4 GB.
        self.documents[state.customer_id] = memoryview(state.to_document()).tobytes()

    @property
    def customers(self) -> Mapping[str, CustomerState]:
        """Every known customer's state, decoded on access (for inspection and tests)."""
        return _Decoded(self.documents)

    def first_sighting(self, event_id: str | None) -> bool:
        """Idempotent ingestion: True the first time an id is seen (events without id always)."""
        if event_id is None:
            return True
        if event_id in self.seen_ids:
            return False
        self.seen_ids.add(event_id)
        return True


class _Decoded(Mapping[str, CustomerState]):
    def __init__(self, documents: dict[str, bytes]) -> None:
        self._documents = documents

    def __getitem__(self, customer_id: str) -> CustomerState:
        return CustomerState.from_document(self._documents[customer_id])

    def __iter__(self) -> Iterator[str]:
        return iter(self._documents)

    def __len__(self) -> int:
        return len(self._documents)
