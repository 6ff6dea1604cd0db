"""What the Shopify webhook keeps besides events: the order index and the deliveries seen.

Fulfillment and refund payloads name only the order (``order_id``), so every
``orders/create`` leaves a row in ``shopify_orders``: the customer the order was filed
under, its email and a JSON summary (order number, total, currency, items) that later
events copy. ``shopify_webhooks`` holds the ``X-Shopify-Webhook-Id`` of each delivery, so a
retry of one Shopify already sent changes nothing even when its events carry no id in
common with the first (event ids de-duplicate as well).

Every method works on the caller's connection: the webhook handler claims the delivery,
reads the index, writes it and ingests the events in one transaction, all or nothing
(:meth:`SqlStore.ingest_on`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa

from postflow.store import schema as t
from postflow.store.sql import SqlStore

KEEP_DELIVERIES_US = 7 * 86_400_000_000
"""How long a delivery's webhook id is remembered: Shopify retries a failed delivery for up
to 4 hours (48 on older API versions), so a week covers every retry."""


@dataclass(frozen=True)
class OrderRow:
    """One ``shopify_orders`` row: Shopify's order id, whose order it is, and its summary."""

    shopify_id: str
    customer_id: str
    email: str | None
    summary: dict[str, Any]


class ShopifyIndex:
    """The order index and the seen deliveries over a store's database."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store

    @contextmanager
    def begin(self) -> Iterator[sa.Connection]:
        """One transaction: committed when the block ends normally, else rolled back."""
        with self.store.engine.begin() as conn:
            yield conn

    def _insert(self, table: sa.Table) -> Any:
        if self.store.dialect == "postgresql":
            from sqlalchemy.dialects import postgresql

            return postgresql.insert(table)
        from sqlalchemy.dialects import sqlite

        return sqlite.insert(table)

    def claim(self, conn: sa.Connection, webhook_id: str, topic: str, now: int) -> bool:
        """Record a delivery; False when its webhook id was already recorded (a retry). On
        PostgreSQL a concurrent claim of the same id waits for this transaction, then loses.
        Deliveries older than :data:`KEEP_DELIVERIES_US` are forgotten on the way."""
        w = t.shopify_webhooks
        conn.execute(w.delete().where(w.c.received_at < now - KEEP_DELIVERIES_US))
        stmt = self._insert(w).on_conflict_do_nothing().returning(w.c.webhook_id)
        row = {"webhook_id": webhook_id, "topic": topic, "received_at": now}
        return conn.execute(stmt, row).first() is not None

    def order(self, conn: sa.Connection, shopify_id: str) -> OrderRow | None:
        o = t.shopify_orders
        row = conn.execute(
            sa.select(o.c.customer_id, o.c.email, o.c.summary).where(o.c.order_id == shopify_id)
        ).first()
        if row is None:
            return None
        return OrderRow(shopify_id, row.customer_id, row.email, orjson.loads(row.summary))

    def owner(self, conn: sa.Connection, email: str) -> str | None:
        """The customer of the latest indexed order placed with ``email`` (normalised)."""
        o = t.shopify_orders
        return conn.execute(
            sa.select(o.c.customer_id)
            .where(o.c.email == email)
            .order_by(o.c.indexed_at.desc(), o.c.order_id.desc())
            .limit(1)
        ).scalar()

    def remember(self, conn: sa.Connection, rows: Sequence[OrderRow], now: int) -> None:
        """Index orders; an order already indexed keeps its first row (like event ids)."""
        self.store.insert_rows(
            conn,
            t.shopify_orders,
            [
                {
                    "order_id": row.shopify_id,
                    "customer_id": row.customer_id,
                    "email": row.email,
                    "summary": orjson.dumps(row.summary),
                    "indexed_at": now,
                }
                for row in rows
            ],
            skip_conflicts=True,
        )
