"""Delivery tracking for real providers: what the outbox needs to answer their callbacks.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04

- ``outbox.to_address``: the normalised address a message went to, so an inbound SMS or a
  suppression for an address is filed under the customer we last wrote to there.
- ``outbox.delivery_status`` / ``delivery_at``: the provider's latest word on a sent
  message (Twilio ``delivered``/``undelivered``, SendGrid ``delivered``/``bounce``...), kept
  beside the record rather than rewriting it: ``status: sent`` stays the engine's decision.
- Indexes on ``provider_id`` (Twilio status callbacks name the message by its SID) and on
  ``(to_address, created_at)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("outbox", sa.Column("to_address", sa.Text(), nullable=True))
    op.add_column("outbox", sa.Column("delivery_status", sa.Text(), nullable=True))
    op.add_column("outbox", sa.Column("delivery_at", sa.BigInteger(), nullable=True))
    op.create_index("ix_outbox_provider_id", "outbox", ["provider_id"])
    op.create_index("ix_outbox_to_address", "outbox", ["to_address", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_outbox_to_address", table_name="outbox")
    op.drop_index("ix_outbox_provider_id", table_name="outbox")
    op.drop_column("outbox", "delivery_at")
    op.drop_column("outbox", "delivery_status")
    op.drop_column("outbox", "to_address")
