"""The SQL store: the only module (with :mod:`postflow.store.batches`) that knows SQL.

SQLite by default, PostgreSQL for several workers, both through SQLAlchemy Core (no ORM on the
hot paths). It stores and serves; it decides nothing: what a customer's inputs do is the
engine's job, and :mod:`postflow.runtime.sweep` hands them over.

Ingestion is all-or-nothing per call and idempotent by event id. It also puts suppression
changes on each address's timeline (a fact of an address over time, contract section 2) and
marks each customer due at their earliest new event, so the sweep finds work through one
index on ``customers.due_at``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa
import yaml

from postflow import compliance, durations, loader, machine
from postflow.config import Settings
from postflow.events import Event
from postflow.machine import Machine
from postflow.problems import ProblemsError
from postflow.store import database, migrate
from postflow.store import schema as t
from postflow.store.memory import SuppressionTimeline

CHUNK = 5000
"""Rows per ``executemany``: big enough to amortise the round trip, small enough for SQLite's
parameter limits."""


def wall_us() -> int:
    """The real time now, in epoch microseconds (leases, ``ingested_at``, ``created_at``)."""
    return time.time_ns() // 1000


def event_body(event: Event) -> bytes:
    """An event as stored: its JSON with ``at`` filled in, so it can be read back as it was
    validated (an HTTP event without ``at`` got the time of ingestion)."""
    doc: dict[str, Any] = {
        "type": event.type,
        "customer_id": event.customer_id,
        "at": durations.format_instant(event.at),
    }
    if event.id is not None:
        doc["id"] = event.id
    if event.customer is not None:
        doc["customer"] = event.customer
    if event.data:
        doc["data"] = event.data
    return orjson.dumps(doc)


def event_from_row(seq: int, body: bytes, backfill: bool, at: int) -> Event:
    """A stored event, read back without validating again (it was validated at ingestion);
    ``at`` is the row's own column (the same instant as the body's, already an integer)."""
    obj = orjson.loads(body)
    event = Event(
        type=obj["type"],
        customer_id=obj["customer_id"],
        at=at,
        id=obj.get("id"),
        customer=obj.get("customer"),
        data=obj.get("data") or {},
        seq=seq,
        backfill=bool(backfill),
    )
    return event


@dataclass(frozen=True)
class IngestResult:
    accepted: int
    duplicates: int


class SqlSuppressions:
    """The engine's :class:`~postflow.world.SuppressionLookup` over the ``suppressions`` table.

    Suppression changes are few next to customers, so each worker keeps the whole timeline in
    memory. :meth:`refresh` (once per batch) asks only for the table's row count and highest
    number, and reads the table again when either moved: on PostgreSQL row numbers are handed
    out at insert, not at commit, so a slow ingest can commit a suppression numbered below
    one already seen, and reading "only rows after the last seen" would miss it for good."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine
        self._timeline = SuppressionTimeline()
        self._seen: tuple[int, int] = (0, 0)

    def refresh(self) -> None:
        s = t.suppressions
        with self._engine.connect() as conn:
            count, last = conn.execute(
                sa.select(sa.func.count(), sa.func.coalesce(sa.func.max(s.c.seq), 0))
            ).one()
            if (count, last) == self._seen:
                return
            rows = conn.execute(
                sa.select(s.c.seq, s.c.address, s.c.at, s.c.reason).order_by(s.c.seq)
            ).all()
        timeline = SuppressionTimeline()
        for seq, address, at, reason in rows:
            timeline.add(compliance.SuppressionChange(address, at, reason, seq))
        self._timeline = timeline
        self._seen = (count, last)

    def reasons_at(self, address: str, at: int) -> frozenset[str]:
        return self._timeline.reasons_at(address, at)


class SqlVersions:
    """The engine's :class:`~postflow.world.JourneyVersions`: compiles a stored version again
    (from the exact data and templates its hash covers) when an instance is pinned to it."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine

    def load_version(self, journey: str, version: str) -> Machine | None:
        with self._engine.connect() as conn:
            row = conn.execute(
                sa.select(
                    t.journey_versions.c.source,
                    t.journey_versions.c.templates,
                    t.journey_versions.c.path,
                )
                .where(t.journey_versions.c.journey == journey)
                .where(t.journey_versions.c.version == version)
            ).first()
        if row is None:
            return None
        return compile_stored(row.source, orjson.loads(row.templates), row.path)


def compile_stored(source: str, templates: dict[str, str], path: str) -> Machine | None:
    """Compile a stored journey version: its YAML data and its template files, put back in a
    temporary directory (the compiler reads templates from files)."""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory(prefix="postflow-version-") as tmp:
        root = Path(tmp).resolve()
        for name, text in templates.items():
            target = (root / name).resolve()
            if root not in target.parents:
                return None  # a stored name escaping the directory: not ours to write
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        try:
            doc = loader.load_yaml_text(source, path)
        except ProblemsError:
            return None
        compiled, problems = machine.compile_journey(doc, Path(tmp))
    if compiled is None or any(p.is_error for p in problems):
        return None
    return compiled


class SqlStore:
    """Customers, events, versions, records, outbox and suppressions in one SQL database."""

    def __init__(self, engine: sa.Engine, url: str, settings: Settings) -> None:
        self.engine = engine
        self.url = url
        self.settings = settings
        self.dialect = engine.dialect.name
        self.suppressions = SqlSuppressions(engine)
        self.versions = SqlVersions(engine)

    # -- opening ---------------------------------------------------------------------------
    @classmethod
    def open(cls, url: str, settings: Settings, *, upgrade: bool | None = None) -> SqlStore:
        """Open ``url``. SQLite upgrades its schema itself on first use; PostgreSQL must have
        been upgraded with ``postflow db upgrade`` (``upgrade=True`` does it here). Raises
        :class:`database.DatabaseError` with one line for every failure."""
        engine = database.create_engine(url)
        if upgrade is None:
            upgrade = engine.dialect.name == "sqlite"
        try:
            if upgrade:
                migrate.upgrade(engine)
            else:
                migrate.check(engine)
        except migrate.SchemaError as exc:
            engine.dispose()
            raise database.DatabaseError(str(exc)) from None
        except sa.exc.SQLAlchemyError as exc:
            engine.dispose()
            raise database.DatabaseError(database.explain(exc, url)) from None
        return cls(engine, url, settings)

    def close(self) -> None:
        self.engine.dispose()

    def insert_rows(
        self,
        conn: sa.Connection,
        table: sa.Table,
        rows: Sequence[dict[str, Any]],
        *,
        skip_conflicts: bool = False,
        upsert: tuple[str, Sequence[str]] | None = None,
    ) -> None:
        """Insert many rows through the driver's ``executemany``, in chunks. The hot inserts
        (events, records, outbox) go here: SQLAlchemy's per-row parameter handling cost as
        much as SQLite itself. Values must already be what the driver takes (int, str,
        bytes, bool, None), which is all these tables hold. ``upsert=(key, columns)``
        updates those columns of a row whose ``key`` exists (SQLite and PostgreSQL share the
        ``ON CONFLICT ... DO UPDATE`` syntax)."""
        if not rows:
            return
        columns = list(rows[0])
        mark = "?" if self.engine.dialect.paramstyle == "qmark" else "%s"
        sql = (
            f"INSERT INTO {table.name} ({', '.join(columns)}) "
            f"VALUES ({', '.join(mark for _ in columns)})"
        )
        if skip_conflicts:
            sql += " ON CONFLICT DO NOTHING"
        elif upsert is not None:
            key, updated = upsert
            sets = ", ".join(f"{c} = excluded.{c}" for c in updated)
            sql += f" ON CONFLICT ({key}) DO UPDATE SET {sets}"
        for part in chunks(rows):
            conn.exec_driver_sql(sql, [tuple(row[c] for c in columns) for row in part])

    def _upsert(self, table: sa.Table) -> Any:
        if self.dialect == "postgresql":
            from sqlalchemy.dialects import postgresql

            return postgresql.insert(table)
        from sqlalchemy.dialects import sqlite

        return sqlite.insert(table)

    # -- ingestion -------------------------------------------------------------------------
    def ingest(
        self, events: Iterable[Event], *, backfill: bool = False, chunk: int = CHUNK
    ) -> IngestResult:
        """Store validated events in one transaction (all or nothing), skipping ids already
        stored (or repeated in ``events``). Returns the counts. Decides nothing."""
        with self.engine.begin() as conn:
            return self.ingest_on(conn, events, backfill=backfill, chunk=chunk)

    def ingest_on(
        self,
        conn: sa.Connection,
        events: Iterable[Event],
        *,
        backfill: bool = False,
        chunk: int = CHUNK,
    ) -> IngestResult:
        """:meth:`ingest` inside the caller's transaction, so other writes (a webhook's
        bookkeeping) commit or roll back together with the events."""
        accepted = duplicates = 0
        now = wall_us()
        region = self.settings.default_region
        batch: list[Event] = []
        for event in events:
            batch.append(event)
            if len(batch) >= chunk:
                a, d = self._ingest_chunk(conn, batch, backfill, now, region)
                accepted, duplicates = accepted + a, duplicates + d
                batch = []
        if batch:
            a, d = self._ingest_chunk(conn, batch, backfill, now, region)
            accepted, duplicates = accepted + a, duplicates + d
        return IngestResult(accepted, duplicates)

    def _ingest_chunk(
        self,
        conn: sa.Connection,
        batch: list[Event],
        backfill: bool,
        now: int,
        region: str | None,
    ) -> tuple[int, int]:
        ids = [e.id for e in batch if e.id is not None]
        taken: set[str] = set()
        if ids:
            taken = set(
                conn.execute(
                    sa.select(t.events.c.event_id).where(t.events.c.event_id.in_(ids))
                ).scalars()
            )
        fresh: list[Event] = []
        for event in batch:
            if event.id is not None:
                if event.id in taken:
                    continue
                taken.add(event.id)
            fresh.append(event)
        rows: list[dict[str, Any]] = []
        due: dict[str, int] = {}
        for event in fresh:
            change = compliance.suppression_change(event.type, event.data, event.at, region, 0)
            if change is not None:
                # A suppression change needs its event's ingestion number: insert it alone.
                self._insert_events(conn, rows)
                rows = []
                seq = conn.execute(
                    t.events.insert().returning(t.events.c.seq),
                    self._event_row(event, backfill, now),
                ).scalar_one()
                conn.execute(
                    t.suppressions.insert(),
                    {
                        "address": change.address,
                        "at": change.at,
                        "reason": change.reason,
                        "event_seq": seq,
                    },
                )
            else:
                rows.append(self._event_row(event, backfill, now))
            cid = event.customer_id
            if cid not in due or event.at < due[cid]:
                due[cid] = event.at
        self._insert_events(conn, rows)
        self._mark_due(conn, due)
        return len(fresh), len(batch) - len(fresh)

    @staticmethod
    def _event_row(
        event: Event, backfill: bool, now: int, *, applied: bool = False, origin: str = "ingest"
    ) -> dict[str, Any]:
        return {
            "event_id": event.id,
            "customer_id": event.customer_id,
            "type": event.type,
            "at": event.at,
            "body": event_body(event),
            "backfill": backfill,
            "applied": applied,
            "origin": origin,
            "ingested_at": now,
        }

    def _insert_events(self, conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
        self.insert_rows(conn, t.events, rows)

    def _mark_due(self, conn: sa.Connection, due: dict[str, int]) -> None:
        """Create customers never seen, and make each due no later than ``due[id]``."""
        if not due:
            return
        stmt = self._upsert(t.customers)
        current = t.customers.c.due_at
        stmt = stmt.on_conflict_do_update(
            index_elements=[t.customers.c.customer_id],
            set_={
                "due_at": sa.case(
                    (current.is_(None), stmt.excluded.due_at),
                    (stmt.excluded.due_at < current, stmt.excluded.due_at),
                    else_=current,
                )
            },
        )
        conn.execute(stmt, [{"customer_id": c, "due_at": at} for c, at in sorted(due.items())])

    # -- journey versions and deployment -----------------------------------------------------
    def save_versions(self, machines: Iterable[Machine]) -> None:
        """Keep the source of every version the daemon runs, so instances pinned to it can be
        advanced after its file changed or went away."""
        machines = list(machines)
        if not machines:
            return
        now = wall_us()
        with self.engine.begin() as conn:
            known = {
                (r.journey, r.version)
                for r in conn.execute(
                    sa.select(t.journey_versions.c.journey, t.journey_versions.c.version)
                )
            }
            rows = [
                {
                    "journey": m.id,
                    "version": m.version,
                    "path": m.path,
                    "source": yaml.safe_dump(m.data, sort_keys=False, allow_unicode=True),
                    "templates": orjson.dumps(dict(m.templates)),
                    "loaded_at": now,
                }
                for m in machines
                if (m.id, m.version) not in known and m.data is not None
            ]
            if rows:
                conn.execute(self._upsert(t.journey_versions).on_conflict_do_nothing(), rows)

    def deploy(self, machines: Iterable[Machine], now: int) -> dict[str, int]:
        """Deploy journeys not yet deployed on this database, at the logical time of the first
        input a daemon processes with them loaded: the earliest event not yet applied, else
        ``now`` (contract section 2). Returns every deployment (journey id -> deployed at)."""
        machines = list(machines)
        with self.engine.begin() as conn:
            deployed = {
                r.journey: r.deployed_at
                for r in conn.execute(
                    sa.select(t.deployments.c.journey, t.deployments.c.deployed_at)
                )
            }
            new = [m for m in machines if m.id not in deployed]
            if new:
                # History imports (backfill) are not input a journey was deployed for.
                earliest = conn.execute(
                    sa.select(sa.func.min(t.events.c.at))
                    .where(t.events.c.applied.is_(False))
                    .where(t.events.c.backfill.is_(False))
                ).scalar()
                at = now if earliest is None else min(earliest, now)
                rows = [
                    {
                        "journey": m.id,
                        "deployed_at": at,
                        "ticks_until": None,
                        "schedule": m.trigger.schedule.expr if m.trigger.schedule else None,
                    }
                    for m in new
                ]
                conn.execute(self._upsert(t.deployments).on_conflict_do_nothing(), rows)
                for row in rows:
                    deployed.setdefault(row["journey"], at)
                if any(m.trigger.local for m in new):
                    # timezone: customer ticks are each customer's own: wake everyone once
                    # so each learns the journey (its ticks start then, §9).
                    c = t.customers
                    conn.execute(
                        c.update()
                        .where(sa.or_(c.c.due_at.is_(None), c.c.due_at > at))
                        .values(due_at=at)
                    )
        return deployed

    # -- reading -----------------------------------------------------------------------------
    def history(
        self, *, customer: str | None = None, journey: str | None = None, batch: int = 10_000
    ) -> Iterator[dict[str, Any]]:
        """Records (contract section 3) ordered by ``at``, customer id, production order; read
        in pages so a large history never sits in memory."""
        r = t.records
        # Customer ids in code-point order, as simulate sorts them, whatever the database's
        # collation (PostgreSQL's default may be a locale's).
        cid: Any = r.c.customer_id.collate("C") if self.dialect == "postgresql" else r.c.customer_id
        last: tuple[int, str, int] | None = None
        with self.engine.connect() as conn:
            while True:
                query = sa.select(r.c.at, r.c.customer_id, r.c.id, r.c.body)
                if customer is not None:
                    query = query.where(r.c.customer_id == customer)
                if journey is not None:
                    query = query.where(r.c.journey == journey)
                if last is not None:
                    query = query.where(sa.tuple_(r.c.at, cid, r.c.id) > sa.tuple_(*last))
                rows = conn.execute(query.order_by(r.c.at, cid, r.c.id).limit(batch)).all()
                for row in rows:
                    yield orjson.loads(row.body)
                if len(rows) < batch:
                    return
                last = (rows[-1].at, rows[-1].customer_id, rows[-1].id)

    def customer_view(self, customer_id: str) -> dict[str, Any] | None:
        """What ``GET /customers/{id}`` shows: profile, instances, records; None if unknown."""
        from postflow.state import CustomerState

        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(t.customers.c.state).where(t.customers.c.customer_id == customer_id)
            ).first()
            if row is None:
                return None
            instances = [
                _instance_json(i)
                for i in conn.execute(
                    sa.select(t.instances)
                    .where(t.instances.c.customer_id == customer_id)
                    .order_by(t.instances.c.entered_at, t.instances.c.instance_id)
                ).mappings()
            ]
        profile: dict[str, Any] = {}
        if row.state is not None:
            profile = CustomerState.from_document(row.state).profile
        records = [_printable(r) for r in self.history(customer=customer_id)]
        return {
            "customer_id": customer_id,
            "profile": profile,
            "instances": instances,
            "records": records,
        }

    def ping(self) -> None:
        database.ping(self.engine)


def _printable(record: dict[str, Any]) -> dict[str, Any]:
    return {**record, "at": durations.format_instant(record["at"])}


def _instance_json(row: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in (
        "instance_id",
        "journey",
        "version",
        "key",
        "status",
        "step",
        "wake_at",
        "entered_at",
        "ended_at",
        "exit_reason",
        "variant",
    ):
        value = row[key]
        if value is None:
            continue
        if key in ("wake_at", "entered_at", "ended_at"):
            value = durations.format_instant(value)
        out["id" if key == "instance_id" else key] = value
    return out


def held_by(conn: sa.Connection, key: sa.Column[Any], ids: Sequence[str], owner: str) -> set[str]:
    """Of ``ids``, those whose row ``owner`` still leases (``lease_owner`` of ``key``'s
    table), locked for the rest of the transaction: a worker writes only what it holds."""
    table = key.table
    held: set[str] = set()
    for part in chunks(ids):
        held.update(
            conn.execute(
                sa.select(key)
                .where(key.in_(part))
                .where(table.c.lease_owner == owner)
                .with_for_update()
            ).scalars()
        )
    return held


def chunks(items: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
