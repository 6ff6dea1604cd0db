"""The initial tables of the SQL store, as :mod:`postflow.store.schema` declared them.

Revision ID: 0001
Revises:
Create Date: 2026-12-04

Written out in full rather than built from ``schema.metadata``: a migration must keep
creating what it created when it shipped, whatever the schema module says later.

The partial indexes give their predicates as SQLAlchemy expressions, not SQL text, so that
each backend gets what ``metadata.create_all`` would write and what the store's queries
say: SQLite only uses a partial index when a query's WHERE term matches the index's term
exactly, and SQLAlchemy writes ``applied IS 0`` there but ``applied IS false`` on
PostgreSQL (SQLite treats ``IS false`` and ``IS 0`` as different terms).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# SQLite needs INTEGER PRIMARY KEY (the rowid) for autoincrement; PostgreSQL gets a bigint.
SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "customers",
        sa.Column("customer_id", sa.Text(), nullable=False),
        sa.Column("state", sa.LargeBinary(), nullable=True),
        sa.Column("due_at", sa.BigInteger(), nullable=True),
        sa.Column("known_since", sa.BigInteger(), nullable=True),
        sa.Column("ticks_until", sa.BigInteger(), nullable=True),
        sa.Column("lease_owner", sa.Text(), nullable=True),
        sa.Column("lease_until", sa.BigInteger(), nullable=True),
        sa.Column("updated_at", sa.BigInteger(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("customer_id"),
    )
    due_at = sa.column("due_at", sa.BigInteger())
    op.create_index(
        "ix_customers_due",
        "customers",
        ["due_at"],
        postgresql_where=due_at.isnot(None),
        sqlite_where=due_at.isnot(None),
    )
    op.create_index("ix_customers_known", "customers", ["known_since"])

    op.create_table(
        "events",
        sa.Column("seq", SEQ, autoincrement=True, nullable=False),
        sa.Column("event_id", sa.Text(), nullable=True),
        sa.Column("customer_id", sa.Text(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("backfill", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("applied", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("origin", sa.Text(), server_default="ingest", nullable=False),
        sa.Column("ingested_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("event_id", name="uq_events_event_id"),
    )
    applied = sa.column("applied", sa.Boolean())
    op.create_index(
        "ix_events_pending",
        "events",
        ["customer_id", "seq"],
        postgresql_where=applied.is_(False),
        sqlite_where=applied.is_(False),
    )
    op.create_index("ix_events_customer", "events", ["customer_id", "at"])

    op.create_table(
        "journey_versions",
        sa.Column("journey", sa.Text(), nullable=False),
        sa.Column("version", sa.Text(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("templates", sa.LargeBinary(), nullable=False),
        sa.Column("loaded_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("journey", "version"),
    )

    op.create_table(
        "deployments",
        sa.Column("journey", sa.Text(), nullable=False),
        sa.Column("deployed_at", sa.BigInteger(), nullable=False),
        sa.Column("ticks_until", sa.BigInteger(), nullable=True),
        sa.Column("schedule", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("journey"),
    )

    op.create_table(
        "ticks",
        sa.Column("journey", sa.Text(), nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("journey", "at"),
    )
    op.create_index("ix_ticks_at", "ticks", ["at"])

    op.create_table(
        "instances",
        sa.Column("instance_id", sa.Text(), nullable=False),
        sa.Column("customer_id", sa.Text(), nullable=False),
        sa.Column("journey", sa.Text(), nullable=False),
        sa.Column("version", sa.Text(), nullable=False),
        sa.Column("key", sa.Text(), nullable=True),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("step", sa.Text(), nullable=True),
        sa.Column("wake_at", sa.BigInteger(), nullable=True),
        sa.Column("entered_at", sa.BigInteger(), nullable=False),
        sa.Column("ended_at", sa.BigInteger(), nullable=True),
        sa.Column("exit_reason", sa.Text(), nullable=True),
        sa.Column("variant", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("instance_id"),
    )
    op.create_index("ix_instances_journey", "instances", ["journey", "status"])
    op.create_index("ix_instances_customer", "instances", ["customer_id"])

    op.create_table(
        "records",
        sa.Column("id", SEQ, autoincrement=True, nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("customer_id", sa.Text(), nullable=False),
        sa.Column("journey", sa.Text(), nullable=False),
        sa.Column("instance", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("message_id", sa.Text(), nullable=True),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_records_order", "records", ["at", "customer_id", "id"])
    op.create_index("ix_records_customer", "records", ["customer_id"])
    op.create_index("ix_records_journey", "records", ["journey"])
    op.create_index("ix_records_message", "records", ["message_id"])

    op.create_table(
        "outbox",
        sa.Column("message_id", sa.Text(), nullable=False),
        sa.Column("customer_id", sa.Text(), nullable=False),
        sa.Column("journey", sa.Text(), nullable=False),
        sa.Column("step", sa.Text(), nullable=False),
        sa.Column("channel", sa.Text(), nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("next_attempt_at", sa.BigInteger(), nullable=False),
        sa.Column("lease_owner", sa.Text(), nullable=True),
        sa.Column("lease_until", sa.BigInteger(), nullable=True),
        sa.Column("provider", sa.Text(), nullable=True),
        sa.Column("provider_id", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("sent_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("message_id"),
    )
    status = sa.column("status", sa.Text())
    op.create_index(
        "ix_outbox_pending",
        "outbox",
        ["next_attempt_at"],
        postgresql_where=status == "queued",
        sqlite_where=status == "queued",
    )

    op.create_table(
        "suppressions",
        sa.Column("seq", SEQ, autoincrement=True, nullable=False),
        sa.Column("address", sa.Text(), nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("event_seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("event_seq", name="uq_suppressions_event"),
    )
    op.create_index("ix_suppressions_address", "suppressions", ["address", "at"])

    op.create_table(
        "leases",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("owner", sa.Text(), nullable=True),
        sa.Column("until", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    # Dropping a table drops its indexes and constraints with it.
    for table in (
        "leases",
        "suppressions",
        "outbox",
        "records",
        "instances",
        "ticks",
        "deployments",
        "journey_versions",
        "events",
        "customers",
    ):
        op.drop_table(table)
