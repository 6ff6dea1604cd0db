"""Suppressing and unsuppressing an address by hand (``postflow suppress`` / ``unsuppress``).

Suppression is a fact about an address over time (contract §2), carried by the reserved
``address_suppressed`` / ``address_unsuppressed`` events, so a manual change is just such
an event: journeys that wait for it see it, ``history`` shows its effects, and every worker
and ``simulate`` decide alike. An event still needs a customer; it is filed under the one
given, else the customer postflow last wrote to at that address, else the address itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from postflow import compliance, events
from postflow.durations import format_instant
from postflow.store.outbox import Outbox
from postflow.store.sql import IngestResult, SqlStore

BLOCK_ALL = ("bounce", "dropped", "spamreport", "stop", "manual")
BLOCK_MARKETING = ("unsubscribe", "group_unsubscribe")
REASONS = BLOCK_ALL + BLOCK_MARKETING


class AddressError(ValueError):
    """Not an email address or a phone number postflow can read."""


@dataclass(frozen=True)
class Change:
    address: str
    customer_id: str
    result: IngestResult


def normalize(address: str, region: str | None) -> str:
    """The address as suppressions store it (lower-case email, E.164 phone)."""
    found = compliance.normalize_address(address.strip(), region)
    if found is not None and "@" in found and not compliance.is_mailbox(found):
        found = None  # the engine reads "a@" as an address; a person typing it made a slip
    if found is None:
        hint = f" (default_region is {region})" if region else " (write it with +country code)"
        kind = "an email address" if "@" in address else f"a phone number{hint}"
        raise AddressError(f"{address!r} is not {kind}")
    return found


def change(
    store: SqlStore,
    address: str,
    *,
    suppressed: bool,
    reason: str = "manual",
    customer_id: str | None = None,
    at: int,
) -> Change:
    """Ingest the event that suppresses (or lifts the suppression of) ``address`` at ``at``."""
    normalized = normalize(address, store.settings.default_region)
    owner = customer_id or Outbox(store).owners([normalized]).get(normalized) or normalized
    event = events.parse_event(change_event(normalized, reason, owner, at, suppressed=suppressed))
    return Change(normalized, owner, store.ingest([event]))


def change_event(
    address: str,
    reason: str,
    customer_id: str,
    at: int,
    *,
    suppressed: bool = True,
    event_id: str | None = None,
) -> dict[str, Any]:
    """The reserved event (as an event object) that suppresses ``address`` at ``at``, or lifts
    its suppression: what ``postflow suppress``, a provider's refusal and its callbacks raise."""
    obj: dict[str, Any] = {} if event_id is None else {"id": event_id}
    obj.update(
        type=events.SUPPRESSED if suppressed else events.UNSUPPRESSED,
        customer_id=customer_id,
        at=format_instant(at),
        data={"address": address, "reason": reason},
    )
    return obj
