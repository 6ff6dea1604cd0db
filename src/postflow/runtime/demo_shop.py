"""The shop's building blocks for :mod:`postflow.runtime.demo_stream`.

Where customers live (time zone, currency, carrier and transit times, fictional phone
numbers and names), the shop's catalog and the texts of reviews, NPS answers and support
tickets; :class:`Customer` and :class:`Order`; and :class:`Builder`, which turns "this
customer orders this basket at 7 pm their time" into the events that follow (shipped, out
for delivery, delivered, reviews, surveys, tickets), each stamped and numbered, live or
history. Kept apart from the cast (:mod:`postflow.runtime.demo_cast`) so that who does what
reads as a script, and the how lives here once.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

DAY = timedelta(days=1)


# -- where customers live -------------------------------------------------------------------
@dataclass(frozen=True)
class Place:
    zone: str
    currency: str
    carrier: str
    transit: tuple[int, int]  # days from shipping to the delivery van, min and max
    phone_prefix: str  # numbers in ranges set aside for fiction (555-01xx, 07700 900xxx...)
    phone_digits: int
    names: tuple[str, ...]
    surnames: tuple[str, ...]

    def phone(self, n: int) -> str:
        return f"{self.phone_prefix}{n % 10**self.phone_digits:0{self.phone_digits}d}"


# zone | currency | carrier | transit days (min max) | phone prefix and digits added
_PLACES = """
America/New_York    | USD | UPS            | 2 3 | +121255501 2
America/Chicago     | USD | UPS            | 2 4 | +131255501 2
America/Denver      | USD | USPS           | 3 4 | +130355501 2
America/Los_Angeles | USD | USPS           | 3 5 | +121355501 2
Europe/London       | GBP | Royal Mail     | 2 3 | +447700900 3
Europe/Berlin       | EUR | DHL            | 2 4 | +491512300 4
Europe/Paris        | EUR | La Poste       | 2 4 | +336123 5
Europe/Stockholm    | EUR | PostNord       | 3 4 | +4670123 4
Europe/Madrid       | EUR | Correos        | 3 5 | +346123 5
Asia/Tokyo          | USD | Japan Post     | 5 7 | +8190123 5
Asia/Singapore      | USD | SingPost       | 5 8 | +659123 4
Australia/Sydney    | USD | Australia Post | 6 8 | +61491570 3
"""
_NAMES = {  # first names, surnames
    "America/New_York": ("Ann Marcus Olivia Jamal Grace", "Lee Brooks Rivera Carter Nguyen"),
    "America/Chicago": ("Ethan Maria Dana Noah", "Kowalski Hughes Ortiz Bennett"),
    "America/Denver": ("Wyatt Harper Luis", "Reed Morgan Alvarez"),
    "America/Los_Angeles": ("Priya Kai Sofia Ben", "Shah Tanaka Delgado Fischer"),
    "Europe/London": ("Oliver Amelia Harry Isla", "Wright Patel Evans Murray"),
    "Europe/Berlin": ("Lena Jonas Mia Felix", "Becker Wagner Schulz Hoffmann"),
    "Europe/Paris": ("Camille Hugo Chloé", "Martin Bernard Laurent"),
    "Europe/Stockholm": ("Astrid Erik", "Lindgren Nilsson"),
    "Europe/Madrid": ("Lucía Pablo", "García Romero"),
    "Asia/Tokyo": ("Yuki Haruto Aiko", "Sato Suzuki Yamamoto"),
    "Asia/Singapore": ("Wei Mei_Ling", "Tan Lim"),
    "Australia/Sydney": ("Charlotte Jack", "Wilson Taylor"),
}


def _places(table: str) -> dict[str, Place]:
    places = {}
    for row in table.strip().splitlines():
        zone, currency, carrier, transit, phone = (c.strip() for c in row.split("|"))
        low, high = map(int, transit.split())
        prefix, digits = phone.split()
        names, surnames = _NAMES[zone]
        places[zone] = Place(
            zone,
            currency,
            carrier,
            (low, high),
            prefix,
            int(digits),
            tuple(n.replace("_", " ") for n in names.split()),
            tuple(surnames.split()),
        )
    return places


PLACES = _places(_PLACES)
REGIONS: dict[str, tuple[str, ...]] = {
    "americas": ("America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles"),
    "europe": (
        "Europe/London",
        "Europe/Berlin",
        "Europe/Paris",
        "Europe/Stockholm",
        "Europe/Madrid",
    ),
    "asia-pacific": ("Asia/Tokyo", "Asia/Singapore", "Australia/Sydney"),
}
REGION_WEIGHTS = {"americas": 0.45, "europe": 0.35, "asia-pacific": 0.20}

RATINGS = (5, 5, 5, 5, 4, 4, 4, 3, 2, 1)
NPS_COMMENTS = {
    "promoter": ("Lovely tea, and it arrived so fast.", "Best espresso beans I've had."),
    "passive": ("Good tea, shipping was a bit slow.", "Nice, a little pricey."),
    "detractor": ("The beans arrived stale.", "Took two weeks to get here."),
}
TICKETS = (
    "Where is my order?",
    "How fine should I grind for a moka pot?",
    "Can I change my delivery address?",
    "Water filter doesn't fit my kettle",
)

# The shop's own catalog, used when the project has none (the bundled catalog.yaml).
SHOP_CATALOG: dict[str, dict[str, Any]] = {
    "TEA-1": {"name": "Green tea", "category": "tea", "price": 12.5, "replenish_days": 30},
    "TEA-2": {"name": "Black tea", "category": "tea", "price": 11.0, "replenish_days": 45},
    "TEA-3": {"name": "Chamomile", "category": "tea", "price": 9.5, "replenish_days": 30},
    "COF-1": {"name": "Espresso beans", "category": "coffee", "price": 16.0, "replenish_days": 21},
    "POT-1": {"name": "Teapot", "category": "teaware", "price": 35.0},
    "CUP-1": {"name": "Tea cups (set of 2)", "category": "teaware", "price": 18.0},
    "GRN-1": {"name": "Burr grinder", "category": "brewing", "price": 89.0},
    "FLT-1": {"name": "Water filter", "category": "filters", "price": 7.0, "replenish_days": 60},
}


# -- building blocks -------------------------------------------------------------------------
@dataclass
class Customer:
    cid: str
    first_name: str
    last_name: str
    place: Place
    phone: str | None
    sms_consent: bool
    email_consent: bool
    birthday: str | None

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.place.zone)

    def profile(self) -> dict[str, Any]:
        name = f"{ascii_fold(self.first_name)}.{ascii_fold(self.last_name)}"
        email = f"{name}@example.com".replace(" ", "")
        profile: dict[str, Any] = {
            "email": email,
            "first_name": self.first_name,
            "last_name": self.last_name,
            "timezone": self.place.zone,
            "email_consent": self.email_consent,
        }
        if self.phone is not None:
            profile["phone"] = self.phone
            profile["sms_consent"] = self.sms_consent
        if self.birthday is not None:
            profile["birthday"] = self.birthday
        return profile


@dataclass
class Order:
    order_id: str
    customer: Customer
    placed: datetime
    total: float
    items: list[dict[str, Any]]
    delivered: datetime | None = None

    def data(self) -> dict[str, Any]:
        return {"order_id": self.order_id, "total": self.total, "items": self.items}


def ascii_fold(text: str) -> str:
    table = str.maketrans("éèáíóúñçåäöüÉ", "eeaiouncaaouE")
    return text.translate(table).lower()


@dataclass
class Builder:
    start: datetime
    days: int
    rng: random.Random
    catalog: Mapping[str, Mapping[str, Any]]
    history: list[tuple[datetime, int, dict[str, Any]]] = field(default_factory=list)
    events: list[tuple[datetime, int, dict[str, Any]]] = field(default_factory=list)
    introduced: set[str] = field(default_factory=set)
    serial: int = 0
    order_number: int = 1000
    ticket_number: int = 500

    # -- time --------------------------------------------------------------------------------
    @property
    def end(self) -> datetime:
        return self.start + timedelta(days=self.days)

    def local(self, c: Customer, day: float, hour: float) -> datetime:
        """The first ``hour`` o'clock in the customer's zone at or after ``day`` days into
        the window (negative: before it)."""
        moment = self.start + timedelta(days=day)
        d = moment.astimezone(c.zone).date()
        at = wall(d, hour, c.zone)
        while at < moment:
            d += timedelta(days=1)
            at = wall(d, hour, c.zone)
        return at

    def later(self, c: Customer, after: datetime, days: int, hour: float) -> datetime:
        """``hour`` local, ``days`` calendar days after ``after`` (the next day if that is not
        after ``after``)."""
        d = after.astimezone(c.zone).date() + timedelta(days=days)
        at = wall(d, hour, c.zone)
        while at <= after:
            d += timedelta(days=1)
            at = wall(d, hour, c.zone)
        return at

    def with_history(self) -> set[str]:
        return {e["customer_id"] for _at, _n, e in self.history}

    def waking_hour(self) -> float:
        """A time of day people shop, write reviews and answer surveys (local)."""
        return self.rng.choice((9.5, 11, 12.5, 13, 17.5, 18, 19, 19.5, 20.5, 21, 22, 22.5))

    # -- events ------------------------------------------------------------------------------
    def emit(
        self,
        c: Customer,
        etype: str,
        at: datetime,
        data: dict[str, Any],
        *,
        past: bool = False,
        profile: Mapping[str, Any] | None = None,
    ) -> None:
        if past == (at >= self.start):
            raise ValueError(f"{etype} for {c.cid} at {at}: history must precede the window")
        event: dict[str, Any] = {"type": etype, "customer_id": c.cid, "at": _stamp(at)}
        if c.cid not in self.introduced:
            self.introduced.add(c.cid)
            event["customer"] = c.profile()
        if profile:
            event.setdefault("customer", {}).update(profile)
        event["data"] = data
        self.serial += 1
        (self.history if past else self.events).append((at, self.serial, event))

    def basket(self, *skus: str, size: int | None = None) -> list[dict[str, Any]]:
        """Items: the SKUs named, else ``size`` (default 1–3) drawn from the catalog."""
        chosen = [s for s in skus if s in self.catalog]
        if not chosen:
            pool = sorted(self.catalog)
            weights = [_popularity(self.catalog[s]) for s in pool]
            want = size or self.rng.choice((1, 1, 2, 2, 3))
            while len(chosen) < min(want, len(pool)):
                sku = self.rng.choices(pool, weights)[0]
                if sku not in chosen:
                    chosen.append(sku)
        items = []
        for sku in chosen:
            info = self.catalog[sku]
            consumable = info.get("replenish_days") is not None
            items.append(
                {
                    "sku": sku,
                    "name": str(info.get("name", sku)),
                    "category": str(info.get("category", "other")),
                    "quantity": self.rng.choice((1, 1, 2, 3)) if consumable else 1,
                    "price": float(info.get("price", 10.0)),
                }
            )
        return items

    def order(
        self,
        c: Customer,
        placed: datetime,
        items: list[dict[str, Any]] | None = None,
        *,
        fate: str = "delivered",
        profile: Mapping[str, Any] | None = None,
    ) -> Order:
        """An order and what follows it: ``delivered`` (shipped, out for delivery, delivered),
        ``cancelled`` (a few hours later, never shipped)."""
        past = placed < self.start
        items = items or self.basket()
        total = round(sum(i["quantity"] * i["price"] for i in items), 2)
        self.order_number += 1
        order = Order(f"o_{self.order_number}", c, placed, total, items)
        self.emit(
            c,
            "order_placed",
            placed,
            {
                "order_id": order.order_id,
                "order_number": f"#{self.order_number}",
                "total": total,
                "currency": c.place.currency,
                "items": items,
            },
            past=past,
            profile=profile,
        )
        if past:
            return order
        if fate == "cancelled":
            self.emit(c, "order_cancelled", placed + timedelta(hours=2, minutes=13), order.data())
            return order
        self.ship(order)
        return order

    def ship(self, order: Order) -> None:
        c = order.customer
        # The warehouse packs on weekdays and hands parcels over in the afternoon (UTC).
        day = (order.placed + timedelta(hours=14)).date()
        while day.weekday() >= 5:
            day += timedelta(days=1)
        shipped = wall(day, self.rng.choice((14, 15, 16, 17)) + 0.25, ZoneInfo("UTC"))
        if shipped <= order.placed:
            shipped = order.placed + timedelta(hours=20)
        low, high = c.place.transit
        van = self.later(c, shipped, self.rng.randint(low, high), self.rng.choice((7.5, 8, 8.5)))
        delivered = van + timedelta(hours=self.rng.choice((2, 3, 4, 5, 6)), minutes=17)
        tracking = f"{c.place.carrier[:2].upper()}{self.rng.randrange(10**9, 10**10)}"
        carrier = c.place.carrier.lower().replace(" ", "-")
        extra = {
            "tracking_number": tracking,
            "tracking_url": f"https://track.example/{carrier}/{tracking}",
            "carrier": c.place.carrier,
        }
        self.emit(c, "order_shipped", shipped, {**order.data(), **extra})
        self.emit(c, "order_out_for_delivery", van, {**order.data(), **extra})
        self.emit(c, "order_delivered", delivered, {**order.data(), **extra})
        order.delivered = delivered

    def past_orders(self, c: Customer, days_ago: list[float], totals: list[float]) -> None:
        """History: orders ``days_ago`` before the window, each of about its total."""
        for ago, total in zip(days_ago, totals, strict=True):
            placed = self.local(c, -ago, self.waking_hour())
            self.order(c, placed, self.basket_of(total))

    def basket_of(self, total: float) -> list[dict[str, Any]]:
        """Items adding up to about ``total`` (the cheapest SKU fills the rest)."""
        items: list[dict[str, Any]] = []
        left = total
        for sku in sorted(self.catalog, key=lambda s: -float(self.catalog[s].get("price", 10))):
            price = float(self.catalog[sku].get("price", 10.0))
            if price <= left and self.rng.random() < 0.6:
                items += self.basket(sku)
                items[-1]["quantity"] = 1
                left -= price
        cheapest = min(self.catalog, key=lambda s: float(self.catalog[s].get("price", 10)))
        price = float(self.catalog[cheapest].get("price", 10.0))
        if left >= price or not items:
            qty = max(1, round(left / price))
            items = [i for i in items if i["sku"] != cheapest]
            items += self.basket(cheapest)
            items[-1]["quantity"] = qty
        return items

    def review(self, order: Order, after_days: int, rating: int) -> None:
        assert order.delivered is not None
        at = self.later(order.customer, order.delivered, after_days, self.waking_hour())
        sku = order.items[0]["sku"]
        data = {"order_id": order.order_id, "sku": sku, "rating": rating}
        self.emit(order.customer, "review_submitted", at, data)

    def nps(self, order: Order, score: int, comment: str | None = None) -> None:
        """An NPS answer: the survey goes out about a month after delivery, in the morning;
        the answer comes within a couple of days of it."""
        assert order.delivered is not None
        c = order.customer
        asked = self.local(c, _days_into(self, order.delivered + 30 * DAY), 10)
        at = asked + timedelta(hours=self.rng.choice((1.5, 3, 8, 27, 50)), minutes=12)
        data: dict[str, Any] = {"score": score}
        if comment:
            data["comment"] = comment
        self.emit(c, "nps_submitted", at, data)

    def ticket(self, c: Customer, at: datetime, subject: str, csat: int | None) -> None:
        """A support ticket closed; its CSAT rating (if any) comes the next day, after the
        survey that follows the close."""
        self.ticket_number += 1
        ticket_id = f"t_{self.ticket_number}"
        self.emit(c, "support_ticket_closed", at, {"ticket_id": ticket_id, "subject": subject})
        if csat is not None:
            answered = self.later(c, at, 1, self.waking_hour())
            self.emit(c, "csat_submitted", answered, {"ticket_id": ticket_id, "score": csat})


def _days_into(b: Builder, at: datetime) -> float:
    return (at - b.start) / DAY


def _popularity(info: Mapping[str, Any]) -> float:
    category = str(info.get("category", ""))
    return {"tea": 5.0, "coffee": 4.0, "teaware": 2.0, "filters": 1.5, "brewing": 0.8}.get(
        category, 1.0
    )


def wall(d: date, hour: float, zone: ZoneInfo) -> datetime:
    h = int(hour)
    m = int(round((hour - h) * 60))
    return datetime.combine(d, time(h, m), tzinfo=zone).astimezone(UTC)


def _stamp(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
