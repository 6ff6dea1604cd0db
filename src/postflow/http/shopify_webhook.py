"""``POST /webhooks/shopify`` (contract §6): Shopify's webhooks become postflow events.

The signature (``X-Shopify-Hmac-Sha256``: base64 HMAC-SHA256 of the raw body with
``SHOPIFY_WEBHOOK_SECRET``) is checked on the exact bytes before anything is read: while the
secret is not set the answer is ``503`` (nothing can be checked), a wrong or missing
signature ``403``, and neither changes anything. A correctly signed webhook is then always
answered ``200``, so Shopify never retries what will not map:

- ``{"accepted": N, "duplicates": M}``: its events were stored (counts as for
  ``POST /events``; an event whose id was already stored is a duplicate);
- ``{"ignored": "reason"}``: it raises no event (a topic postflow does not map, a body that
  is not a JSON object, a fulfillment status that means nothing to a journey, a refund of an
  order never indexed), or it is a delivery already received (same
  ``X-Shopify-Webhook-Id``: Shopify retries a delivery it thinks failed).

One transaction holds the delivery's webhook id, the order index and the events: all of them
are stored, or (on a database error: ``503`` with ``Retry-After``, Shopify retries) none.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import sqlalchemy as sa
from starlette.requests import Request
from starlette.responses import Response

from postflow import events
from postflow.http import shopify as sh
from postflow.http import signatures
from postflow.http.webhooks import Refusal, WebhookSettings, run_callback
from postflow.store.shopify import OrderRow, ShopifyIndex
from postflow.store.sql import SqlStore, wall_us

log = logging.getLogger("postflow.http")

PATH = "/webhooks/shopify"
HMAC_HEADER = "X-Shopify-Hmac-Sha256"
TOPIC_HEADER = "X-Shopify-Topic"
WEBHOOK_ID_HEADER = "X-Shopify-Webhook-Id"


class ShopifyWebhook:
    """The endpoint's logic over one store; synchronous (run in a worker thread)."""

    def __init__(
        self, store: SqlStore, settings: WebhookSettings, on_ingest: Callable[[], None] | None
    ) -> None:
        self.store = store
        self.index = ShopifyIndex(store)
        self.settings = settings
        self.on_ingest = on_ingest

    def handle(self, body: bytes, headers: Mapping[str, str]) -> dict[str, Any]:
        """Check, map and store one delivery; the JSON answer, or :class:`Refusal`."""
        secret = self.settings.shopify_secret
        if secret is None:
            raise Refusal(503, "SHOPIFY_WEBHOOK_SECRET is not set: the signature cannot be checked")
        if not signatures.verify_shopify(secret, body, headers.get(HMAC_HEADER)):
            raise Refusal(403, f"bad or missing {HMAC_HEADER}")
        topic = (headers.get(TOPIC_HEADER) or "").strip().lower()
        webhook_id = (headers.get(WEBHOOK_ID_HEADER) or "").strip() or None
        try:
            payload = sh.read_payload(topic, body)
        except sh.Ignored as exc:
            return _ignored(topic, webhook_id, exc.reason)
        answer = self._store(topic, webhook_id, payload)
        if answer.get("accepted") and self.on_ingest is not None:
            try:
                self.on_ingest()
            except Exception:
                log.exception("on_ingest failed")
        return answer

    def _store(self, topic: str, webhook_id: str | None, payload: dict[str, Any]) -> dict[str, Any]:
        now = wall_us()
        with self.index.begin() as conn:
            if webhook_id is not None and not self.index.claim(conn, webhook_id, topic, now):
                reason = f"duplicate delivery: webhook {webhook_id} was already received"
                return _ignored(topic, webhook_id, reason)
            try:
                mapped, parsed = self._map(conn, topic, payload, now)
            except sh.Ignored as exc:
                return _ignored(topic, webhook_id, exc.reason)
            rows = [OrderRow(o.shopify_id, o.customer_id, o.email, o.summary) for o in mapped.index]
            self.index.remember(conn, rows, now)
            result = self.store.ingest_on(conn, parsed)
        return {"accepted": result.accepted, "duplicates": result.duplicates}

    def _map(
        self, conn: sa.Connection, topic: str, payload: dict[str, Any], now: int
    ) -> tuple[sh.Mapped, list[events.Event]]:
        """Look up what the payload names, map it, and validate the events like any others."""
        key = sh.order_key(topic, payload)
        row = self.index.order(conn, key) if key is not None else None
        order = None if row is None else sh.IndexedOrder(*_fields(row))
        email = sh.lookup_email(topic, payload) if order is None else None
        owner = self.index.owner(conn, email) if email is not None else None
        ctx = sh.Context(
            now_us=now,
            catalog=self.store.settings.catalog,
            region=self.settings.region,
            order=order,
            email_owner=owner,
        )
        mapped = sh.map_webhook(topic, payload, ctx)
        try:
            parsed = [events.parse_event(obj) for obj in mapped.events]
        except events.EventError as exc:
            where = f" ({exc.field})" if exc.field else ""
            raise sh.Ignored(f"the {topic} payload makes no valid event{where}: {exc}") from None
        return mapped, parsed


def _fields(row: OrderRow) -> tuple[str, str, str | None, dict[str, Any]]:
    return row.shopify_id, row.customer_id, row.email, row.summary


def _ignored(topic: str, webhook_id: str | None, reason: str) -> dict[str, Any]:
    log.info("Shopify webhook %s (%s) ignored: %s", topic or "-", webhook_id or "-", reason)
    return {"ignored": reason}


def route(
    store: SqlStore,
    settings: WebhookSettings,
    *,
    read_body: Callable[[Request], Any],
    respond: Callable[[Any, int], Response],
    on_ingest: Callable[[], None] | None = None,
) -> tuple[str, Callable[[Request], Any]]:
    """(path, endpoint) for the app; ``read_body`` enforces ``max_body`` (413)."""
    handler = ShopifyWebhook(store, settings, on_ingest)

    async def shopify(request: Request) -> Response:
        body = await read_body(request)
        answer = await run_callback(store, respond, handler.handle, body, request.headers)
        return answer if isinstance(answer, Response) else respond(answer, 200)

    return PATH, shopify
