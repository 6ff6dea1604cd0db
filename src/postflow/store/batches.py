"""The SQL of the hot path: claiming due customers, writing a batch back, cron ticks, outbox.

A worker *claims* a batch of customers whose ``due_at`` has come (``FOR UPDATE SKIP LOCKED``
on PostgreSQL, the single writer lock on SQLite) by putting its name and a lease expiry on
their rows, and commits, so the claim is visible to every other worker. It then advances them
outside any transaction, and writes the whole batch back in one transaction: state documents,
applied and emitted events, records, instances and outbox rows, for the customers whose lease
it still holds. A worker that dies leaves leases that expire; another worker takes the
customers over and, because nothing of the dead worker's batch was committed, redoes exactly
the same work.

The write-back recomputes ``due_at`` from what it saw, then lowers it for any event or cron
tick that arrived while the batch was in hand, so late input is never lost between claim and
write-back.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import sqlalchemy as sa

from postflow import durations
from postflow.effects import OutboundMessage
from postflow.events import Event
from postflow.machine import Machine
from postflow.state import CustomerState
from postflow.store import schema as t
from postflow.store.sql import SqlStore, chunks, event_from_row, held_by, wall_us

NEVER = 1 << 62


@dataclass
class Claimed:
    """A claimed customer as read from its row."""

    customer_id: str
    state: bytes | None
    known_since: int | None
    ticks_until: int | None
    events: list[Event] = field(default_factory=list)
    history: list[tuple[str, int, dict[str, Any]]] | None = None


@dataclass
class Outcome:
    """What the sweep decided for one claimed customer, ready to be written back."""

    customer_id: str
    state: bytes | None
    due_at: int | None
    known_since: int | None
    ticks_until: int | None
    applied: list[int] = field(default_factory=list)
    applied_at: list[tuple[int, int]] = field(default_factory=list)  # with history: effective at
    emitted: list[Event] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    messages: list[OutboundMessage] = field(default_factory=list)
    state_obj: CustomerState | None = None
    error: str | None = None


class Batches:
    """The hot-path queries over a :class:`SqlStore`."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store
        self.engine = store.engine

    # -- claiming ----------------------------------------------------------------------------
    def claim(
        self, owner: str, until: int, limit: int, lease_us: int, history_keep: int | None = None
    ) -> list[Claimed]:
        """Lease up to ``limit`` customers due at or before ``until`` whose lease is free, with
        their unapplied events (ingestion order) and, given ``history_keep``, their applied
        events since ``until − history_keep`` (one query per batch, §9)."""
        c = t.customers
        now = wall_us()
        with self.engine.begin() as conn:
            query = (
                sa.select(c.c.customer_id, c.c.state, c.c.known_since, c.c.ticks_until)
                .where(c.c.due_at <= until)
                .where(sa.or_(c.c.lease_until.is_(None), c.c.lease_until < now))
                .order_by(c.c.due_at)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
            rows = conn.execute(query).all()
            if not rows:
                return []
            ids = [r.customer_id for r in rows]
            for part in chunks(ids):
                conn.execute(
                    c.update()
                    .where(c.c.customer_id.in_(part))
                    .values(lease_owner=owner, lease_until=now + lease_us)
                )
            claimed = {
                r.customer_id: Claimed(r.customer_id, r.state, r.known_since, r.ticks_until)
                for r in rows
            }
            e = t.events
            for part in chunks(ids):
                for seq, cid, body, backfill, at in conn.execute(
                    sa.select(e.c.seq, e.c.customer_id, e.c.body, e.c.backfill, e.c.at)
                    .where(e.c.applied.is_(False))
                    .where(e.c.customer_id.in_(part))
                    .order_by(e.c.seq)
                ):
                    claimed[cid].events.append(event_from_row(seq, body, backfill, at))
            if history_keep is not None:
                self._load_history(conn, claimed, ids, until - history_keep)
        return [claimed[i] for i in ids]

    def _load_history(
        self, conn: sa.Connection, claimed: dict[str, Claimed], ids: list[str], floor: int
    ) -> None:
        e = t.events
        effective = sa.func.coalesce(e.c.applied_at, e.c.at)
        for cid in ids:
            claimed[cid].history = []
        for part in chunks(ids):
            for cid, kind, at, body in conn.execute(
                sa.select(e.c.customer_id, e.c.type, effective, e.c.body)
                .where(e.c.customer_id.in_(part))
                .where(e.c.applied.is_(True))
                .where(effective > floor)
                .order_by(effective, e.c.seq)
            ):
                data = orjson.loads(body).get("data") or {}
                claimed[cid].history.append((kind, at, data))  # type: ignore[union-attr]

    def release(self, owner: str, customer_ids: Sequence[str]) -> None:
        """Give leases back without writing (a worker stopping before it advanced them)."""
        c = t.customers
        with self.engine.begin() as conn:
            for part in chunks(list(customer_ids)):
                conn.execute(
                    c.update()
                    .where(c.c.customer_id.in_(part))
                    .where(c.c.lease_owner == owner)
                    .values(lease_owner=None, lease_until=None)
                )

    def event_id_taken(self, event_id: str) -> bool:
        with self.engine.connect() as conn:
            return (
                conn.execute(
                    sa.select(t.events.c.seq).where(t.events.c.event_id == event_id)
                ).first()
                is not None
            )

    # -- cron ticks --------------------------------------------------------------------------
    def tick_horizon(self, audience: Iterable[Machine]) -> int:
        """Ticks are materialised up to here for every loaded audience journey: a customer is
        handed ticks only up to it, so a tick not yet written can never be skipped."""
        ids = [m.id for m in audience]
        if not ids:
            return NEVER
        d = t.deployments
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(d.c.journey, d.c.deployed_at, d.c.ticks_until).where(d.c.journey.in_(ids))
            ).all()
        if len(rows) < len(ids):
            return -NEVER
        return min(r.ticks_until if r.ticks_until is not None else r.deployed_at - 1 for r in rows)

    def deployed_at(self, journeys: Iterable[str]) -> dict[str, int]:
        """When each of these journeys was deployed on this database (those that are)."""
        ids = list(journeys)
        if not ids:
            return {}
        d = t.deployments
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(d.c.journey, d.c.deployed_at).where(d.c.journey.in_(ids))
            ).all()
        return {r.journey: r.deployed_at for r in rows}

    def ticks(self, after: int, upto: int, journeys: Iterable[str]) -> list[tuple[int, str]]:
        """Materialised ticks in ``(after, upto]`` of the given journeys, in time order."""
        names = list(journeys)
        if not names or upto <= after:
            return []
        k = t.ticks
        with self.engine.connect() as conn:
            return [
                (r.at, r.journey)
                for r in conn.execute(
                    sa.select(k.c.at, k.c.journey)
                    .where(k.c.at > after)
                    .where(k.c.at <= upto)
                    .where(k.c.journey.in_(names))
                    .order_by(k.c.at, k.c.journey)
                )
            ]

    def next_tick_after(self, after: int, journeys: Iterable[str]) -> int | None:
        names = list(journeys)
        if not names:
            return None
        k = t.ticks
        with self.engine.connect() as conn:
            return conn.execute(
                sa.select(sa.func.min(k.c.at)).where(k.c.at > after).where(k.c.journey.in_(names))
            ).scalar()

    def materialize_ticks(
        self, audience: Iterable[Machine], until: int, owner: str, lease_us: int
    ) -> int:
        """Write every cron tick of the deployed audience journeys up to ``until`` and make
        each customer known before a tick due at it. One worker at a time (the ``cron``
        lease). Returns how many ticks were written."""
        machines = [m for m in audience if m.trigger.schedule is not None]
        if not machines:
            return 0
        now = wall_us()
        d, c = t.deployments, t.customers
        with self.engine.begin() as conn:
            if not self._take_lease(conn, "cron", owner, now, lease_us):
                return 0
            deployed = {
                r.journey: r
                for r in conn.execute(
                    sa.select(d).where(d.c.journey.in_([m.id for m in machines]))
                ).mappings()
            }
            fresh: set[int] = set()
            rows: list[dict[str, Any]] = []
            for m in machines:
                row = deployed.get(m.id)
                if row is None:
                    continue
                start = row["deployed_at"] if row["ticks_until"] is None else row["ticks_until"] + 1
                if start > until:
                    continue
                assert m.trigger.schedule is not None and m.trigger.zone is not None
                for at in durations.cron_ticks(m.trigger.schedule, m.trigger.zone, start, until):
                    rows.append({"journey": m.id, "at": at})
                    fresh.add(at)
                conn.execute(d.update().where(d.c.journey == m.id).values(ticks_until=until))
            for part in chunks(rows):
                conn.execute(self.store._upsert(t.ticks).on_conflict_do_nothing(), list(part))
            previous = -NEVER
            for at in sorted(fresh):
                conn.execute(
                    c.update()
                    .where(c.c.known_since >= previous)
                    .where(c.c.known_since < at)
                    .where(sa.or_(c.c.due_at.is_(None), c.c.due_at > at))
                    .values(due_at=at)
                )
                previous = at
        return len(rows)

    def release_lease(self, name: str, owner: str) -> None:
        """Give a named lease back (a ``run --once`` that is done with the cron ticks), so the
        next process need not wait for it to expire."""
        lease = t.leases
        with self.engine.begin() as conn:
            conn.execute(
                lease.update()
                .where(lease.c.name == name)
                .where(lease.c.owner == owner)
                .values(owner=None, until=None)
            )

    def _take_lease(
        self, conn: sa.Connection, name: str, owner: str, now: int, lease_us: int
    ) -> bool:
        lease = t.leases
        conn.execute(
            self.store._upsert(lease).on_conflict_do_nothing(),
            {"name": name, "owner": None, "until": None},
        )
        taken = conn.execute(
            lease.update()
            .where(lease.c.name == name)
            .where(sa.or_(lease.c.owner.is_(None), lease.c.owner == owner, lease.c.until < now))
            .values(owner=owner, until=now + lease_us)
        )
        return bool(taken.rowcount)

    # -- writing back ------------------------------------------------------------------------
    def write_back(
        self, owner: str, outcomes: Sequence[Outcome], versions: Mapping[str, str] | None = None
    ) -> list[str]:
        """Commit a batch in one transaction, for the customers whose lease ``owner`` still
        holds. ``versions`` (journey id -> the version new entries took in this batch) names
        the version of instances that entered and were pruned within the batch. Returns the
        ids written (the others were taken over and are left alone)."""
        if not outcomes:
            return []
        c, e = t.customers, t.events
        now = wall_us()
        with self.engine.begin() as conn:
            held = held_by(conn, c.c.customer_id, [o.customer_id for o in outcomes], owner)
            mine = [o for o in outcomes if o.customer_id in held]
            if not mine:
                return []
            conn.execute(
                c.update()
                .where(c.c.customer_id == sa.bindparam("cid"))
                .values(
                    state=sa.bindparam("state"),
                    due_at=sa.bindparam("due"),
                    known_since=sa.bindparam("known"),
                    ticks_until=sa.bindparam("ticks"),
                    lease_owner=None,
                    lease_until=None,
                    updated_at=now,
                    error=sa.bindparam("err"),
                ),
                [
                    {
                        "cid": o.customer_id,
                        "state": o.state,
                        "due": o.due_at,
                        "known": o.known_since,
                        "ticks": o.ticks_until,
                        "err": o.error,
                    }
                    for o in mine
                ],
            )
            applied = [seq for o in mine if not o.applied_at for seq in o.applied]
            for part in chunks(applied):
                conn.execute(e.update().where(e.c.seq.in_(part)).values(applied=True))
            effective = [{"s": seq, "a": at} for o in mine for seq, at in o.applied_at]
            if effective:
                conn.execute(_APPLIED_AT, effective)
            self._insert_emitted(conn, [ev for o in mine for ev in o.emitted], now)
            self._insert_records(conn, mine, now)
            self._upsert_instances(conn, mine, versions or {})
            self._insert_outbox(conn, [m for o in mine for m in o.messages], now)
            self._lower_due(conn, mine)
        return [o.customer_id for o in mine]

    def _insert_emitted(self, conn: sa.Connection, emitted: list[Event], now: int) -> None:
        if not emitted:
            return
        rows = [
            self.store._event_row(ev, False, now, applied=True, origin="emit") for ev in emitted
        ]
        self.store.insert_rows(conn, t.events, rows, skip_conflicts=True)

    def _insert_records(self, conn: sa.Connection, outcomes: Sequence[Outcome], now: int) -> None:
        rows: list[dict[str, Any]] = []
        for o in outcomes:
            message_ids: dict[tuple[Any, ...], str] = {
                (m.instance, m.step, m.at): m.message_id for m in o.messages
            }
            for rec in o.records:
                mid = None
                if rec["kind"] == "message" and rec.get("status") == "sent":
                    mid = message_ids.get((rec["instance"], rec.get("step"), rec["at"]))
                rows.append(
                    {
                        "at": rec["at"],
                        "customer_id": rec["customer_id"],
                        "journey": rec["journey"],
                        "instance": rec["instance"],
                        "kind": rec["kind"],
                        "message_id": mid,
                        "body": orjson.dumps(rec),
                        "created_at": now,
                    }
                )
        self.store.insert_rows(conn, t.records, rows)

    def _upsert_instances(
        self, conn: sa.Connection, outcomes: Sequence[Outcome], versions: Mapping[str, str]
    ) -> None:
        """Instances as the relational view sees them: every instance in the new state, plus
        those that entered and were pruned within the batch (from their records)."""
        rows: dict[str, dict[str, Any]] = {}
        for o in outcomes:
            for rec in o.records:
                iid = rec["instance"]
                if rec["kind"] == "enter":
                    rows[iid] = {
                        "instance_id": iid,
                        "customer_id": o.customer_id,
                        "journey": rec["journey"],
                        "version": versions.get(rec["journey"], ""),
                        "key": rec.get("key"),
                        "status": "active",
                        "step": None,
                        "wake_at": None,
                        "entered_at": rec["at"],
                        "ended_at": None,
                        "exit_reason": None,
                        "variant": rec.get("variant"),
                    }
            if o.state_obj is not None:
                for inst in o.state_obj.instances:
                    rows[inst.id] = {
                        "instance_id": inst.id,
                        "customer_id": o.customer_id,
                        "journey": inst.journey,
                        "version": inst.version,
                        "key": inst.key,
                        "status": inst.status,
                        "step": inst.step,
                        "wake_at": inst.wake_at,
                        "entered_at": inst.entered_at,
                        "ended_at": inst.ended_at,
                        "exit_reason": inst.exit_reason,
                        "variant": inst.variant,
                    }
        self.store.insert_rows(
            conn,
            t.instances,
            list(rows.values()),
            upsert=(
                "instance_id",
                ("status", "step", "wake_at", "ended_at", "exit_reason", "variant"),
            ),
        )
        ends: list[dict[str, Any]] = []
        for o in outcomes:
            kept = {i.id for i in o.state_obj.instances} if o.state_obj is not None else set()
            ends.extend(
                {"iid": rec["instance"], "ended": rec["at"], "reason": rec.get("reason")}
                for rec in o.records
                if rec["kind"] == "exit" and rec["instance"] not in kept
            )
        if ends:
            i = t.instances
            conn.execute(
                i.update()
                .where(i.c.instance_id == sa.bindparam("iid"))
                .values(
                    status="ended",
                    step=None,
                    wake_at=None,
                    ended_at=sa.bindparam("ended"),
                    exit_reason=sa.bindparam("reason"),
                ),
                ends,
            )

    def _insert_outbox(
        self, conn: sa.Connection, messages: list[OutboundMessage], now: int
    ) -> None:
        if not messages:
            return
        rows = [
            {
                "message_id": m.message_id,
                "customer_id": m.customer_id,
                "journey": m.journey,
                "step": m.step,
                "channel": m.channel,
                "at": m.at,
                "to_address": m.to,
                "payload": message_payload(m),
                "status": "queued",
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
            }
            for m in messages
        ]
        self.store.insert_rows(conn, t.outbox, rows, skip_conflicts=True)

    def _lower_due(self, conn: sa.Connection, outcomes: Sequence[Outcome]) -> None:
        """Input that arrived while the batch was in hand (an event ingested, a cron tick
        materialised by another worker) makes its customer due again."""
        e, k = t.events, t.ticks
        due = {o.customer_id: o.due_at for o in outcomes}
        lower: dict[str, int] = {}
        for part in chunks(list(due)):
            for cid, at in conn.execute(
                sa.select(e.c.customer_id, sa.func.min(e.c.at))
                .where(e.c.applied.is_(False))
                .where(e.c.customer_id.in_(part))
                .group_by(e.c.customer_id)
            ):
                if due[cid] is None or at < due[cid]:
                    lower[cid] = at
        marks = [o.ticks_until for o in outcomes if o.ticks_until is not None]
        if marks:
            ticks = [
                r.at
                for r in conn.execute(
                    sa.select(k.c.at).where(k.c.at > min(marks)).distinct().order_by(k.c.at)
                )
            ]
            for o in outcomes:
                after = max(o.ticks_until or -NEVER, o.known_since or NEVER)
                nxt = next((at for at in ticks if at > after), None)
                current = lower.get(o.customer_id, o.due_at)
                if nxt is not None and (current is None or nxt < current):
                    lower[o.customer_id] = nxt
        if lower:
            c = t.customers
            conn.execute(
                c.update()
                .where(c.c.customer_id == sa.bindparam("cid"))
                .values(due_at=sa.bindparam("due")),
                [{"cid": cid, "due": at} for cid, at in lower.items()],
            )

    def mark_error(self, owner: str, customer_id: str, error: str) -> None:
        """A customer whose state cannot be read: keep it, stop claiming it, say why."""
        c = t.customers
        with self.engine.begin() as conn:
            conn.execute(
                c.update()
                .where(c.c.customer_id == customer_id)
                .where(c.c.lease_owner == owner)
                .values(due_at=None, lease_owner=None, lease_until=None, error=error[:2000])
            )


def message_payload(m: OutboundMessage) -> bytes:
    """An outbound message as the outbox stores it (every field, for the channel)."""
    return orjson.dumps(
        {
            "message_id": m.message_id,
            "customer_id": m.customer_id,
            "instance": m.instance,
            "journey": m.journey,
            "step": m.step,
            "channel": m.channel,
            "at": m.at,
            "to": m.to,
            "transactional": m.transactional,
            "subject": m.subject,
            "html": m.html,
            "text": m.text,
            "sendgrid_template_id": m.sendgrid_template_id,
            "template_data": m.template_data,
            "method": m.method,
            "json": m.json,
            "headers": [list(h) for h in m.headers],
        },
        option=orjson.OPT_NON_STR_KEYS,
    )


def message_from_payload(payload: bytes) -> OutboundMessage:
    doc = orjson.loads(payload)
    doc["headers"] = tuple(tuple(h) for h in doc.get("headers") or ())
    return OutboundMessage(**doc)


# Applied events with their effective time, for the history functions (§9).
_APPLIED_AT = (
    t.events.update()
    .where(t.events.c.seq == sa.bindparam("s"))
    .values(applied=True, applied_at=sa.bindparam("a"))
)
