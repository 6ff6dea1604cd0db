"""Shopify webhooks mapped to postflow events (contract §6): pure functions, no database, no
clock.

The HTTP layer checks ``X-Shopify-Hmac-Sha256``, reads the payload with
:func:`read_payload`, looks up what a payload cannot say itself (the indexed order a
fulfillment or refund names, see :func:`order_key`; the customer of an email, see
:func:`lookup_email`) and passes it in a :class:`Context`. :func:`map_webhook` answers the
events to ingest and the orders to index, or raises :class:`Ignored` with the reason, which
the endpoint returns as ``200 {"ignored": reason}``: a 4xx would make Shopify retry for hours
something that will never map.

Topics and events (ids are ``shopify:{topic}:{resource id}``):

- ``orders/create`` → ``order_placed`` with the customer's profile; the order is indexed.
- ``orders/cancelled`` → ``order_cancelled``.
- ``fulfillments/create`` → ``order_shipped`` (not for a ``cancelled``, ``error`` or
  ``failure`` fulfillment).
- ``fulfillments/update`` → ``order_out_for_delivery`` / ``order_delivered`` when
  ``shipment_status`` is ``out_for_delivery`` / ``delivered`` (id suffixed ``:{status}``, so
  each status raises one event however many updates repeat it); other statuses are ignored.
- ``refunds/create`` → ``order_refunded``.
- ``customers/create`` / ``customers/update`` → ``customer_updated``, whose ``customer`` is
  merged into the profile (id ``shopify:customers/update:{id}:{updated_at}`` for updates).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from postflow.compliance import normalize_email, normalize_phone
from postflow.durations import DurationError, format_instant, parse_instant

PROFILE_EVENT = "customer_updated"
"""The event a customers/* webhook raises: its ``customer`` block updates the profile."""
DELIVERY_EVENTS = {"out_for_delivery": "order_out_for_delivery", "delivered": "order_delivered"}
FAILED_FULFILLMENTS = frozenset({"cancelled", "error", "failure"})
ORDER_TOPICS = frozenset({"orders/create", "orders/cancelled"})
REFERRING_TOPICS = frozenset({"fulfillments/create", "fulfillments/update", "refunds/create"})
CUSTOMER_TOPICS = frozenset({"customers/create", "customers/update"})
TOPICS = ORDER_TOPICS | REFERRING_TOPICS | CUSTOMER_TOPICS


class Ignored(Exception):
    """A correctly signed webhook that raises no event; ``reason`` is said to Shopify."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class IndexedOrder:
    """An order as the index keeps it: whose it is, its email and its summary (``order_id``,
    ``order_number``, ``total``, ``currency``, ``items``: what later events copy)."""

    shopify_id: str
    customer_id: str
    email: str | None
    summary: dict[str, Any]


@dataclass(frozen=True)
class Context:
    """What the mapping needs besides the payload. ``order``: the indexed order the payload
    names (:func:`order_key`), if any; ``email_owner``: the customer of the latest indexed
    order with the payload's email (:func:`lookup_email`), if any."""

    now_us: int
    catalog: Mapping[str, Any] = field(default_factory=dict)
    region: str | None = None
    order: IndexedOrder | None = None
    email_owner: str | None = None


@dataclass(frozen=True)
class Mapped:
    """Events to ingest (JSON-ready dicts) and orders to index, in one transaction."""

    events: list[dict[str, Any]]
    index: list[IndexedOrder] = field(default_factory=list)


# --- reading ----------------------------------------------------------------------------------


def read_payload(topic: str, body: bytes) -> dict[str, Any]:
    """The payload of a webhook whose topic we map, or :class:`Ignored`: an unknown or
    missing topic, a body that is not a JSON object, a resource without an ``id``."""
    if not topic:
        raise Ignored("no X-Shopify-Topic header")
    if topic not in TOPICS:
        raise Ignored(f"topic {topic!r} is not mapped to an event")
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Ignored(f"the body is not JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise Ignored("the body is not a JSON object")
    if _id(payload.get("id")) is None:
        raise Ignored(f"the {topic} payload has no id")
    return payload


def order_key(topic: str, payload: Mapping[str, Any]) -> str | None:
    """The Shopify order id whose indexed row the mapping of this payload wants."""
    if topic in REFERRING_TOPICS:
        return _id(payload.get("order_id"))
    if topic == "orders/cancelled":
        return _id(payload.get("id"))
    return None


def lookup_email(topic: str, payload: Mapping[str, Any]) -> str | None:
    """The email whose customer a fulfillment of an order never indexed is filed under."""
    if topic in ("fulfillments/create", "fulfillments/update"):
        return normalize_email(payload.get("email"))
    return None


def map_webhook(topic: str, payload: Mapping[str, Any], ctx: Context) -> Mapped:
    """The events of one webhook (a topic of :data:`TOPICS`), or :class:`Ignored`."""
    mappers: dict[str, Callable[[str, Mapping[str, Any], Context], Mapped]] = {
        "orders/create": _order_created,
        "orders/cancelled": _order_cancelled,
        "fulfillments/create": _fulfillment,
        "fulfillments/update": _fulfillment,
        "refunds/create": _refund,
        "customers/create": _customer,
        "customers/update": _customer,
    }
    mapper = mappers.get(topic)
    if mapper is None:
        raise Ignored(f"topic {topic!r} is not mapped to an event")
    return mapper(topic, payload, ctx)


# --- values -----------------------------------------------------------------------------------


def _id(value: Any) -> str | None:
    """A Shopify id (an integer, or a string for GraphQL-era payloads) as text."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _text(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def money(value: Any) -> float | None:
    """A price: Shopify sends decimal strings (``"49.90"``); numbers are taken too."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    if not amount.is_finite():
        return None
    number = float(amount)
    return number if math.isfinite(number) else None  # "1e400" is finite, its float is not


def _quantity(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"[0-9]{1,9}", value.strip()):
        return int(value.strip())  # isdigit() also holds for "²", which int() refuses
    return None


def instant(payload: Mapping[str, Any], keys: tuple[str, ...], now_us: int) -> str:
    """The first of ``keys`` that holds a timestamp with an offset, in UTC; else now."""
    for key in keys:
        value = payload.get(key)
        if isinstance(value, str):
            try:
                return format_instant(parse_instant(value.strip()))
            except DurationError:
                continue
    return format_instant(now_us)


def consent(block: Any) -> bool | None:
    """``email_marketing_consent`` / ``sms_marketing_consent``: ``subscribed`` is true, any
    other state false; no block (or no state) says nothing."""
    if not isinstance(block, dict) or not isinstance(block.get("state"), str):
        return None
    return block["state"].strip().lower() == "subscribed"


# --- profiles and items -----------------------------------------------------------------------


def customer_id(customer: Mapping[str, Any], order: Mapping[str, Any]) -> str | None:
    """``shopify:{customer.id}``, else the order's email (normalised), else none."""
    shopify_id = _id(customer.get("id"))
    if shopify_id is not None:
        return f"shopify:{shopify_id}"
    for value in (order.get("email"), order.get("contact_email"), customer.get("email")):
        email = normalize_email(value)
        if email is not None:
            return email
    return None


def profile(
    customer: Mapping[str, Any], order: Mapping[str, Any], region: str | None
) -> dict[str, Any]:
    """Profile keys from a Shopify customer and, for a guest, the order: ``email``,
    ``phone`` (E.164), ``first_name``, ``last_name``, ``email_consent``, ``sms_consent``.
    Keys Shopify leaves empty are not set, so they never erase what the profile holds."""
    found: dict[str, Any] = {}
    emails = (customer.get("email"), order.get("email"), order.get("contact_email"))
    email = next((e for e in map(normalize_email, emails) if e is not None), None)
    if email is not None:
        found["email"] = email
    phones = (customer.get("phone"), order.get("phone"))
    phone = next((p for p in (normalize_phone(x, region) for x in phones) if p), None)
    if phone is not None:
        found["phone"] = phone
    billing, shipping = _dict(order.get("billing_address")), _dict(order.get("shipping_address"))
    addresses = (customer, billing, shipping)
    for key in ("first_name", "last_name"):
        name = next((n for n in (_text(a.get(key)) for a in addresses) if n), None)
        if name is not None:
            found[key] = name
    email_consent = consent(customer.get("email_marketing_consent"))
    if email_consent is None and "email_marketing_consent" not in customer:
        legacy = customer.get("accepts_marketing")  # API versions before 2022-04
        email_consent = legacy if isinstance(legacy, bool) else None
    if email_consent is not None:
        found["email_consent"] = email_consent
    sms_consent = consent(customer.get("sms_marketing_consent"))
    if sms_consent is not None:
        found["sms_consent"] = sms_consent
    return found


def category(sku: str, product_type: str | None, catalog: Mapping[str, Any]) -> str | None:
    """The catalog's category for a known SKU, else the product type in lower case."""
    record = catalog.get(sku) if sku else None
    if isinstance(record, dict) and isinstance(record.get("category"), str):
        return str(record["category"])
    return product_type.lower() if product_type else None


def items(lines: Any, catalog: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Line items as the journeys read them: ``sku`` (``""`` when Shopify has none),
    ``name`` and ``title`` (the product title), ``quantity``, ``price`` (a number) and, when
    known, ``variant``, ``product_type``, ``category`` and ``product_id``."""
    found: list[dict[str, Any]] = []
    for line in _list(lines):
        if not isinstance(line, dict):
            continue
        title = _text(line.get("title")) or _text(line.get("name")) or ""
        sku = _text(line.get("sku")) or ""
        item: dict[str, Any] = {"sku": sku, "name": title, "title": title}
        optional = {
            "variant": _text(line.get("variant_title")),
            "quantity": _quantity(line.get("quantity")),
            "price": money(line.get("price")),
            "product_type": _text(line.get("product_type")),
            "category": category(sku, _text(line.get("product_type")), catalog),
            "product_id": _id(line.get("product_id")),
        }
        item.update((k, v) for k, v in optional.items() if v is not None)
        found.append(item)
    return found


def summary(order: Mapping[str, Any], catalog: Mapping[str, Any]) -> dict[str, Any]:
    """What events about an order carry: ``order_id`` (Shopify's id, as text),
    ``order_number`` (the name the customer sees, ``#1001``), ``total`` (``total_price`` as
    a number), ``currency`` and ``items``."""
    found: dict[str, Any] = {"order_id": _id(order.get("id")) or ""}
    number = _text(order.get("name")) or _id(order.get("order_number"))
    if number is not None:
        found["order_number"] = number
    total = money(order.get("total_price"))
    if total is not None:
        found["total"] = total
    currency = _text(order.get("currency"))
    if currency is not None:
        found["currency"] = currency
    found["items"] = items(order.get("line_items"), catalog)
    return found


def _event(
    event_id: str,
    type_: str,
    customer: str,
    at: str,
    data: dict[str, Any],
    profile_keys: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    event: dict[str, Any] = {"id": event_id, "type": type_, "customer_id": customer, "at": at}
    if profile_keys:
        event["customer"] = dict(profile_keys)
    event["data"] = data
    return event


# --- topics -----------------------------------------------------------------------------------


def _order_created(topic: str, order: Mapping[str, Any], ctx: Context) -> Mapped:
    customer = _dict(order.get("customer"))
    owner = customer_id(customer, order)
    if owner is None:
        raise Ignored("the order has neither a customer nor an email")
    base = summary(order, ctx.catalog)
    codes = [_text(_dict(c).get("code")) for c in _list(order.get("discount_codes"))]
    data = {**base, "discount_codes": [c for c in codes if c]}
    if order.get("test") is True:
        data["test"] = True
    keys = profile(customer, order, ctx.region)
    at = instant(order, ("created_at", "processed_at"), ctx.now_us)
    event = _event(f"shopify:{topic}:{base['order_id']}", "order_placed", owner, at, data, keys)
    return Mapped([event], [IndexedOrder(base["order_id"], owner, keys.get("email"), base)])


def _order_cancelled(topic: str, order: Mapping[str, Any], ctx: Context) -> Mapped:
    owner = ctx.order.customer_id if ctx.order else customer_id(_dict(order.get("customer")), order)
    if owner is None:
        raise Ignored("the order has neither a customer nor an email")
    data = summary(order, ctx.catalog)
    reason = _text(order.get("cancel_reason"))
    if reason is not None:
        data["reason"] = reason
    at = instant(order, ("cancelled_at", "updated_at"), ctx.now_us)
    event_id = f"shopify:{topic}:{data['order_id']}"
    return Mapped([_event(event_id, "order_cancelled", owner, at, data)])


def _referred_order(
    payload: Mapping[str, Any], ctx: Context, *, by_email: bool
) -> tuple[str, dict[str, Any], dict[str, Any] | None]:
    """(customer, data, profile keys) for a payload naming an order: the indexed order's
    customer and summary; for a fulfillment of an order never indexed, the customer of its
    email (an indexed order's, else the email itself) and the fulfilled items."""
    shopify_id = _id(payload.get("order_id"))
    if shopify_id is None:
        raise Ignored("the payload names no order_id")
    if ctx.order is not None:
        return ctx.order.customer_id, dict(ctx.order.summary), None
    email = normalize_email(payload.get("email")) if by_email else None
    if email is None:
        raise Ignored(f"order {shopify_id} is not in the order index (no orders/create for it)")
    data = {"order_id": shopify_id, "items": items(payload.get("line_items"), ctx.catalog)}
    return ctx.email_owner or email, data, {"email": email}


def tracking(fulfillment: Mapping[str, Any]) -> dict[str, Any]:
    """``tracking_url``, ``tracking_number``, ``carrier`` (the first of each), and the lists
    ``tracking_urls`` / ``tracking_numbers`` when a fulfillment ships several parcels."""
    found: dict[str, Any] = {}
    pairs = (("tracking_url", "tracking_urls"), ("tracking_number", "tracking_numbers"))
    for single, plural in pairs:
        many = [v for v in (_text(x) for x in _list(fulfillment.get(plural))) if v]
        first = _text(fulfillment.get(single)) or (many[0] if many else None)
        if first is not None:
            found[single] = first
        if len(many) > 1:
            found[plural] = many
    carrier = _text(fulfillment.get("tracking_company"))
    if carrier is not None:
        found["carrier"] = carrier
    return found


def _fulfillment(topic: str, fulfillment: Mapping[str, Any], ctx: Context) -> Mapped:
    fid = _id(fulfillment.get("id"))
    status = (_text(fulfillment.get("status")) or "").lower()
    if topic == "fulfillments/create":
        if status in FAILED_FULFILLMENTS:
            raise Ignored(f"fulfillment {fid} has status {status}: nothing shipped")
        type_, event_id = "order_shipped", f"shopify:{topic}:{fid}"
        at = instant(fulfillment, ("created_at", "updated_at"), ctx.now_us)
    else:
        shipment = (_text(fulfillment.get("shipment_status")) or "").lower()
        if shipment not in DELIVERY_EVENTS:
            shown = repr(shipment) if shipment else "none"
            raise Ignored(
                f"shipment_status {shown} raises no event (only delivered and out_for_delivery do)"
            )
        type_, event_id = DELIVERY_EVENTS[shipment], f"shopify:{topic}:{fid}:{shipment}"
        at = instant(fulfillment, ("updated_at", "created_at"), ctx.now_us)
    owner, data, keys = _referred_order(fulfillment, ctx, by_email=True)
    data["fulfillment_id"] = fid
    data.update(tracking(fulfillment))
    return Mapped([_event(event_id, type_, owner, at, data, keys)])


def refunded_amount(refund: Mapping[str, Any]) -> float | None:
    """The money returned: successful ``refund`` transactions; without any, the subtotal of
    the refunded line items; None when the payload says neither."""
    paid = [
        money(tx.get("amount"))
        for tx in map(_dict, _list(refund.get("transactions")))
        if tx.get("kind") == "refund" and tx.get("status") in ("success", None)
    ]
    amounts = [a for a in paid if a is not None]
    if not amounts:
        lines = map(_dict, _list(refund.get("refund_line_items")))
        amounts = [a for a in (money(line.get("subtotal")) for line in lines) if a is not None]
    return float(sum(Decimal(str(a)) for a in amounts)) if amounts else None


def _refund(topic: str, refund: Mapping[str, Any], ctx: Context) -> Mapped:
    owner, data, _ = _referred_order(refund, ctx, by_email=False)
    data["refund_id"] = _id(refund.get("id"))
    amount = refunded_amount(refund)
    if amount is not None:
        data["amount"] = amount
    refunded = []
    for line in map(_dict, _list(refund.get("refund_line_items"))):
        for item in items([line.get("line_item")], ctx.catalog):
            quantity = _quantity(line.get("quantity"))
            refunded.append({**item, **({"quantity": quantity} if quantity is not None else {})})
    data["refunded_items"] = refunded
    note = _text(refund.get("note"))
    if note is not None:
        data["note"] = note
    at = instant(refund, ("created_at", "processed_at"), ctx.now_us)
    event_id = f"shopify:{topic}:{data['refund_id']}"
    return Mapped([_event(event_id, "order_refunded", owner, at, data)])


def _customer(topic: str, customer: Mapping[str, Any], ctx: Context) -> Mapped:
    owner = f"shopify:{_id(customer.get('id'))}"
    keys = profile(customer, {}, ctx.region)
    if not keys:
        raise Ignored("the customer carries no profile field postflow keeps")
    at = instant(customer, ("updated_at", "created_at"), ctx.now_us)
    event_id = f"shopify:{topic}:{_id(customer.get('id'))}"
    if topic == "customers/update":
        event_id += f":{at}"
    data = {"shopify_customer_id": _id(customer.get("id"))}
    return Mapped([_event(event_id, PROFILE_EVENT, owner, at, data, keys)])
