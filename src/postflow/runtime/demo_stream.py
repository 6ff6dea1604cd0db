"""The stream ``postflow demo`` plays: two months of a small tea and coffee shop.

:func:`demo_stream` builds, from a seed, the events of a few dozen customers across time
zones in the Americas, Europe and Asia-Pacific, in the vocabulary of docs/library.md: first
orders and repeat buyers, each order shipped, out for delivery and delivered with realistic
delays, reviews good and bad, NPS answers from promoters, passives and detractors, support
tickets with CSAT answers, a refund, a cancellation and a referral. Some customers bring a
past (``history``, ingested like ``ingest --backfill``: profiles and purchase facts only) so
that the window also holds a lapsed customer falling into win-back, a first-purchase
anniversary, 5th and 10th orders and loyalty tiers being crossed.

A handful of scripted customers make sure every program of the library has its moment; the
rest are drawn at random. Same start, customers and seed: the same events, byte for byte.
Times of day are the customer's own (orders in the afternoon and evening, deliveries in the
morning), so the send windows and quiet hours of the journeys have something to do.

This module holds the entry point and the final pass (sorting, numbering orders and events);
the places, catalog, customers, orders and event builder are in
:mod:`postflow.runtime.demo_shop`, the scripted and random customers in
:mod:`postflow.runtime.demo_cast`. Their public names are re-exported here.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from postflow.runtime.demo_cast import SCRIPTED, Cast, ordinary, synced
from postflow.runtime.demo_shop import (
    DAY,
    NPS_COMMENTS,
    PLACES,
    RATINGS,
    REGION_WEIGHTS,
    REGIONS,
    SHOP_CATALOG,
    TICKETS,
    Builder,
    Customer,
    Order,
    Place,
)

__all__ = [
    "DAY",
    "DEFAULT_CUSTOMERS",
    "DEFAULT_DAYS",
    "DEFAULT_SEED",
    "DEFAULT_START",
    "NPS_COMMENTS",
    "PLACES",
    "RATINGS",
    "REGIONS",
    "REGION_WEIGHTS",
    "SCRIPTED",
    "SHOP_CATALOG",
    "TICKETS",
    "Customer",
    "DemoStream",
    "Order",
    "Place",
    "demo_stream",
]

DEFAULT_START = datetime(2027, 3, 1, tzinfo=UTC)
DEFAULT_DAYS = 60
DEFAULT_CUSTOMERS = 40
DEFAULT_SEED = 7


@dataclass(frozen=True)
class DemoStream:
    """Events to play. ``history`` is ingested first as a history import (backfill: it
    starts nothing), ``events`` live; both are event objects of contract section 1, sorted
    by ``at``. The window to play is ``[start, start + days)``."""

    start: datetime
    days: int
    history: list[dict[str, Any]]
    events: list[dict[str, Any]]

    def customers(self) -> dict[str, dict[str, Any]]:
        """Each customer's profile as the stream gives it (later keys win)."""
        found: dict[str, dict[str, Any]] = {}
        for event in (*self.history, *self.events):
            profile = found.setdefault(event["customer_id"], {})
            profile.update(event.get("customer") or {})
        return found


def demo_stream(
    start: datetime = DEFAULT_START,
    customers: int = DEFAULT_CUSTOMERS,
    seed: int = DEFAULT_SEED,
    *,
    days: int = DEFAULT_DAYS,
    catalog: Mapping[str, Mapping[str, Any]] | None = None,
) -> DemoStream:
    """Two months (``days``) of the shop from ``start``: ``customers`` customers, the
    scripted ones first (as many as fit), then random ones drawn from ``seed``. Items come
    from ``catalog`` (default: the shop's); events after the window are left out."""
    if start.tzinfo is None:
        raise ValueError("start must carry a time zone")
    if customers < 1:
        raise ValueError("customers must be at least 1")
    start = start.astimezone(UTC)
    rng = random.Random(seed)
    b = Builder(start, days, rng, dict(catalog) if catalog else SHOP_CATALOG)
    cast = Cast(rng, customers)
    for script in SCRIPTED:
        if not cast.room():
            break
        script(b, cast)
    while cast.room():
        ordinary(b, cast)
    synced(b, cast)
    end = b.end
    history = [e for _at, _n, e in sorted(b.history, key=lambda x: (x[0], x[1]))]
    live = [e for at, _n, e in sorted(b.events, key=lambda x: (x[0], x[1])) if at < end]
    _number_orders([*history, *live])
    for n, event in enumerate(history, 1):
        event["id"] = f"demo-h{n:04d}"
    for n, event in enumerate(live, 1):
        event["id"] = f"demo-{n:04d}"
    return DemoStream(start, days, [_ordered(e) for e in history], [_ordered(e) for e in live])


def _number_orders(events: list[dict[str, Any]]) -> None:
    """Order ids and numbers in the order the orders were placed (scripts make them in
    another order)."""
    renamed: dict[str, str] = {}
    for event in events:
        data = event["data"]
        if event["type"] == "order_placed":
            number = 1001 + len(renamed)
            renamed[data["order_id"]] = f"o_{number}"
            data["order_number"] = f"#{number}"
    for event in events:
        data = event["data"]
        if "order_id" in data and data["order_id"] in renamed:
            event["data"] = {**data, "order_id": renamed[data["order_id"]]}


def _ordered(event: dict[str, Any]) -> dict[str, Any]:
    """The keys in the order the contract shows them."""
    keys = ("id", "type", "customer_id", "at", "customer", "data")
    return {k: event[k] for k in keys if k in event}
