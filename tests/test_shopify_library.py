"""A Shopify store pointed at ``/webhooks/shopify`` drives the bundled journey library.

The repository's own ``postflow.yaml``, ``catalog.yaml`` and ``journeys/`` (what ``postflow
init --all`` gives a shop) over a real store on SQLite and PostgreSQL; a real HTTP server
receives an order, its fulfillment and the delivery update exactly as Shopify posts them
(signed payloads shaped like its samples); ``run --once`` a few weeks later then shows the
customer's whole post-purchase sequence, addressed with what Shopify sent: the order number
the customer knows, the carrier's tracking link, the consent she gave at checkout.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import orjson
from test_http import serving
from test_shopify_webhooks import SECRET, fixture, sign

from postflow import config, durations, simulate
from postflow.channels.registry import build_channels, close_channels
from postflow.http.app import create_app
from postflow.http.webhooks import WebhookSettings
from postflow.runtime.service import Runtime, load_machines
from postflow.store.sql import SqlStore

ROOT = Path(__file__).resolve().parent.parent
ANN = "shopify:7201938475621"


def post(client: Any, topic: str, payload: dict[str, Any]) -> dict[str, Any]:
    raw = orjson.dumps(payload)
    answer = client.post(
        "/webhooks/shopify",
        content=raw,
        headers={
            "Content-Type": "application/json",
            "X-Shopify-Topic": topic,
            "X-Shopify-Hmac-Sha256": sign(raw),
            "X-Shopify-Webhook-Id": f"{topic}-{payload['id']}",
        },
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def test_shopify_webhooks_drive_the_library(db_url: str) -> None:
    settings = config.load_settings(ROOT / "postflow.yaml")
    machines = load_machines(settings, settings.journeys)
    store = SqlStore.open(db_url, settings, upgrade=True)
    try:
        app = create_app(
            store, webhooks=WebhookSettings.load(settings, {"SHOPIFY_WEBHOOK_SECRET": SECRET})
        )
        with serving(app) as client:
            assert post(client, "orders/create", fixture("orders_create"))["accepted"] == 1
            assert (
                post(client, "fulfillments/create", fixture("fulfillments_create"))["accepted"] == 1
            )
            assert (
                post(client, "fulfillments/update", fixture("fulfillments_update"))["accepted"] == 1
            )
        console = io.StringIO()
        channels = build_channels(settings, console_stream=console, environ={})
        try:
            swept, sent = Runtime(store, settings, machines, channels).run_once(
                durations.parse_instant("2027-01-20T00:00:00Z")
            )
        finally:
            close_channels(channels.values())
        assert swept.errors == 0 and sent.failed == 0
        records = [simulate.record_json(r) for r in store.history(customer=ANN)]
    finally:
        store.close()

    messages = {(r["journey"], r["step"]): r for r in records if r["kind"] == "message"}
    receipt = messages[("order-confirmation", "receipt")]
    assert receipt["status"] == "sent" and receipt["to"] == "ann.lee@example.com"
    assert receipt["subject"] == "Order #1042 confirmed, Ann"  # the number she knows
    assert receipt["at"] == "2026-11-30T15:15:27Z"  # Shopify's created_at, at once
    # She gave her phone but no SMS marketing consent: notices still text her.
    assert messages[("order-confirmation", "receipt_sms")]["to"] == "+12125550143"
    shipped = messages[("shipping-confirmation", "shipped_email")]
    assert "https://www.ups.com/WebTracking" in shipped["body"] and "UPS" in shipped["body"]
    assert messages[("delivered-notice", "delivered_email")]["status"] == "sent"
    # Marketing follows delivery, in her consent: the tea guide, the thank-you note.
    assert messages[("product-onboarding", "guide_tea")]["status"] == "sent"
    assert messages[("thank-you-first-order", "note")]["status"] == "sent"
    entered = {r["journey"] for r in records if r["kind"] == "enter"}
    assert {"review-request", "replenishment-reminder", "cross-sell"} <= entered
