"""The pure Shopify mapping (``postflow.http.shopify``): payloads in the shape of Shopify's
documented samples (``tests/fixtures/shopify``) become contract §1 events, or a reason to
ignore them. No database and no server: the order index and the owner of an email are
passed in as the HTTP layer would look them up."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from postflow import events
from postflow.durations import parse_instant
from postflow.http import shopify as sh

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "shopify"
NOW = parse_instant("2026-12-04T12:00:00Z")
CATALOG = {"TEA-1": {"name": "Green tea", "category": "tea"}, "POT-1": {"category": "teaware"}}
ANN = "shopify:7201938475621"
ORDER_ID = "5912384093521"


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


def ctx(**changes: Any) -> sh.Context:
    return sh.Context(now_us=NOW, catalog=CATALOG, region="US", **changes)


def mapped(topic: str, payload: dict[str, Any], **changes: Any) -> sh.Mapped:
    result = sh.map_webhook(topic, payload, ctx(**changes))
    for obj in result.events:
        events.parse_event(obj)  # every event is one the API would take
    return result


def only(topic: str, payload: dict[str, Any], **changes: Any) -> dict[str, Any]:
    (event,) = mapped(topic, payload, **changes).events
    return event


def ignored(topic: str, payload: Any, **changes: Any) -> str:
    with pytest.raises(sh.Ignored) as excinfo:
        sh.map_webhook(topic, payload, ctx(**changes))
    return excinfo.value.reason


ITEMS = [
    {
        "sku": "TEA-1",
        "name": "Green tea",
        "title": "Green tea",
        "variant": "100 g",
        "quantity": 2,
        "price": 12.5,
        "category": "tea",
        "product_id": "8061536829755",
    },
    {
        "sku": "",
        "name": "Bamboo tea scoop",
        "title": "Bamboo tea scoop",
        "quantity": 1,
        "price": 16.5,
        "product_id": "8061536829756",
    },
    {"sku": "", "name": "Gift wrapping", "title": "Gift wrapping", "quantity": 1, "price": 4.6},
]
SUMMARY = {
    "order_id": ORDER_ID,
    "order_number": "#1042",
    "total": 49.82,
    "currency": "USD",
    "items": ITEMS,
}
INDEXED = sh.IndexedOrder(ORDER_ID, ANN, "ann.lee@example.com", SUMMARY)


# --- orders/create ----------------------------------------------------------------------------
def test_an_order_becomes_order_placed_with_profile_and_consent() -> None:
    """Decimal strings become numbers, an empty or null SKU stays "", the catalog names the
    category of a known SKU, the customer's consent states become booleans, emails are
    normalised, and the order is indexed for the fulfillments and refunds to come."""
    result = mapped("orders/create", fixture("orders_create"))
    assert result.events == [
        {
            "id": f"shopify:orders/create:{ORDER_ID}",
            "type": "order_placed",
            "customer_id": ANN,
            "at": "2026-11-30T15:15:27Z",
            "customer": {
                "email": "ann.lee@example.com",
                "phone": "+12125550143",
                "first_name": "Ann",
                "last_name": "Lee",
                "email_consent": True,
                "sms_consent": False,
            },
            "data": {**SUMMARY, "discount_codes": ["WELCOME10"]},
        }
    ]
    assert result.index == [INDEXED]


def test_a_guest_checkout_is_filed_under_the_orders_email() -> None:
    """``customer: null`` (a guest or draft order): the customer is the order's email,
    the name comes from the billing address, the phone from the order; consent is unknown,
    so it is not set (email stays opt-out, SMS opt-in, as for any profile)."""
    event = only("orders/create", fixture("orders_create_guest"))
    assert event["customer_id"] == "mei.chan@example.com"
    assert event["customer"] == {
        "email": "mei.chan@example.com",
        "phone": "+85291234567",
        "first_name": "Mei",
        "last_name": "Chan",
    }
    assert event["at"] == "2026-11-30T15:10:15Z"
    assert event["data"]["total"] == 186.9 and event["data"]["currency"] == "HKD"
    assert [(i["sku"], i.get("category")) for i in event["data"]["items"]] == [
        ("", None),
        ("POT-1", "teaware"),
    ]
    assert event["data"]["discount_codes"] == ["0124D"]


def test_an_order_nobody_can_be_reached_for_is_ignored() -> None:
    """A real capture: a draft order with ``customer: null`` and ``email: ""``."""
    order = fixture("orders_create_guest")
    order.update(email="", contact_email=None)
    assert ignored("orders/create", order) == "the order has neither a customer nor an email"


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        ({"state": "subscribed", "opt_in_level": "confirmed_opt_in"}, True),
        ({"state": "not_subscribed"}, False),
        ({"state": "unsubscribed"}, False),
        ({"state": "pending"}, False),
        ({"state": "redacted"}, False),
        ({"state": "invalid"}, False),
        (None, None),
        ({"opt_in_level": "unknown"}, None),
    ],
)
def test_consent_states(block: Any, expected: bool | None) -> None:
    assert sh.consent(block) is expected
    order = fixture("orders_create")
    order["customer"]["email_marketing_consent"] = block
    order["customer"]["sms_marketing_consent"] = block
    keys = only("orders/create", order)["customer"]
    assert keys.get("email_consent") is expected and keys.get("sms_consent") is expected


def test_legacy_accepts_marketing_counts_only_without_the_consent_block() -> None:
    """API versions before 2022-04 sent ``accepts_marketing`` instead."""
    order = fixture("orders_create")
    del order["customer"]["email_marketing_consent"]
    order["customer"]["accepts_marketing"] = True
    assert only("orders/create", order)["customer"]["email_consent"] is True
    order["customer"]["accepts_marketing"] = "FALSE"  # not a boolean: says nothing
    assert "email_consent" not in only("orders/create", order)["customer"]
    order = fixture("orders_create")
    order["customer"]["accepts_marketing"] = True  # the new block wins
    assert only("orders/create", order)["customer"]["email_consent"] is True
    order["customer"]["email_marketing_consent"]["state"] = "unsubscribed"
    assert only("orders/create", order)["customer"]["email_consent"] is False


@pytest.mark.parametrize(
    ("value", "expected"),
    [("49.82", 49.82), ("0.10", 0.1), (" 5 ", 5.0), (12, 12.0), (12.5, 12.5), ("1e2", 100.0)],
)
def test_money(value: Any, expected: float) -> None:
    assert sh.money(value) == expected


@pytest.mark.parametrize("value", [None, True, "", "abc", "NaN", "Infinity", [], {}])
def test_money_that_is_not(value: Any) -> None:
    assert sh.money(value) is None


def test_item_categories_and_odd_line_items() -> None:
    """The catalog's category for a known SKU, else the product type in lower case; odd
    values (a missing title, a quantity as text, junk in the list) do not stop the order."""
    lines = [
        {"title": "Sencha", "sku": "TEA-9", "product_type": "Loose Leaf Tea", "quantity": "3"},
        {"title": "Green tea", "sku": "TEA-1", "product_type": "Tea bags", "price": 7},
        {"name": "Mystery box", "sku": None, "quantity": True, "price": "x"},
        "not a line item",
        None,
    ]
    assert sh.items(lines, CATALOG) == [
        {
            "sku": "TEA-9",
            "name": "Sencha",
            "title": "Sencha",
            "quantity": 3,
            "product_type": "Loose Leaf Tea",
            "category": "loose leaf tea",
        },
        {
            "sku": "TEA-1",
            "name": "Green tea",
            "title": "Green tea",
            "price": 7.0,
            "product_type": "Tea bags",
            "category": "tea",
        },
        {"sku": "", "name": "Mystery box", "title": "Mystery box"},
    ]


def test_test_orders_are_marked_and_times_without_offset_fall_back_to_now() -> None:
    order = fixture("orders_create")
    order.update(test=True, created_at="2026-11-30T10:15:27", processed_at=None)
    event = only("orders/create", order)
    assert event["data"]["test"] is True
    assert event["at"] == "2026-12-04T12:00:00Z"


# --- fulfillments -----------------------------------------------------------------------------
TRACKING = {
    "tracking_url": (
        "https://www.ups.com/WebTracking?loc=en_US&requester=ST&trackNums=1Z999AA10123456784"
    ),
    "tracking_number": "1Z999AA10123456784",
    "carrier": "UPS",
}


def test_a_fulfillment_of_an_indexed_order_is_order_shipped() -> None:
    event = only("fulfillments/create", fixture("fulfillments_create"), order=INDEXED)
    assert event == {
        "id": "shopify:fulfillments/create:5123456789012",
        "type": "order_shipped",
        "customer_id": ANN,
        "at": "2026-12-01T14:42:10Z",
        "data": {**SUMMARY, "fulfillment_id": "5123456789012", **TRACKING},
    }


@pytest.mark.parametrize("status", ["cancelled", "error", "failure", "CANCELLED"])
def test_a_failed_fulfillment_ships_nothing(status: str) -> None:
    payload = {**fixture("fulfillments_create"), "status": status}
    assert "nothing shipped" in ignored("fulfillments/create", payload, order=INDEXED)


@pytest.mark.parametrize(
    ("shipment", "type_"),
    [("delivered", "order_delivered"), ("out_for_delivery", "order_out_for_delivery")],
)
def test_delivery_updates(shipment: str, type_: str) -> None:
    """Each status is its own event (id suffixed with it), at the update's time."""
    payload = {**fixture("fulfillments_update"), "shipment_status": shipment}
    event = only("fulfillments/update", payload, order=INDEXED)
    assert event["id"] == f"shopify:fulfillments/update:5123456789012:{shipment}"
    assert (event["type"], event["customer_id"], event["at"]) == (
        type_,
        ANN,
        "2026-12-03T19:05:51Z",
    )
    assert event["data"] == {**SUMMARY, "fulfillment_id": "5123456789012", **TRACKING}


@pytest.mark.parametrize(
    "shipment", [None, "in_transit", "label_printed", "confirmed", "attempted_delivery", "failure"]
)
def test_other_shipment_statuses_are_ignored(shipment: str | None) -> None:
    payload = {**fixture("fulfillments_update"), "shipment_status": shipment}
    reason = ignored("fulfillments/update", payload, order=INDEXED)
    assert reason.startswith("shipment_status ") and "raises no event" in reason


def test_several_parcels() -> None:
    payload = fixture("fulfillments_create")
    payload.update(
        tracking_number=None,
        tracking_numbers=["1Z1", "1Z2"],
        tracking_url=None,
        tracking_urls=["https://t.example/1Z1", "https://t.example/2"],
        tracking_company=None,
    )
    data = only("fulfillments/create", payload, order=INDEXED)["data"]
    assert {k: v for k, v in data.items() if k.startswith("tracking") or k == "carrier"} == {
        "tracking_url": "https://t.example/1Z1",
        "tracking_urls": ["https://t.example/1Z1", "https://t.example/2"],
        "tracking_number": "1Z1",
        "tracking_numbers": ["1Z1", "1Z2"],
    }


def test_a_fulfillment_of_an_order_never_indexed_goes_by_its_email() -> None:
    """Filed under the customer of the latest indexed order with that email, else the email
    itself (which gets it as profile email); the items are the fulfilled ones."""
    payload = fixture("fulfillments_create")
    assert sh.order_key("fulfillments/create", payload) == ORDER_ID
    assert sh.lookup_email("fulfillments/create", payload) == "ann.lee@example.com"
    event = only("fulfillments/create", payload)
    assert event["customer_id"] == "ann.lee@example.com"
    assert event["customer"] == {"email": "ann.lee@example.com"}
    assert event["data"]["order_id"] == ORDER_ID and "total" not in event["data"]
    assert [i["sku"] for i in event["data"]["items"]] == ["TEA-1", ""]
    assert only("fulfillments/create", payload, email_owner=ANN)["customer_id"] == ANN
    payload["email"] = None
    assert "not in the order index" in ignored("fulfillments/create", payload)


# --- refunds and cancellations ----------------------------------------------------------------
def test_a_refund_is_order_refunded_with_the_money_returned() -> None:
    event = only("refunds/create", fixture("refunds_create"), order=INDEXED)
    scoop = {**ITEMS[1]}
    assert event == {
        "id": "shopify:refunds/create:1029384756123",
        "type": "order_refunded",
        "customer_id": ANN,
        "at": "2026-12-05T16:20:00Z",
        "data": {
            **SUMMARY,
            "refund_id": "1029384756123",
            "amount": 16.04,
            "refunded_items": [scoop],
            "note": "Scoop arrived cracked",
        },
    }


def test_refund_amounts() -> None:
    refund = fixture("refunds_create")
    assert sh.refunded_amount(refund) == 16.04
    failed = copy.deepcopy(refund)
    failed["transactions"][0]["status"] = "failure"
    assert sh.refunded_amount(failed) == 14.85  # no money went back: the items' subtotal
    two = copy.deepcopy(refund)
    two["transactions"].append({**two["transactions"][0], "amount": "0.10"})
    assert sh.refunded_amount(two) == 16.14  # summed as decimals
    assert sh.refunded_amount({"transactions": [], "refund_line_items": []}) is None


def test_numbers_python_reads_but_no_event_can_carry() -> None:
    """A float that overflows is no price (it would be stored as null), and a quantity of
    digits int() refuses ("²" is a digit to str.isdigit) is no quantity: both are dropped,
    and the delivery is mapped, not answered 500 (Shopify would retry it for hours)."""
    assert sh.money("1e400") is None and sh.money("1" * 400) is None
    order = fixture("orders_create")
    order["total_price"] = "1e400"
    order["line_items"][0]["quantity"] = "²"
    order["line_items"][1]["price"] = "9" * 400
    data = only("orders/create", order)["data"]
    assert "total" not in data  # unknown, rather than null
    assert "quantity" not in data["items"][0] and "price" not in data["items"][1]
    events.parse_event(only("orders/create", order))  # still a valid event


def test_a_refund_of_an_order_never_indexed_is_ignored() -> None:
    reason = ignored("refunds/create", fixture("refunds_create"))
    assert reason == f"order {ORDER_ID} is not in the order index (no orders/create for it)"


def test_a_cancellation() -> None:
    order = fixture("orders_create")
    order.update(cancelled_at="2026-12-01T08:00:00-05:00", cancel_reason="customer")
    assert sh.order_key("orders/cancelled", order) == ORDER_ID
    event = only("orders/cancelled", order)
    assert event == {
        "id": f"shopify:orders/cancelled:{ORDER_ID}",
        "type": "order_cancelled",
        "customer_id": ANN,
        "at": "2026-12-01T13:00:00Z",
        "data": {**SUMMARY, "reason": "customer"},
    }
    # The indexed order's customer wins (a guest order later attached to an account).
    moved = sh.IndexedOrder(ORDER_ID, "ann.lee@example.com", None, SUMMARY)
    assert only("orders/cancelled", order, order=moved)["customer_id"] == "ann.lee@example.com"


# --- customers --------------------------------------------------------------------------------
def test_customer_updates_merge_into_the_profile() -> None:
    """``customer_updated`` carries the profile keys; updates are told apart by
    ``updated_at``, so each version is applied once."""
    payload = fixture("customers_update")
    event = only("customers/update", payload)
    assert event == {
        "id": "shopify:customers/update:7201938475621:2026-12-02T13:01:44Z",
        "type": "customer_updated",
        "customer_id": ANN,
        "at": "2026-12-02T13:01:44Z",
        "customer": {
            "email": "ann.lee@example.com",
            "phone": "+12125550143",
            "first_name": "Ann",
            "last_name": "Lee-Park",
            "email_consent": False,
            "sms_consent": True,
        },
        "data": {"shopify_customer_id": "7201938475621"},
    }
    assert only("customers/create", payload)["id"] == "shopify:customers/create:7201938475621"
    bare = {"id": 1, "email": None, "phone": None, "first_name": "", "updated_at": None}
    assert (
        ignored("customers/update", bare) == "the customer carries no profile field postflow keeps"
    )


def test_a_phone_that_is_no_number_is_left_out() -> None:
    payload = {**fixture("customers_update"), "phone": "call me"}
    assert "phone" not in only("customers/update", payload)["customer"]


# --- reading ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("topic", "body", "reason"),
    [
        ("", b"{}", "no X-Shopify-Topic header"),
        ("products/update", b'{"id": 1}', "topic 'products/update' is not mapped to an event"),
        ("orders/paid", b'{"id": 1}', "topic 'orders/paid' is not mapped to an event"),
        ("orders/create", b"[1, 2]", "the body is not a JSON object"),
        ("orders/create", b'{"email": "a@b.c"}', "the orders/create payload has no id"),
        ("orders/create", b'{"id": true}', "the orders/create payload has no id"),
    ],
)
def test_what_is_not_read(topic: str, body: bytes, reason: str) -> None:
    with pytest.raises(sh.Ignored) as excinfo:
        sh.read_payload(topic, body)
    assert excinfo.value.reason == reason


@pytest.mark.parametrize("body", [b'{"id": 1', b"\xff\xfe{}", b"", b"NaN"])
def test_bodies_that_are_not_json(body: bytes) -> None:
    with pytest.raises(sh.Ignored) as excinfo:
        sh.read_payload("orders/create", body)
    assert excinfo.value.reason.startswith("the body is not JSON")


def test_every_topic_maps_to_valid_events() -> None:
    """Each fixture, as Shopify would send it, reads and maps to events the schema takes."""
    cases = {
        "orders/create": ("orders_create", None),
        "orders/cancelled": ("orders_create", INDEXED),
        "fulfillments/create": ("fulfillments_create", INDEXED),
        "fulfillments/update": ("fulfillments_update", INDEXED),
        "refunds/create": ("refunds_create", INDEXED),
        "customers/create": ("customers_update", None),
        "customers/update": ("customers_update", None),
    }
    assert set(cases) == sh.TOPICS
    for topic, (name, order) in cases.items():
        payload = sh.read_payload(topic, (FIXTURES / f"{name}.json").read_bytes())
        (event,) = mapped(topic, payload, order=order).events
        assert event["id"].startswith(f"shopify:{topic}:")
