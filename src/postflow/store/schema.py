"""The SQL tables of the durable runtime, declared once (SQLAlchemy Core).

Only :mod:`postflow.store.sql` writes queries against these; the Alembic migrations in
``store/migrations`` create them, and a test checks that the migrations produce exactly the
tables declared here. Times are integer epoch microseconds (``BigInteger``); JSON documents
are stored as bytes (orjson) so that SQLite and PostgreSQL hold the same thing.

- ``customers``: one row per customer, the engine's state as one versioned document (new
  engine fields need no migration), an indexed ``due_at`` (the earliest of the next timer, an
  unapplied event and a cron tick: the sweep reads only this index), ``known_since`` (the
  logical time the customer was first processed: audience ticks after it reach them),
  ``ticks_until`` (cron ticks handed to the engine up to here) and the lease columns.
- ``events``: every ingested event in ingestion order (``seq``), unique by ``event_id``
  (idempotent ingest), applied or not; emitted events are stored applied, so their ids stay
  taken.
- ``journey_versions``: the source and templates of every version the daemon ever ran, so
  instances pinned to an older version keep running after the file changed.
- ``deployments`` and ``ticks``: when each journey was first deployed on this database and
  the cron ticks materialised so far (a daemon that was down catches up).
- ``instances``, ``records``, ``outbox``: relational views for history, status and the
  dispatcher. ``suppressions``: each address's changes over time, in ingestion order.
- ``leases``: named singleton leases (cron materialisation) shared by every worker.
- ``shopify_orders``: the order index. Shopify's fulfillment and refund webhooks name only
  the order, so each ``orders/create`` leaves its customer and a summary (order number,
  total, currency, items: JSON) here, keyed by Shopify's order id
  (:mod:`postflow.store.shopify` reads and writes it). ``shopify_webhooks``: the
  ``X-Shopify-Webhook-Id`` of every delivery received lately, so a redelivery changes nothing.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
    text,
)

metadata = MetaData()

# SQLite needs INTEGER PRIMARY KEY (the rowid) for autoincrement; PostgreSQL gets a bigint.
SEQ = BigInteger().with_variant(Integer(), "sqlite")

customers = Table(
    "customers",
    metadata,
    Column("customer_id", Text, primary_key=True),
    Column("state", LargeBinary, nullable=True),
    Column("due_at", BigInteger, nullable=True),
    Column("known_since", BigInteger, nullable=True),
    Column("ticks_until", BigInteger, nullable=True),
    Column("lease_owner", Text, nullable=True),
    Column("lease_until", BigInteger, nullable=True),
    Column("updated_at", BigInteger, nullable=True),
    Column("error", Text, nullable=True),
)
Index(
    "ix_customers_due",
    customers.c.due_at,
    postgresql_where=customers.c.due_at.isnot(None),
    sqlite_where=customers.c.due_at.isnot(None),
)
Index("ix_customers_known", customers.c.known_since)

events = Table(
    "events",
    metadata,
    Column("seq", SEQ, primary_key=True, autoincrement=True),
    Column("event_id", Text, nullable=True),
    Column("customer_id", Text, nullable=False),
    Column("type", Text, nullable=False),
    Column("at", BigInteger, nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("backfill", Boolean, nullable=False, server_default=text("false")),
    Column("applied", Boolean, nullable=False, server_default=text("false")),
    Column("origin", Text, nullable=False, server_default="ingest"),
    Column("ingested_at", BigInteger, nullable=False),
    UniqueConstraint("event_id", name="uq_events_event_id"),
    Column("applied_at", BigInteger, nullable=True),
)
Index(
    "ix_events_pending",
    events.c.customer_id,
    events.c.seq,
    postgresql_where=events.c.applied.is_(False),
    sqlite_where=events.c.applied.is_(False),
)
Index("ix_events_customer", events.c.customer_id, events.c.at)

journey_versions = Table(
    "journey_versions",
    metadata,
    Column("journey", Text, primary_key=True),
    Column("version", Text, primary_key=True),
    Column("path", Text, nullable=False),
    Column("source", Text, nullable=False),
    Column("templates", LargeBinary, nullable=False),
    Column("loaded_at", BigInteger, nullable=False),
)

deployments = Table(
    "deployments",
    metadata,
    Column("journey", Text, primary_key=True),
    Column("deployed_at", BigInteger, nullable=False),
    Column("ticks_until", BigInteger, nullable=True),
    Column("schedule", Text, nullable=True),
)

ticks = Table(
    "ticks",
    metadata,
    Column("journey", Text, primary_key=True),
    Column("at", BigInteger, primary_key=True),
)
Index("ix_ticks_at", ticks.c.at)

instances = Table(
    "instances",
    metadata,
    Column("instance_id", Text, primary_key=True),
    Column("customer_id", Text, nullable=False),
    Column("journey", Text, nullable=False),
    Column("version", Text, nullable=False),
    Column("key", Text, nullable=True),
    Column("status", Text, nullable=False),
    Column("step", Text, nullable=True),
    Column("wake_at", BigInteger, nullable=True),
    Column("entered_at", BigInteger, nullable=False),
    Column("ended_at", BigInteger, nullable=True),
    Column("exit_reason", Text, nullable=True),
    Column("variant", Text, nullable=True),
)
Index("ix_instances_journey", instances.c.journey, instances.c.status)
Index("ix_instances_customer", instances.c.customer_id)

records = Table(
    "records",
    metadata,
    Column("id", SEQ, primary_key=True, autoincrement=True),
    Column("at", BigInteger, nullable=False),
    Column("customer_id", Text, nullable=False),
    Column("journey", Text, nullable=False),
    Column("instance", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("message_id", Text, nullable=True),
    Column("body", LargeBinary, nullable=False),
    Column("created_at", BigInteger, nullable=False),
)
Index("ix_records_order", records.c.at, records.c.customer_id, records.c.id)
Index("ix_records_customer", records.c.customer_id)
Index("ix_records_journey", records.c.journey)
Index("ix_records_message", records.c.message_id)

outbox = Table(
    "outbox",
    metadata,
    Column("message_id", Text, primary_key=True),
    Column("customer_id", Text, nullable=False),
    Column("journey", Text, nullable=False),
    Column("step", Text, nullable=False),
    Column("channel", Text, nullable=False),
    Column("at", BigInteger, nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("status", Text, nullable=False),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("next_attempt_at", BigInteger, nullable=False),
    Column("lease_owner", Text, nullable=True),
    Column("lease_until", BigInteger, nullable=True),
    Column("provider", Text, nullable=True),
    Column("provider_id", Text, nullable=True),
    Column("error", Text, nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Column("sent_at", BigInteger, nullable=True),
    Column("to_address", Text, nullable=True),
    Column("delivery_status", Text, nullable=True),
    Column("delivery_at", BigInteger, nullable=True),
)
Index("ix_outbox_provider_id", outbox.c.provider_id)
Index("ix_outbox_to_address", outbox.c.to_address, outbox.c.created_at)
Index(
    "ix_outbox_pending",
    outbox.c.next_attempt_at,
    postgresql_where=outbox.c.status == "queued",
    sqlite_where=outbox.c.status == "queued",
)

suppressions = Table(
    "suppressions",
    metadata,
    Column("seq", SEQ, primary_key=True, autoincrement=True),
    Column("address", Text, nullable=False),
    Column("at", BigInteger, nullable=False),
    Column("reason", Text, nullable=True),
    Column("event_seq", BigInteger, nullable=False),
    UniqueConstraint("event_seq", name="uq_suppressions_event"),
)
Index("ix_suppressions_address", suppressions.c.address, suppressions.c.at)

leases = Table(
    "leases",
    metadata,
    Column("name", Text, primary_key=True),
    Column("owner", Text, nullable=True),
    Column("until", BigInteger, nullable=True),
)

shopify_orders = Table(
    "shopify_orders",
    metadata,
    Column("order_id", Text, primary_key=True),
    Column("customer_id", Text, nullable=False),
    Column("email", Text, nullable=True),
    Column("summary", LargeBinary, nullable=False),
    Column("indexed_at", BigInteger, nullable=False),
)
Index("ix_shopify_orders_email", shopify_orders.c.email, shopify_orders.c.indexed_at)

shopify_webhooks = Table(
    "shopify_webhooks",
    metadata,
    Column("webhook_id", Text, primary_key=True),
    Column("topic", Text, nullable=False),
    Column("received_at", BigInteger, nullable=False),
)
Index("ix_shopify_webhooks_received", shopify_webhooks.c.received_at)
