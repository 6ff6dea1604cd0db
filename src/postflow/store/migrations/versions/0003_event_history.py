"""Event history (§9): when each event was applied.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04

``events.applied_at`` is an event's effective time (its ``at``, or the customer's processed
time when it arrived late), written when the sweep applies it while some journey uses the
history functions; rows without it read as their ``at``. ``ix_events_customer``
(customer_id, at) already serves the one history query per claimed batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("events", sa.Column("applied_at", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    op.drop_column("events", "applied_at")
