"""Write the review-journey bench project: a journey, its configuration and an events file.

Usage: python bench/review_journey.py DIR [--customers N] [--seed S]

DIR gets `journeys/review.yaml`, `postflow.yaml` and `events.jsonl` (N customers, default
20,000). Run it with `postflow simulate --events DIR/events.jsonl --journeys DIR/journeys
--config DIR/postflow.yaml`. The journey: two days after an `order_delivered`, a review request
by email; then a wait of up to five days for that order's `review_submitted`; then one of
three follow-up emails chosen by the rating (a customer who did not review gets the neutral
one). So every customer receives exactly two emails, which the bench scripts check.

Each customer has one delivery, at a random moment of three days; two in three submit a
review three days (plus up to six hours) after it. The output is the same for the same N and
seed. The templates are module constants so that `naive_loop.py` renders the very same
sources.
"""

from __future__ import annotations

import argparse
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import yaml

# The journey's Jinja sources, shared with naive_loop.py.
ASK = (
    "How is your {{ trigger.data.items[0].name }}, {{ customer.first_name }}?",
    "Hi {{ customer.first_name }}, your {{ trigger.data.items[0].name }} arrived two days ago. "
    "Tell us what you think: https://shop.example/review?order={{ trigger.data.order_id }}",
)
THANKS = (
    "Thank you for the {{ last_event.data.rating }} stars, {{ customer.first_name }}!",
    "Glad you like your {{ trigger.data.items[0].name }}. Share "
    "https://shop.example/r/{{ trigger.customer_id }} and you both get 10% off.",
)
SORRY = (
    "Sorry order {{ trigger.data.order_id }} fell short",
    "Hi {{ customer.first_name }}, {{ last_event.data.rating }} stars for your "
    "{{ trigger.data.items[0].name }} is not good enough. Reply and we will make it right.",
)
NEUTRAL = (
    "Anything we can do better, {{ customer.first_name }}?",
    "Tell us how to improve your {{ trigger.data.items[0].name }} "
    "(order {{ last_event.data.order_id }}).",
)


def email(template: tuple[str, str]) -> dict[str, str]:
    return {"subject": template[0], "body": template[1]}


JOURNEY: dict[str, Any] = {
    "id": "review",
    "name": "Review request and rating follow-up",
    "trigger": {"event": "order_delivered"},
    "steps": [
        {"id": "wait_2d", "wait": "2d"},
        {"id": "ask", "email": email(ASK)},
        {
            "id": "await_review",
            "wait_for": {
                "event": "review_submitted",
                "if": "event.data.order_id == trigger.data.order_id",
                "timeout": "5d",
            },
        },
        {
            "id": "by_rating",
            "branch": [
                {"if": "last_event.data.rating >= 4", "goto": "thanks"},
                {"if": "last_event.data.rating <= 2", "goto": "sorry"},
                {"goto": "neutral"},
            ],
        },
        {"id": "thanks", "email": email(THANKS), "next": "end"},
        {"id": "sorry", "email": email(SORRY), "next": "end"},
        {"id": "neutral", "email": email(NEUTRAL)},
    ],
}

# Explicit, so that the postflow.yaml of the working directory does not leak into the run.
CONFIG: dict[str, Any] = {
    "timezone": "UTC",
    "journeys": "journeys",
    "templates": "templates",
    "limits": {"email": {"max": 3, "per": "1d"}},
}

FIRST_NAMES = ["Ann", "Bob", "Chloé", "Dev", "Eva", "Femi", "Gus", "Hana", "Ivan", "Jo"]
PRODUCTS = ["Green tea", "Black tea", "Teapot", "Oolong sampler", "Tea cups (set of 2)"]
RATINGS = [5, 4, 3, 2, 1]
RATING_WEIGHTS = [45, 25, 12, 8, 10]
START = datetime(2027, 3, 1, tzinfo=UTC)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def events(customers: int, seed: int = 1) -> list[dict[str, Any]]:
    """One delivery per customer and, for two in three, a review; sorted by time."""
    rng = random.Random(seed)
    out: list[tuple[datetime, int, dict[str, Any]]] = []
    for i in range(customers):
        name = FIRST_NAMES[rng.randrange(len(FIRST_NAMES))]
        product = PRODUCTS[rng.randrange(len(PRODUCTS))]
        delivered = START + timedelta(seconds=rng.randrange(3 * 86_400))
        order = f"o{i}"
        delivery = {
            "id": f"d{i}",
            "type": "order_delivered",
            "customer_id": f"c{i}",
            "at": iso(delivered),
            "customer": {"email": f"c{i}@example.com", "first_name": name, "email_consent": True},
            "data": {"order_id": order, "items": [{"sku": f"SKU-{i % 50}", "name": product}]},
        }
        out.append((delivered, len(out), delivery))
        if rng.random() < 2 / 3:
            reviewed = delivered + timedelta(days=3, seconds=rng.randrange(6 * 3600))
            rating = rng.choices(RATINGS, RATING_WEIGHTS)[0]
            review = {
                "id": f"r{i}",
                "type": "review_submitted",
                "customer_id": f"c{i}",
                "at": iso(reviewed),
                "data": {"order_id": order, "rating": rating},
            }
            out.append((reviewed, len(out), review))
    out.sort(key=lambda entry: (entry[0], entry[1]))
    return [entry[2] for entry in out]


def write_project(root: Path, customers: int, seed: int = 1) -> Path:
    """Write the project into ``root``; returns the events file."""
    (root / "journeys").mkdir(parents=True, exist_ok=True)
    for path, content in (
        (root / "journeys" / "review.yaml", JOURNEY),
        (root / "postflow.yaml", CONFIG),
    ):
        path.write_text(yaml.safe_dump(content, sort_keys=False, allow_unicode=True, width=200))
    events_path = root / "events.jsonl"
    with events_path.open("wb") as f:
        for event in events(customers, seed):
            f.write(orjson.dumps(event) + b"\n")
    return events_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", type=Path)
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    path = write_project(args.dir, args.customers, args.seed)
    print(
        f"wrote {args.dir}: journeys/review.yaml, postflow.yaml, {path.name} ({args.customers:,} customers)"
    )


if __name__ == "__main__":
    main()
