"""Who the customers of :mod:`postflow.runtime.demo_stream` are and what they do.

A handful of scripted customers (:data:`SCRIPTED`) make sure every program of the library
has its moment: the loyalty invitation and tiers, 5th and 10th orders, win-back, a
first-purchase anniversary, refer-a-friend, a refund, a cancellation, reviews, NPS and CSAT
answers good and bad. The rest are drawn at random (:func:`ordinary`). Kept apart from the
building blocks (:mod:`postflow.runtime.demo_shop`) so each script reads as a story.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import date, timedelta

from postflow.runtime.demo_shop import (
    NPS_COMMENTS,
    PLACES,
    RATINGS,
    REGION_WEIGHTS,
    REGIONS,
    TICKETS,
    Builder,
    Customer,
    ascii_fold,
    wall,
)


def _birthday(rng: random.Random, on: date) -> str:
    return f"{rng.randint(1962, 2003)}-{on.month:02d}-{on.day:02d}"


# -- the cast --------------------------------------------------------------------------------
class Cast:
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
            cid=f"c_{self.count:03d}_{ascii_fold(name[0]).replace(' ', '')}",
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
def _loyal_with_referral(b: Builder, cast: Cast) -> None:
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


def _milestone_five(b: Builder, cast: Cast) -> None:
    """Four orders in the past year; the fifth in the window. Birthday three weeks in."""
    birthday = _birthday(b.rng, (b.start + timedelta(days=20)).date())
    c = cast.new("Europe/Berlin", phone=True, sms=True, birthday=birthday)
    b.past_orders(c, [290, 210, 140, 75], [38, 42, 30, 45])
    b.order(c, b.local(c, 9, 19), b.basket("TEA-2", "TEA-3"))


def _milestone_ten_gold(b: Builder, cast: Cast) -> None:
    """Eight past orders (about 520 spent); the 9th and the 10th in the window, the 10th
    crossing 600 (gold)."""
    c = cast.new("America/Chicago", phone=True, sms=False)
    b.past_orders(c, [298, 262, 231, 190, 160, 128, 96, 64], [72, 58, 66, 61, 70, 63, 59, 71])
    b.order(c, b.local(c, 5, 20.5), b.basket("COF-1", "FLT-1"))
    b.order(c, b.local(c, 31, 19), b.basket("GRN-1", "COF-1"))


def _silver(b: Builder, cast: Cast) -> None:
    """Two past orders (about 190); a grinder in the window crosses 250 (silver)."""
    c = cast.new("Europe/Paris", phone=False)
    b.past_orders(c, [220, 100], [95, 96])
    order = b.order(c, b.local(c, 4, 21), b.basket("GRN-1", "COF-1"))
    b.review(order, 26, 4)


def _lapsed_comes_back(b: Builder, cast: Cast) -> None:
    """Two orders long ago, the last 172 days before the window: lapses into win-back in the
    second week and orders again after it."""
    c = cast.new("America/Los_Angeles", phone=True, sms=True)
    b.past_orders(c, [286, 172], [41, 33])
    b.order(c, b.local(c, 27, 19.5), b.basket("TEA-1"))


def _lapsed(b: Builder, cast: Cast) -> None:
    """Two orders long ago, the last 155 days before the window: lapses in week four and
    does not come back. Birthday in week seven."""
    birthday = _birthday(b.rng, (b.start + timedelta(days=45)).date())
    c = cast.new("Australia/Sydney", phone=True, sms=False, birthday=birthday)
    b.past_orders(c, [240, 155], [52, 27])


def _anniversary(b: Builder, cast: Cast, day: int, again: int | None) -> None:
    """A first order exactly one year before the ``day``-th day of the window, another a
    few months ago; optionally an order in the window on day ``again``."""
    c = cast.new("Asia/Tokyo" if again is None else "Europe/London", phone=True, sms=True)
    target = (b.start + timedelta(days=day)).astimezone(c.zone).date()
    try:
        first = target.replace(year=target.year - 1)
    except ValueError:  # 29 February
        first = target.replace(year=target.year - 1, day=28)
    b.order(c, wall(first, 13, c.zone), b.basket_of(34))
    b.past_orders(c, [70], [28])
    if again is not None:
        b.order(c, b.local(c, again, 20), b.basket("TEA-1", "FLT-1"))


def _damaged_teapot(b: Builder, cast: Cast) -> None:
    """A teapot arrives chipped: a support ticket, a refund, a good CSAT answer."""
    c = cast.new("America/Denver", phone=True, sms=False)
    order = b.order(c, b.local(c, 3, 12), b.basket("POT-1", "TEA-1"))
    assert order.delivered is not None
    b.ticket(c, order.delivered + timedelta(hours=20), "Teapot arrived chipped", 4)
    refund = order.data() | {"amount": 35.0}
    b.emit(c, "order_refunded", order.delivered + timedelta(days=1, hours=22), refund)


def _cancels_and_reorders(b: Builder, cast: Cast) -> None:
    """Orders, cancels two hours later, orders something else; no marketing email."""
    c = cast.new("Asia/Singapore", phone=True, sms=True, email_consent=False)
    b.order(c, b.local(c, 5, 20.5), b.basket("POT-1"), fate="cancelled")
    b.order(c, b.local(c, 7, 12), b.basket("TEA-1", "CUP-1"))


def _critic(b: Builder, cast: Cast) -> None:
    """Stale beans: a 1-star review, a ticket with a poor CSAT, an NPS detractor."""
    c = cast.new("Europe/Stockholm", phone=False)
    order = b.order(c, b.local(c, 2, 21), b.basket("COF-1"))
    assert order.delivered is not None
    b.review(order, 10, 1)
    b.ticket(c, b.later(c, order.delivered, 11, 15), "Stale espresso beans", 2)
    b.nps(order, 3, NPS_COMMENTS["detractor"][0])


def _promoter(b: Builder, cast: Cast) -> None:
    c = cast.new("America/New_York", phone=True, sms=True)
    order = b.order(c, b.local(c, 8, 22), b.basket("TEA-2", "POT-1"))
    assert order.delivered is not None
    b.review(order, 14, 5)
    b.nps(order, 10, NPS_COMMENTS["promoter"][0])


def _passive(b: Builder, cast: Cast) -> None:
    c = cast.new("Europe/Madrid", phone=True, sms=False)
    order = b.order(c, b.local(c, 6, 22.5), b.basket("TEA-3"))
    assert order.delivered is not None
    b.nps(order, 7, NPS_COMMENTS["passive"][1])
    # A question answered on the phone: the ticket is closed, the CSAT survey not answered.
    b.ticket(c, b.later(c, order.placed, 1, 11), "Can I change my delivery address?", None)


def _repeat(b: Builder, cast: Cast) -> None:
    """A first order, then a second one after the replenishment reminder, opting in to
    texts at checkout."""
    c = cast.new("America/Los_Angeles", phone=True, sms=False)
    b.order(c, b.local(c, 0, 9.5), b.basket("COF-1"))
    b.order(c, b.local(c, 24, 18), b.basket("COF-1", "FLT-1"), profile={"sms_consent": True})


def _third_order(b: Builder, cast: Cast) -> None:
    """Two past orders; the third in the window (loyalty invitation)."""
    c = cast.new("Europe/Berlin", phone=True, sms=True)
    b.past_orders(c, [180, 90], [24, 31])
    b.order(c, b.local(c, 12, 19), b.basket("TEA-1", "TEA-2"))


SCRIPTED: tuple[Callable[[Builder, Cast], None], ...] = (
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


def ordinary(b: Builder, cast: Cast) -> None:
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


def synced(b: Builder, cast: Cast) -> None:
    """Customers known from their history get their profile synced on the first day, as
    Shopify's ``customers/update`` raises ``customer_updated`` when a shop connects: their
    consent and addresses as the store holds them now."""
    imported = b.with_history()
    for c in cast.customers:
        if c.cid in imported:
            at = b.local(c, 0, b.rng.choice((8, 9.5, 11, 13.5)))
            b.emit(c, "customer_updated", at, {"source": "shopify"}, profile=c.profile())
