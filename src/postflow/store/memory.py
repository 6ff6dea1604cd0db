"""The in-memory store: customers, the suppression list and seen event ids, in dicts.

``simulate`` and ``postflow test`` use it; it ships in the package so users can drive the
engine from their own tests too. It holds state only: deciding is the engine's job.
"""

from __future__ import annotations

from collections.abc import Iterable

from postflow.effects import SuppressionChange
from postflow.state import CustomerState


class MemoryStore:
    def __init__(self) -> None:
        self.customers: dict[str, CustomerState] = {}
        self.suppressions: dict[str, frozenset[str]] = {}
        self.seen_ids: set[str] = set()

    def customer(self, customer_id: str) -> CustomerState:
        state = self.customers.get(customer_id)
        return state if state is not None else CustomerState(customer_id)

    def save(self, state: CustomerState) -> None:
        self.customers[state.customer_id] = state

    def first_sighting(self, event_id: str | None) -> bool:
        """Idempotent ingestion: True the first time an id is seen (events without id always)."""
        if event_id is None:
            return True
        if event_id in self.seen_ids:
            return False
        self.seen_ids.add(event_id)
        return True

    def apply_suppressions(self, changes: Iterable[SuppressionChange]) -> None:
        for change in changes:
            if change.remove:
                self.suppressions.pop(change.address, None)
            else:
                current = self.suppressions.get(change.address, frozenset())
                self.suppressions[change.address] = current | {change.reason or "manual"}
