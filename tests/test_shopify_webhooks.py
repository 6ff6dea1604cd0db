"""``POST /webhooks/shopify`` over a real server, real signatures and a real store.

Each test starts :class:`HttpServer` on port 0 and posts what Shopify posts: a payload in the
shape of its documented samples (``tests/fixtures/shopify``), the topic and delivery id in
headers, and ``X-Shopify-Hmac-Sha256`` computed the Shopify way (base64 HMAC-SHA256 of the
raw body with the app's secret). What is checked is what a shop sees: the answers, the
events and order index stored, and what the runtime then does with them. Tests whose outcome
depends on the store run on SQLite and PostgreSQL; those about signatures and bodies that
are refused or ignored, on SQLite.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import logging
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import sqlalchemy as sa
from conftest import Project
from test_http import serving, stored_events

from postflow.channels.registry import build_channels, close_channels
from postflow.durations import format_instant
from postflow.http.app import create_app
from postflow.http.webhooks import WebhookSettings
from postflow.runtime.service import Runtime, load_machines
from postflow.store import schema as t
from postflow.store.sql import SqlStore, wall_us

SECRET = "shpss_0123456789abcdef0123456789abcdef"
PATH = "/webhooks/shopify"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "shopify"
ANN = "shopify:7201938475621"
ORDER_ID = "5912384093521"

CONFIG = """\
timezone: UTC
default_region: US
catalog: catalog.yaml
"""
CATALOG = """\
TEA-1: {name: Green tea, category: tea}
POT-1: {name: Teapot, category: teaware}
"""
CONFIRMATION = """
id: order-confirmation
trigger: {event: order_placed}
entry: {key: "trigger.data.order_id", reentry: never}
steps:
  - id: receipt
    email:
      subject: "Order {{ trigger.data.order_number }} confirmed, {{ customer.first_name }}"
      body: "{% for item in trigger.data.items %}{{ item.quantity }} x {{ item.name }}; {% endfor %}total {{ trigger.data.total }} {{ trigger.data.currency }}"
      transactional: true
  - id: receipt_sms
    sms: {body: "Thanks for order {{ trigger.data.order_number }}!", transactional: true}
"""
SHIPPING = """
id: shipping-notice
trigger: {event: order_shipped}
entry: {key: "trigger.data.fulfillment_id", reentry: never}
steps:
  - id: shipped
    email:
      subject: "Order {{ trigger.data.order_number }} is on its way"
      body: "Track it: {{ trigger.data.tracking_url }} ({{ trigger.data.carrier }})"
      transactional: true
"""
NEWSLETTER = """
id: newsletter
trigger: {event: customer_updated}
entry: {reentry: always}
steps:
  - id: news
    email: {subject: "New teas", body: "Hello {{ customer.first_name }}"}
"""


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


def sign(body: bytes, secret: str = SECRET) -> str:
    """``X-Shopify-Hmac-Sha256`` as Shopify computes it."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


class Shop:
    """A project (catalog, journeys) over one store, and a client of its server."""

    def __init__(self, proj: Project, store: SqlStore) -> None:
        self.proj = proj
        self.store = store
        self.console = io.StringIO()
        self.client: httpx.Client | None = None

    def post(
        self,
        topic: str,
        payload: Any,
        *,
        webhook_id: str | None = None,
        body: bytes | None = None,
        signature: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """POST a delivery the way Shopify does: JSON body, topic, a fresh webhook id (unless
        given), and the HMAC of the exact bytes sent (unless ``signature`` is given)."""
        assert self.client is not None
        raw = orjson.dumps(payload) if body is None else body
        sent = {
            "Content-Type": "application/json",
            "X-Shopify-Topic": topic,
            "X-Shopify-Hmac-Sha256": sign(raw) if signature is None else signature,
            "X-Shopify-Shop-Domain": "leaf-and-kettle.myshopify.com",
            "X-Shopify-API-Version": "2025-10",
            "X-Shopify-Webhook-Id": webhook_id or str(uuid.uuid4()),
            "X-Shopify-Triggered-At": "2026-12-04T12:00:00.000000Z",
            "X-Shopify-Event-Id": str(uuid.uuid4()),
            **(headers or {}),
        }
        return self.client.post(PATH, content=raw, headers=sent)

    def events(self) -> dict[str, dict[str, Any]]:
        return {e["id"]: e for e in stored_events(self.store)}

    def index(self) -> dict[str, tuple[str, str | None, dict[str, Any]]]:
        o = t.shopify_orders
        with self.store.engine.connect() as conn:
            rows = conn.execute(sa.select(o.c.order_id, o.c.customer_id, o.c.email, o.c.summary))
            return {r.order_id: (r.customer_id, r.email, orjson.loads(r.summary)) for r in rows}

    def deliveries(self) -> int:
        with self.store.engine.connect() as conn:
            return int(
                conn.execute(
                    sa.select(sa.func.count()).select_from(t.shopify_webhooks)
                ).scalar_one()
            )

    def run(self) -> None:
        """``run --once`` at the wall clock's now, with console channels."""
        settings = self.store.settings
        channels = build_channels(settings, console_stream=self.console, environ={})
        try:
            machines = load_machines(settings, self.proj.root / "journeys")
            swept, dispatched = Runtime(self.store, settings, machines, channels).run_once(
                wall_us()
            )
        finally:
            close_channels(channels.values())
        assert swept.errors == 0 and dispatched.failed == 0

    def messages(self, customer: str) -> list[dict[str, Any]]:
        return [r for r in self.store.history(customer=customer) if r["kind"] == "message"]


Open = Callable[..., Shop]


def _open(url: str, proj: Project, stack: ExitStack) -> Open:
    proj.config(CONFIG)
    (proj.root / "catalog.yaml").write_text(CATALOG, encoding="utf-8")
    proj.journey("order-confirmation", CONFIRMATION)
    proj.journey("shipping-notice", SHIPPING)
    proj.journey("newsletter", NEWSLETTER)
    store = SqlStore.open(url, proj.settings(), upgrade=True)
    stack.callback(store.close)

    def start(**options: Any) -> Shop:
        shop = Shop(proj, store)
        options.setdefault("webhooks", WebhookSettings.load(store.settings, _env()))
        shop.client = stack.enter_context(serving(create_app(store, **options)))
        return shop

    return start


def _env() -> dict[str, str]:
    return {"SHOPIFY_WEBHOOK_SECRET": SECRET}


@pytest.fixture
def open_shop(db_url: str, proj: Project) -> Iterator[Open]:
    """``open_shop(**create_app options)`` -> a shop served over SQLite and PostgreSQL."""
    with ExitStack() as stack:
        yield _open(db_url, proj, stack)


@pytest.fixture
def open_lite(proj: Project, tmp_path: Path) -> Iterator[Open]:
    """The same on SQLite only, for what does not depend on the database."""
    with ExitStack() as stack:
        yield _open(f"sqlite:///{tmp_path / 'lite.db'}", proj, stack)


def ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body = response.json()
    assert isinstance(body, dict)
    return body


# -- the order's life --------------------------------------------------------------------------
def test_an_order_its_fulfillments_and_refund(open_shop: Open) -> None:
    """orders/create raises order_placed with the profile and indexes the order; the
    fulfillment, delivery updates and refund that name only the order are filed under its
    customer with its order_id, total and items; statuses that mean nothing to a journey
    are acknowledged and ignored."""
    calls: list[int] = []
    shop = open_shop(on_ingest=lambda: calls.append(1))
    assert ok(shop.post("orders/create", fixture("orders_create"))) == {
        "accepted": 1,
        "duplicates": 0,
    }
    assert calls == [1]
    placed = shop.events()[f"shopify:orders/create:{ORDER_ID}"]
    assert (placed["type"], placed["customer_id"], placed["at"]) == (
        "order_placed",
        ANN,
        "2026-11-30T15:15:27Z",
    )
    assert placed["customer"] == {
        "email": "ann.lee@example.com",
        "phone": "+12125550143",
        "first_name": "Ann",
        "last_name": "Lee",
        "email_consent": True,
        "sms_consent": False,
    }
    data = placed["data"]
    assert (data["total"], data["currency"], data["order_number"]) == (49.82, "USD", "#1042")
    assert [(i["sku"], i["price"], i.get("category")) for i in data["items"]] == [
        ("TEA-1", 12.5, "tea"),
        ("", 16.5, None),
        ("", 4.6, None),
    ]
    summary = {k: data[k] for k in ("order_id", "order_number", "total", "currency", "items")}
    assert shop.index() == {ORDER_ID: (ANN, "ann.lee@example.com", summary)}

    assert ok(shop.post("fulfillments/create", fixture("fulfillments_create")))["accepted"] == 1
    update = fixture("fulfillments_update")
    for status, answer in [
        ("in_transit", "ignored"),
        ("out_for_delivery", "accepted"),
        ("out_for_delivery", "duplicates"),  # a tracking refresh repeats the status
        ("delivered", "accepted"),
    ]:
        assert ok(shop.post("fulfillments/update", {**update, "shipment_status": status}))[
            answer
        ], status
    assert ok(shop.post("refunds/create", fixture("refunds_create")))["accepted"] == 1
    cancelled = {**fixture("orders_create"), "cancelled_at": "2026-12-06T09:00:00-05:00"}
    assert ok(shop.post("orders/cancelled", {**cancelled, "cancel_reason": "customer"}))["accepted"]

    found = {
        k: (e["type"], e["customer_id"], e["at"])
        for k, e in shop.events().items()
        if k != placed["id"]
    }
    assert found == {
        "shopify:fulfillments/create:5123456789012": (
            "order_shipped",
            ANN,
            "2026-12-01T14:42:10Z",
        ),
        "shopify:fulfillments/update:5123456789012:out_for_delivery": (
            "order_out_for_delivery",
            ANN,
            "2026-12-03T19:05:51Z",
        ),
        "shopify:fulfillments/update:5123456789012:delivered": (
            "order_delivered",
            ANN,
            "2026-12-03T19:05:51Z",
        ),
        "shopify:refunds/create:1029384756123": ("order_refunded", ANN, "2026-12-05T16:20:00Z"),
        f"shopify:orders/cancelled:{ORDER_ID}": ("order_cancelled", ANN, "2026-12-06T14:00:00Z"),
    }
    for event_id, event in shop.events().items():
        assert {k: event["data"][k] for k in summary} == summary, event_id
    shipped = shop.events()["shopify:fulfillments/create:5123456789012"]["data"]
    assert (shipped["tracking_number"], shipped["carrier"]) == ("1Z999AA10123456784", "UPS")
    refunded = shop.events()["shopify:refunds/create:1029384756123"]["data"]
    assert (
        refunded["amount"] == 16.04 and refunded["refunded_items"][0]["name"] == "Bamboo tea scoop"
    )


def test_a_guest_checkout_and_customer_updates_reach_the_profile(open_shop: Open) -> None:
    """``customer: null``: the order is filed under its email. A customers/update merges
    the changed name and consent into the profile once the runtime applies it (and each
    version of the customer only once)."""
    shop = open_shop()
    assert ok(shop.post("orders/create", fixture("orders_create_guest")))["accepted"] == 1
    assert ok(shop.post("orders/create", fixture("orders_create")))["accepted"] == 1
    shop.run()
    guest = shop.store.customer_view("mei.chan@example.com")
    assert guest is not None
    profile = guest["profile"]
    assert (profile["email"], profile["first_name"], profile["orders_count"]) == (
        "mei.chan@example.com",
        "Mei",
        1,
    )
    assert profile["total_spent"] == 186.9 and "email_consent" not in profile

    update = fixture("customers_update")
    assert ok(shop.post("customers/update", update))["accepted"] == 1
    assert ok(shop.post("customers/update", update)) == {"accepted": 0, "duplicates": 1}
    shop.run()
    view = shop.store.customer_view(ANN)
    assert view is not None
    profile = view["profile"]
    assert (profile["last_name"], profile["email_consent"], profile["sms_consent"]) == (
        "Lee-Park",
        False,
        True,
    )
    assert (profile["orders_count"], profile["total_spent"]) == (1, 49.82)
    # The newsletter (marketing, triggered by customer_updated) respects the new consent.
    assert [(m["step"], m["status"], m.get("reason")) for m in shop.messages(ANN)][-1] == (
        "news",
        "skipped",
        "no_consent",
    )


def test_an_order_drives_the_confirmation_and_shipping_journeys(open_shop: Open) -> None:
    """End to end: an order placed now, then ``run --once``: the confirmation goes out by
    email and SMS with the order's number, items and total; the fulfillment then sends the
    shipping notice with its tracking link."""
    shop = open_shop()
    now = format_instant(wall_us() - 1_000_000)
    order = {**fixture("orders_create"), "created_at": now, "processed_at": now}
    assert ok(shop.post("orders/create", order))["accepted"] == 1
    shop.run()
    mails = [
        (m["journey"], m["step"], m["channel"], m["status"], m.get("to"), m.get("subject"))
        for m in shop.messages(ANN)
    ]
    assert mails == [
        (
            "order-confirmation",
            "receipt",
            "email",
            "sent",
            "ann.lee@example.com",
            "Order #1042 confirmed, Ann",
        ),
        ("order-confirmation", "receipt_sms", "sms", "sent", "+12125550143", None),
    ]
    printed = shop.console.getvalue()
    assert "2 x Green tea; 1 x Bamboo tea scoop; 1 x Gift wrapping; total 49.82 USD" in printed
    assert "Thanks for order #1042!" in printed

    fulfillment = {**fixture("fulfillments_create"), "created_at": format_instant(wall_us())}
    assert ok(shop.post("fulfillments/create", fulfillment))["accepted"] == 1
    shop.run()
    last = shop.messages(ANN)[-1]
    assert (last["journey"], last["status"], last["subject"]) == (
        "shipping-notice",
        "sent",
        "Order #1042 is on its way",
    )
    assert "trackNums=1Z999AA10123456784 (UPS)" in shop.console.getvalue()


def test_a_fulfillment_before_its_order_goes_by_email(open_shop: Open) -> None:
    """A fulfillment of an order postflow never indexed (placed before it was connected):
    filed under the customer of the latest indexed order with that email, else under the
    email itself. A refund of such an order names no one: ignored."""
    shop = open_shop()
    early = fixture("fulfillments_create")
    assert ok(shop.post("fulfillments/create", early))["accepted"] == 1
    event = shop.events()["shopify:fulfillments/create:5123456789012"]
    assert (event["customer_id"], event["customer"]) == (
        "ann.lee@example.com",
        {"email": "ann.lee@example.com"},
    )
    assert ok(shop.post("refunds/create", fixture("refunds_create"))) == {
        "ignored": f"order {ORDER_ID} is not in the order index (no orders/create for it)"
    }
    assert ok(shop.post("orders/create", fixture("orders_create")))["accepted"] == 1
    other = {**early, "id": 5123456789999, "order_id": 1111}  # an older order, same email
    assert ok(shop.post("fulfillments/create", other))["accepted"] == 1
    assert shop.events()["shopify:fulfillments/create:5123456789999"]["customer_id"] == ANN


# -- duplicates and atomicity ------------------------------------------------------------------
def test_redeliveries_change_nothing(open_shop: Open) -> None:
    """Shopify retries a delivery with the same X-Shopify-Webhook-Id: ignored before it is
    even mapped. The same order delivered again under another id (a second subscription) is
    a duplicate by event id; the index keeps its first row."""
    shop = open_shop()
    order = fixture("orders_create")
    assert ok(shop.post("orders/create", order, webhook_id="b1e2-0001"))["accepted"] == 1
    before = (shop.events(), shop.index())
    assert ok(shop.post("orders/create", order, webhook_id="b1e2-0001")) == {
        "ignored": "duplicate delivery: webhook b1e2-0001 was already received"
    }
    changed = {**order, "total_price": "1.00"}
    assert ok(shop.post("orders/create", changed, webhook_id="b1e2-0002")) == {
        "accepted": 0,
        "duplicates": 1,
    }
    assert ok(shop.post("orders/create", order, headers={"X-Shopify-Webhook-Id": ""})) == {
        "accepted": 0,
        "duplicates": 1,
    }
    assert (shop.events(), shop.index()) == before
    assert shop.deliveries() == 2


def test_a_failed_store_keeps_nothing_and_the_retry_succeeds(
    open_shop: Open, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Events, order index and delivery id are one transaction: when storing the events
    fails, neither the index row nor the webhook id stay, the answer is 503 with
    Retry-After, and Shopify's retry (same webhook id) is then stored."""
    shop = open_shop()

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise sa.exc.OperationalError("INSERT INTO events", {}, Exception("disk I/O error"))

    monkeypatch.setattr(shop.store, "ingest_on", broken)
    r = shop.post("orders/create", fixture("orders_create"), webhook_id="retry-me")
    assert r.status_code == 503 and r.headers["retry-after"] == "1"
    assert (shop.events(), shop.index(), shop.deliveries()) == ({}, {}, 0)
    assert "Traceback" not in caplog.text
    monkeypatch.undo()
    r = shop.post("orders/create", fixture("orders_create"), webhook_id="retry-me")
    assert ok(r) == {"accepted": 1, "duplicates": 0}
    assert list(shop.index()) == [ORDER_ID] and shop.deliveries() == 1


# -- refused and ignored -----------------------------------------------------------------------
def test_signatures(open_lite: Open) -> None:
    """Without SHOPIFY_WEBHOOK_SECRET nothing can be checked: 503. With it, the HMAC must
    be over the exact bytes with that secret; a wrong or missing one is 403. Nothing
    refused is stored or recorded."""
    unset = open_lite(webhooks=WebhookSettings())
    body = orjson.dumps(fixture("orders_create"))
    r = unset.post("orders/create", None, body=body)
    assert r.status_code == 503
    assert r.json() == {
        "error": "SHOPIFY_WEBHOOK_SECRET is not set: the signature cannot be checked"
    }

    shop = open_lite(api_token="api-token")  # webhooks need no bearer token
    good = sign(body)
    refused = [
        shop.post("orders/create", None, body=body.replace(b"Ann", b"Eve"), signature=good),
        shop.post("orders/create", None, body=body + b"\n", signature=good),
        shop.post("orders/create", None, body=body, signature=sign(body, "another-secret")),
        shop.post("orders/create", None, body=body, signature=""),
        shop.post("orders/create", None, body=body, signature="not base64 at all"),
        shop.post("orders/create", None, body=body, signature=good.lower()),
    ]
    assert shop.client is not None
    headers = {"X-Shopify-Topic": "orders/create", "Content-Type": "application/json"}
    refused.append(shop.client.post(PATH, content=body, headers=headers))  # no header at all
    for r in refused:
        assert (r.status_code, r.json()) == (403, {"error": "bad or missing X-Shopify-Hmac-Sha256"})
    assert (shop.events(), shop.index(), shop.deliveries()) == ({}, {}, 0)
    assert ok(shop.post("orders/create", None, body=body, signature=good))["accepted"] == 1


def test_what_cannot_be_mapped_is_acknowledged(
    open_lite: Open, caplog: pytest.LogCaptureFixture
) -> None:
    """A correctly signed webhook that maps to nothing gets 200 {"ignored": reason} (a 4xx
    would make Shopify retry for hours): an unknown or missing topic, malformed JSON, a body
    that is not an object or not UTF-8, a fulfillment status without meaning. Nothing is
    stored, no traceback is logged, and the server goes on answering."""
    caplog.set_level(logging.INFO)
    shop = open_lite()
    cases = [
        ("products/update", b'{"id": 788032119674292922}', "topic 'products/update' is not mapped"),
        ("", b'{"id": 1}', "no X-Shopify-Topic header"),
        ("orders/create", b'{"id": 5912384093521, "email": ', "the body is not JSON"),
        ("orders/create", b"\xff\xfe{}", "the body is not JSON"),
        ("orders/create", b'["not", "an", "order"]', "the body is not a JSON object"),
        ("orders/create", b'{"email": "ann@example.com"}', "the orders/create payload has no id"),
        ("orders/create", b'{"id": 1, "customer": null, "email": ""}', "neither a customer nor"),
        ("orders/create", b'{"id": 2, "email": "a@b.co", "name": "#1\\u0000"}', "no valid event"),
    ]
    for topic, body, reason in cases:
        answer = ok(shop.post(topic, None, body=body))
        assert list(answer) == ["ignored"] and reason in answer["ignored"], (topic, body)
    cancelled = {**fixture("fulfillments_create"), "status": "cancelled"}
    assert "nothing shipped" in ok(shop.post("fulfillments/create", cancelled))["ignored"]
    assert shop.events() == {} and shop.index() == {}
    assert shop.client is not None and shop.client.get("/healthz").json() == {"status": "ok"}
    assert "Traceback" not in caplog.text
    assert [rec for rec in caplog.records if rec.levelno >= logging.ERROR] == []


def test_bodies_over_max_body_are_413(open_lite: Open) -> None:
    shop = open_lite(max_body=2048)
    r = shop.post("orders/create", fixture("orders_create"))
    assert (r.status_code, r.json()) == (413, {"error": "body larger than 2KB"})
    assert shop.events() == {}
    small = fixture("customers_update")
    assert ok(shop.post("customers/update", small))["accepted"] == 1


def test_the_secret_comes_from_the_environment(proj: Project) -> None:
    settings = proj.settings()
    assert WebhookSettings.load(settings, {}).shopify_secret is None
    assert WebhookSettings.load(settings, {"SHOPIFY_WEBHOOK_SECRET": ""}).shopify_secret is None
    loaded = WebhookSettings.load(settings, {"SHOPIFY_WEBHOOK_SECRET": SECRET})
    assert loaded.shopify_secret == SECRET
