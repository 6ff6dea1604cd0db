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
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

DEFAULT_START = datetime(2027, 3, 1, tzinfo=UTC)
DEFAULT_DAYS = 60
DEFAULT_CUSTOMERS = 40
DEFAULT_SEED = 7
DAY = timedelta(days=1)


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
        email = f"{_ascii(self.first_name)}.{_ascii(self.last_name)}@example.com".replace(" ", "")
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


def _ascii(text: str) -> str:
    table = str.maketrans("éèáíóúñçåäöüÉ", "eeaiouncaaouE")
    return text.translate(table).lower()


@dataclass
class _Builder:
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
        at = _wall(d, hour, c.zone)
        while at < moment:
            d += timedelta(days=1)
            at = _wall(d, hour, c.zone)
        return at

    def later(self, c: Customer, after: datetime, days: int, hour: float) -> datetime:
        """``hour`` local, ``days`` calendar days after ``after`` (the next day if that is not
        after ``after``)."""
        d = after.astimezone(c.zone).date() + timedelta(days=days)
        at = _wall(d, hour, c.zone)
        while at <= after:
            d += timedelta(days=1)
            at = _wall(d, hour, c.zone)
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
        shipped = _wall(day, self.rng.choice((14, 15, 16, 17)) + 0.25, ZoneInfo("UTC"))
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


def _days_into(b: _Builder, at: datetime) -> float:
    return (at - b.start) / DAY


def _popularity(info: Mapping[str, Any]) -> float:
    category = str(info.get("category", ""))
    return {"tea": 5.0, "coffee": 4.0, "teaware": 2.0, "filters": 1.5, "brewing": 0.8}.get(
        category, 1.0
    )


def _wall(d: date, hour: float, zone: ZoneInfo) -> datetime:
    h = int(hour)
    m = int(round((hour - h) * 60))
    return datetime.combine(d, time(h, m), tzinfo=zone).astimezone(UTC)


def _stamp(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _birthday(rng: random.Random, on: date) -> str:
    return f"{rng.randint(1962, 2003)}-{on.month:02d}-{on.day:02d}"


# -- the cast --------------------------------------------------------------------------------
class _Cast:
    """Hands out customers: names unique, places cycling through the regions."""

    def __init__(self, rng: random.Random, limit: int) -> None:
        self.rng = rng
        self.limit = limit
        self.count = 0
        self.used: set[tuple[str, str]] = set()
        self.made: list[Customer] = []

    @property
    def customers(self) -> list[Customer]:
        return list(self.made)

    def room(self) -> bool:
        return self.count < self.limit

    def new(
        self,
        zone: str | None = None,
        *,
        phone: bool | None = None,
        sms: bool | None = None,
        email_consent: bool = True,
        birthday: str | None = None,
    ) -> Customer:
        rng = self.rng
        if zone is None:
            region = rng.choices(list(REGION_WEIGHTS), list(REGION_WEIGHTS.values()))[0]
            zone = rng.choice(REGIONS[region])
        place = PLACES[zone]
        for _ in range(50):
            name = (rng.choice(place.names), rng.choice(place.surnames))
            if name not in self.used:
                break
        else:
            name = (rng.choice(place.names), f"{rng.choice(place.surnames)}-{self.count}")
        self.used.add(name)
        self.count += 1
        has_phone = rng.random() < 0.75 if phone is None else phone
        consent = (rng.random() < 0.5 if sms is None else sms) and has_phone
        customer = Customer(
            cid=f"c_{self.count:03d}_{_ascii(name[0]).replace(' ', '')}",
            first_name=name[0],
            last_name=name[1],
            place=place,
            phone=place.phone(self.count) if has_phone else None,
            sms_consent=consent,
            email_consent=email_consent,
            birthday=birthday,
        )
        self.made.append(customer)
        return customer


# Scripted customers: each gives some program of the library its moment. Days are from the
# start of the window; hours are the customer's local time.
def _loyal_with_referral(b: _Builder, cast: _Cast) -> None:
    """Three orders in the window (the loyalty invitation), a 5-star review (refer a friend),
    and a friend who converts; a birthday two weeks in."""
    birthday = _birthday(b.rng, (b.start + timedelta(days=14)).date())
    ann = cast.new("America/New_York", phone=True, sms=True, birthday=birthday)
    first = b.order(ann, b.local(ann, 0, 19.5), b.basket("TEA-1", "CUP-1"))
    b.review(first, 11, 5)
    b.order(ann, b.local(ann, 19, 20), b.basket("TEA-2"))
    b.order(ann, b.local(ann, 41, 12.5), b.basket("COF-1", "GRN-1"))
    if not cast.room():
        return
    friend = cast.new("Europe/London", phone=True, sms=False)
    placed = b.local(friend, 33, 18)
    b.order(friend, placed, b.basket("TEA-3", "CUP-1"))
    b.emit(
        ann,
        "referral_converted",
        placed + timedelta(minutes=5),
        {"referred_customer_id": friend.cid},
    )


def _milestone_five(b: _Builder, cast: _Cast) -> None:
    """Four orders in the past year; the fifth in the window. Birthday three weeks in."""
    birthday = _birthday(b.rng, (b.start + timedelta(days=20)).date())
    c = cast.new("Europe/Berlin", phone=True, sms=True, birthday=birthday)
    b.past_orders(c, [290, 210, 140, 75], [38, 42, 30, 45])
    b.order(c, b.local(c, 9, 19), b.basket("TEA-2", "TEA-3"))


def _milestone_ten_gold(b: _Builder, cast: _Cast) -> None:
    """Eight past orders (about 520 spent); the 9th and the 10th in the window, the 10th
    crossing 600 (gold)."""
    c = cast.new("America/Chicago", phone=True, sms=False)
    b.past_orders(c, [298, 262, 231, 190, 160, 128, 96, 64], [72, 58, 66, 61, 70, 63, 59, 71])
    b.order(c, b.local(c, 5, 20.5), b.basket("COF-1", "FLT-1"))
    b.order(c, b.local(c, 31, 19), b.basket("GRN-1", "COF-1"))


def _silver(b: _Builder, cast: _Cast) -> None:
    """Two past orders (about 190); a grinder in the window crosses 250 (silver)."""
    c = cast.new("Europe/Paris", phone=False)
    b.past_orders(c, [220, 100], [95, 96])
    order = b.order(c, b.local(c, 4, 21), b.basket("GRN-1", "COF-1"))
    b.review(order, 26, 4)


def _lapsed_comes_back(b: _Builder, cast: _Cast) -> None:
    """Two orders long ago, the last 172 days before the window: lapses into win-back in the
    second week and orders again after it."""
    c = cast.new("America/Los_Angeles", phone=True, sms=True)
    b.past_orders(c, [286, 172], [41, 33])
    b.order(c, b.local(c, 27, 19.5), b.basket("TEA-1"))


def _lapsed(b: _Builder, cast: _Cast) -> None:
    """Two orders long ago, the last 155 days before the window: lapses in week four and
    does not come back. Birthday in week seven."""
    birthday = _birthday(b.rng, (b.start + timedelta(days=45)).date())
    c = cast.new("Australia/Sydney", phone=True, sms=False, birthday=birthday)
    b.past_orders(c, [240, 155], [52, 27])


def _anniversary(b: _Builder, cast: _Cast, day: int, again: int | None) -> None:
    """A first order exactly one year before the ``day``-th day of the window, another a
    few months ago; optionally an order in the window on day ``again``."""
    c = cast.new("Asia/Tokyo" if again is None else "Europe/London", phone=True, sms=True)
    target = (b.start + timedelta(days=day)).astimezone(c.zone).date()
    try:
        first = target.replace(year=target.year - 1)
    except ValueError:  # 29 February
        first = target.replace(year=target.year - 1, day=28)
    b.order(c, _wall(first, 13, c.zone), b.basket_of(34))
    b.past_orders(c, [70], [28])
    if again is not None:
        b.order(c, b.local(c, again, 20), b.basket("TEA-1", "FLT-1"))


def _damaged_teapot(b: _Builder, cast: _Cast) -> None:
    """A teapot arrives chipped: a support ticket, a refund, a good CSAT answer."""
    c = cast.new("America/Denver", phone=True, sms=False)
    order = b.order(c, b.local(c, 3, 12), b.basket("POT-1", "TEA-1"))
    assert order.delivered is not None
    b.ticket(c, order.delivered + timedelta(hours=20), "Teapot arrived chipped", 4)
    refund = order.data() | {"amount": 35.0}
    b.emit(c, "order_refunded", order.delivered + timedelta(days=1, hours=22), refund)


def _cancels_and_reorders(b: _Builder, cast: _Cast) -> None:
    """Orders, cancels two hours later, orders something else; no marketing email."""
    c = cast.new("Asia/Singapore", phone=True, sms=True, email_consent=False)
    b.order(c, b.local(c, 5, 20.5), b.basket("POT-1"), fate="cancelled")
    b.order(c, b.local(c, 7, 12), b.basket("TEA-1", "CUP-1"))


def _critic(b: _Builder, cast: _Cast) -> None:
    """Stale beans: a 1-star review, a ticket with a poor CSAT, an NPS detractor."""
    c = cast.new("Europe/Stockholm", phone=False)
    order = b.order(c, b.local(c, 2, 21), b.basket("COF-1"))
    assert order.delivered is not None
    b.review(order, 10, 1)
    b.ticket(c, b.later(c, order.delivered, 11, 15), "Stale espresso beans", 2)
    b.nps(order, 3, NPS_COMMENTS["detractor"][0])


def _promoter(b: _Builder, cast: _Cast) -> None:
    c = cast.new("America/New_York", phone=True, sms=True)
    order = b.order(c, b.local(c, 8, 22), b.basket("TEA-2", "POT-1"))
    assert order.delivered is not None
    b.review(order, 14, 5)
    b.nps(order, 10, NPS_COMMENTS["promoter"][0])


def _passive(b: _Builder, cast: _Cast) -> None:
    c = cast.new("Europe/Madrid", phone=True, sms=False)
    order = b.order(c, b.local(c, 6, 22.5), b.basket("TEA-3"))
    assert order.delivered is not None
    b.nps(order, 7, NPS_COMMENTS["passive"][1])
    # A question answered on the phone: the ticket is closed, the CSAT survey not answered.
    b.ticket(c, b.later(c, order.placed, 1, 11), "Can I change my delivery address?", None)


def _repeat(b: _Builder, cast: _Cast) -> None:
    """A first order, then a second one after the replenishment reminder, opting in to
    texts at checkout."""
    c = cast.new("America/Los_Angeles", phone=True, sms=False)
    b.order(c, b.local(c, 0, 9.5), b.basket("COF-1"))
    b.order(c, b.local(c, 24, 18), b.basket("COF-1", "FLT-1"), profile={"sms_consent": True})


def _third_order(b: _Builder, cast: _Cast) -> None:
    """Two past orders; the third in the window (loyalty invitation)."""
    c = cast.new("Europe/Berlin", phone=True, sms=True)
    b.past_orders(c, [180, 90], [24, 31])
    b.order(c, b.local(c, 12, 19), b.basket("TEA-1", "TEA-2"))


SCRIPTED: tuple[Callable[[_Builder, _Cast], None], ...] = (
    _loyal_with_referral,  # two customers
    _milestone_five,
    _milestone_ten_gold,
    _silver,
    _lapsed_comes_back,
    _lapsed,
    lambda b, cast: _anniversary(b, cast, 18, None),
    _damaged_teapot,
    _cancels_and_reorders,
    _critic,
    _promoter,
    _passive,
    _repeat,
    _third_order,
    lambda b, cast: _anniversary(b, cast, 44, 12),
)


def _ordinary(b: _Builder, cast: _Cast) -> None:
    """A customer drawn at random: a first order in the first six weeks, perhaps a second,
    perhaps a review, an NPS answer or a support ticket."""
    rng = b.rng
    birthday = None
    if rng.random() < 0.8:
        birthday = _birthday(rng, date(2001, 1, 1) + timedelta(days=rng.randrange(365)))
    c = cast.new(birthday=birthday, email_consent=rng.random() > 0.08)
    if rng.random() < 0.2:  # a returning customer
        b.past_orders(c, [rng.uniform(62, 300)], [rng.uniform(20, 60)])
    horizon = b.days * 0.7
    order = b.order(c, b.local(c, rng.uniform(0, horizon), b.waking_hour()))
    if order.delivered is None:
        return
    if rng.random() < 0.45:
        b.review(order, rng.randint(8, 22), rng.choice(RATINGS))
    if rng.random() < 0.3:
        score = rng.choice((10, 10, 9, 9, 8, 8, 7, 6, 4, 2))
        kind = "promoter" if score >= 9 else "passive" if score >= 7 else "detractor"
        comment = rng.choice(NPS_COMMENTS[kind]) if rng.random() < 0.6 else None
        b.nps(order, score, comment)
    if rng.random() < 0.12:
        at = b.later(c, order.delivered, rng.randint(1, 10), rng.choice((10, 14, 16)))
        b.ticket(c, at, rng.choice(TICKETS), rng.choice((5, 4, 3, None)))
    if rng.random() < 0.3:
        b.order(c, b.later(c, order.placed, rng.randint(16, 34), b.waking_hour()))


def _synced(b: _Builder, cast: _Cast) -> None:
    """Customers known from their history get their profile synced on the first day (as
    Shopify's ``customers/update`` raises ``customer_updated``): a live event that makes
    them known to the daemon, whose audience journeys read in each customer's own time
    zone reach customers only once it has seen them live."""
    imported = b.with_history()
    for c in cast.customers:
        if c.cid in imported:
            at = b.local(c, 0, b.rng.choice((8, 9.5, 11, 13.5)))
            b.emit(c, "customer_updated", at, {"source": "shopify"}, profile=c.profile())


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
    b = _Builder(start, days, rng, dict(catalog) if catalog else SHOP_CATALOG)
    cast = _Cast(rng, customers)
    for script in SCRIPTED:
        if not cast.room():
            break
        script(b, cast)
    while cast.room():
        _ordinary(b, cast)
    _synced(b, cast)
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
