"""Shopify webhooks: the order index and the deliveries already received.

Revision ID: 0004
Revises: 0003
Create Date: 2027-01-15

- ``shopify_orders``: one row per ``orders/create`` received, keyed by Shopify's order id:
  the customer the order was filed under, its email (normalised) and a JSON summary (order
  number, total, currency, items) that fulfillment and refund events copy, since those
  payloads name only the order. ``ix_shopify_orders_email`` finds the customer of a
  fulfillment whose order was never indexed by the email it names.
- ``shopify_webhooks``: the ``X-Shopify-Webhook-Id`` of each delivery, so Shopify's retries
  change nothing; rows older than a week are pruned (``ix_shopify_webhooks_received``).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "shopify_orders",
        sa.Column("order_id", sa.Text(), nullable=False),
        sa.Column("customer_id", sa.Text(), nullable=False),
        sa.Column("email", sa.Text(), nullable=True),
        sa.Column("summary", sa.LargeBinary(), nullable=False),
        sa.Column("indexed_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("order_id"),
    )
    op.create_index("ix_shopify_orders_email", "shopify_orders", ["email", "indexed_at"])
    op.create_table(
        "shopify_webhooks",
        sa.Column("webhook_id", sa.Text(), nullable=False),
        sa.Column("topic", sa.Text(), nullable=False),
        sa.Column("received_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("webhook_id"),
    )
    op.create_index("ix_shopify_webhooks_received", "shopify_webhooks", ["received_at"])


def downgrade() -> None:
    op.drop_table("shopify_webhooks")
    op.drop_table("shopify_orders")
