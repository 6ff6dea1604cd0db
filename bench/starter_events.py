"""Events for the three starter journeys (bench/starter/journeys/*.yaml), N customers.

Usage: python bench/starter_events.py N OUT [--seed S]
Then:  postflow simulate --events OUT --config bench/starter/postflow.yaml

Every customer places an order (1-3 items, SKUs from catalog.yaml) at a random moment of
March 2027, which is shipped a day later and delivered 2-5 days after the order; the order
confirmation (email + SMS), the replenishment reminder (tea SKUs) and the review request
(delivery) all start. Half the deliveries get a review 1-12 days later (some too early or too
late for the review request's wait, which then sends its SMS reminder), 3 % are refunded
(leaving the review request) and 20 % of customers order again 10-40 days later (leaving, or
converting, the replenishment reminder). Profiles vary as real ones do: some without a phone,
a time zone or consent, a few mixed-case addresses. Deterministic for a given N and seed.
"""

from __future__ import annotations

import argparse
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

# catalog.yaml, with a price each.
CATALOG = {
    "TEA-1": ("Green tea", "tea", 12.5),
    "TEA-2": ("Black tea", "tea", 11.0),
    "POT-1": ("Teapot", "teaware", 35.0),
}
ZONES = [  # (time zone or None for the configured default, currency, phone prefix)
    ("America/New_York", "USD", "+1212555"),
    ("America/Chicago", "USD", "+1312555"),
    ("America/Los_Angeles", "USD", "+1415555"),
    ("Europe/London", "GBP", "+44207946"),
    ("Europe/Berlin", "EUR", "+4930901"),
    ("Asia/Tokyo", "JPY", "+8135550"),
    (None, "USD", "+1646555"),
]
FIRST_NAMES = ["Ann", "Bob", "Chloé", "Dev", "Eva", "Femi", "Gus", "Hana", "Ivan", "Jo", "Kai"]
START = datetime(2027, 3, 1, tzinfo=UTC)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def profile(rng: random.Random, i: int) -> dict[str, Any]:
    name = rng.choice(FIRST_NAMES)
    zone, _, prefix = ZONES[i % len(ZONES)]
    address = f"{name.lower().replace('é', 'e')}.{i}@example.com"
    customer: dict[str, Any] = {
        "email": address.capitalize() if rng.random() < 0.05 else address,
        "first_name": name,
        "email_consent": rng.random() < 0.9,
    }
    if zone is not None:
        customer["timezone"] = zone
    if rng.random() < 0.7:
        customer["phone"] = f"{prefix}{rng.randrange(10_000):04d}"
        customer["sms_consent"] = rng.random() < 0.5
    return customer


def order(rng: random.Random, order_id: str, currency: str) -> dict[str, Any]:
    items: list[dict[str, Any]] = []
    for sku in rng.sample(sorted(CATALOG), rng.choice([1, 1, 1, 2, 3])):
        name, category, price = CATALOG[sku]
        quantity = rng.choice([1, 1, 2, 3])
        items.append(
            {"sku": sku, "name": name, "category": category, "quantity": quantity, "price": price}
        )
    total = round(sum(item["price"] * item["quantity"] for item in items), 2)
    return {"order_id": order_id, "total": total, "currency": currency, "items": items}


def customer_events(rng: random.Random, i: int) -> list[tuple[datetime, dict[str, Any]]]:
    """One customer's events, each with its time."""
    cid = f"c{i}"
    customer = profile(rng, i)
    currency = ZONES[i % len(ZONES)][1]
    placed = START + timedelta(seconds=rng.randrange(31 * 86_400))
    out: list[tuple[datetime, dict[str, Any]]] = []

    def add(at: datetime, kind: str, data: dict[str, Any], **extra: Any) -> None:
        event = {"id": f"{cid}-{len(out)}", "type": kind, "customer_id": cid, "at": iso(at)}
        out.append((at, {**event, **extra, "data": data}))

    first = order(rng, f"o{i}", currency)
    add(placed, "order_placed", first, customer=customer)
    add(placed + timedelta(days=1, hours=rng.randrange(12)), "order_shipped", {"order_id": f"o{i}"})
    delivered = placed + timedelta(days=rng.randint(2, 5), hours=rng.randrange(10))
    add(delivered, "order_delivered", first)
    if rng.random() < 0.5:
        rating = rng.choices([5, 4, 3, 2, 1], [45, 25, 12, 8, 10])[0]
        reviewed = delivered + timedelta(days=rng.randint(1, 12), hours=rng.randrange(24))
        add(reviewed, "review_submitted", {"order_id": f"o{i}", "rating": rating})
    if rng.random() < 0.03:
        refunded = delivered + timedelta(days=rng.randint(5, 10))
        add(refunded, "order_refunded", {"order_id": f"o{i}", "total": first["total"]})
    if rng.random() < 0.2:
        again = placed + timedelta(days=rng.randint(10, 40), hours=rng.randrange(24))
        add(again, "order_placed", order(rng, f"o{i}b", currency))
    return out


def write_events(path: Path, customers: int, seed: int = 1) -> None:
    """All customers' events, sorted by time (file order breaks ties)."""
    rng = random.Random(seed)
    rows = [row for i in range(customers) for row in customer_events(rng, i)]
    rows.sort(key=lambda row: row[0])  # stable: a customer's events keep their order
    with path.open("wb") as f:
        for _, event in rows:
            f.write(orjson.dumps(event) + b"\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("customers", type=int)
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    write_events(args.out, args.customers, args.seed)
    print(f"wrote {args.out} ({args.customers} customers)")


if __name__ == "__main__":
    main()
