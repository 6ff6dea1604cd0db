"""The outbox's SQL: claiming queued messages for delivery and recording each attempt.

A message enters the outbox in the same transaction as the decision that made it (the
sweep's write-back), so a crash never loses one and never decides one twice. The dispatcher
claims queued rows with a lease (``FOR UPDATE SKIP LOCKED`` on PostgreSQL), hands each to
its channel, and records the outcome. The only duplicate window is a crash between the
provider's acceptance and this commit: the provider then holds our ``message_id`` and the
row is sent again after its lease expires (docs/runtime.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa

from postflow.effects import OutboundMessage
from postflow.simulate import FIELD_ORDER
from postflow.store import schema as t
from postflow.store.batches import message_from_payload
from postflow.store.sql import SqlStore, chunks, held_by, wall_us


@dataclass(frozen=True)
class SentRef:
    """A message as provider callbacks need it: whose it was and where it went."""

    message_id: str
    customer_id: str
    journey: str
    step: str
    to: str | None
    provider_id: str | None
    delivery_status: str | None = None


@dataclass(frozen=True)
class Queued:
    message: OutboundMessage
    attempts: int


class Outbox:
    def __init__(self, store: SqlStore) -> None:
        self.store = store
        self.engine = store.engine

    def claim(self, owner: str, limit: int, lease_us: int) -> list[Queued]:
        """Lease up to ``limit`` queued messages whose next attempt is due, oldest first."""
        o = t.outbox
        now = wall_us()
        with self.engine.begin() as conn:
            rows = conn.execute(
                sa.select(o.c.message_id, o.c.payload, o.c.attempts)
                .where(o.c.status == "queued")
                .where(o.c.next_attempt_at <= now)
                .where(sa.or_(o.c.lease_until.is_(None), o.c.lease_until < now))
                .order_by(o.c.next_attempt_at, o.c.at, o.c.message_id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            ).all()
            for part in chunks([r.message_id for r in rows]):
                conn.execute(
                    o.update()
                    .where(o.c.message_id.in_(part))
                    .values(lease_owner=owner, lease_until=now + lease_us)
                )
        return [Queued(message_from_payload(r.payload), r.attempts) for r in rows]

    def renew(self, owner: str, message_ids: list[str], lease_us: int) -> set[str]:
        """Extend this worker's lease on the given messages; returns those it still holds (a
        message whose lease ran out may have been claimed by another worker: never send it)."""
        o = t.outbox
        now = wall_us()
        held: set[str] = set()
        with self.engine.begin() as conn:
            for part in chunks(message_ids):
                conn.execute(
                    o.update()
                    .where(o.c.message_id.in_(part))
                    .where(o.c.lease_owner == owner)
                    .where(o.c.lease_until > now)
                    .where(o.c.status == "queued")
                    .values(lease_until=now + lease_us)
                )
                held.update(
                    conn.execute(
                        sa.select(o.c.message_id)
                        .where(o.c.message_id.in_(part))
                        .where(o.c.lease_owner == owner)
                        .where(o.c.lease_until > now)
                    ).scalars()
                )
        return held

    def release(self, owner: str, message_ids: list[str]) -> None:
        """Give back leases on messages this worker will not send (it is stopping)."""
        o = t.outbox
        with self.engine.begin() as conn:
            for part in chunks(message_ids):
                conn.execute(
                    o.update()
                    .where(o.c.message_id.in_(part))
                    .where(o.c.lease_owner == owner)
                    .values(lease_owner=None, lease_until=None)
                )

    def sent(self, owner: str, deliveries: list[tuple[str, str, str | None]]) -> list[str]:
        """Record deliveries ``(message_id, provider, provider_id)`` in one transaction.
        Returns the ids this worker no longer held (its lease had run out, so the send may
        be a duplicate: the caller logs them); their rows are left to the new holder."""
        if not deliveries:
            return []
        o = t.outbox
        now = wall_us()
        ids = [d[0] for d in deliveries]
        with self.engine.begin() as conn:
            held = held_by(conn, o.c.message_id, ids, owner)
            rows = [
                {"mid": mid, "provider": provider, "pid": pid, "now": now}
                for mid, provider, pid in deliveries
                if mid in held
            ]
            if rows:
                conn.execute(_SENT, rows)
        return [mid for mid in ids if mid not in held]

    def retry(self, owner: str, message_id: str, provider: str, error: str, at: int) -> None:
        o = t.outbox
        with self.engine.begin() as conn:
            conn.execute(
                o.update()
                .where(o.c.message_id == message_id)
                .where(o.c.lease_owner == owner)
                .values(
                    attempts=o.c.attempts + 1,
                    provider=provider,
                    error=error,
                    next_attempt_at=at,
                    lease_owner=None,
                    lease_until=None,
                )
            )

    def defer(self, owner: str, message_id: str, at: int) -> None:
        """Put a claimed message back for later without counting an attempt: its provider
        is down and it was not tried (the dispatcher's outage guard)."""
        o = t.outbox
        with self.engine.begin() as conn:
            conn.execute(
                o.update()
                .where(o.c.message_id == message_id)
                .where(o.c.lease_owner == owner)
                .values(next_attempt_at=at, lease_owner=None, lease_until=None)
            )

    def failed(self, owner: str, message_id: str, provider: str, error: str) -> None:
        """A delivery that cannot succeed: the outbox row and the message's record both say
        ``failed``/``provider_error`` (contract section 3: retries do not change the record,
        the final failure does)."""
        o, r = t.outbox, t.records
        with self.engine.begin() as conn:
            done = conn.execute(
                o.update()
                .where(o.c.message_id == message_id)
                .where(o.c.lease_owner == owner)
                .values(
                    status="failed",
                    attempts=o.c.attempts + 1,
                    provider=provider,
                    error=error,
                    lease_owner=None,
                    lease_until=None,
                )
            )
            if not done.rowcount:
                return  # another worker holds it now: its outcome stands
            for rid, body in conn.execute(
                sa.select(r.c.id, r.c.body).where(r.c.message_id == message_id)
            ).all():
                rec = orjson.loads(body)
                rec["status"] = "failed"
                rec["reason"] = "provider_error"
                rec["error"] = error
                ordered = {k: rec[k] for k in FIELD_ORDER if k in rec}
                ordered.update({k: v for k, v in rec.items() if k not in ordered})
                conn.execute(r.update().where(r.c.id == rid).values(body=orjson.dumps(ordered)))

    def refs(self, message_ids: Sequence[str]) -> dict[str, SentRef]:
        """What the outbox knows of these messages (the ids providers echo back)."""
        return self._refs(t.outbox.c.message_id, message_ids)

    def by_provider_id(self, provider_ids: Sequence[str], provider: str) -> dict[str, SentRef]:
        """Provider id (a Twilio SID, a SendGrid X-Message-Id) -> the message ``provider``
        sent (ids of different providers, a webhook receiver's request ids, may collide)."""
        found = self._refs(t.outbox.c.provider_id, provider_ids, provider)
        return {ref.provider_id or "": ref for ref in found.values()}

    def _refs(
        self, key: sa.Column[Any], values: Sequence[str], provider: str | None = None
    ) -> dict[str, SentRef]:
        o = t.outbox
        out: dict[str, SentRef] = {}
        with self.engine.connect() as conn:
            for part in chunks(sorted(set(values))):
                for row in conn.execute(
                    sa.select(
                        o.c.message_id,
                        o.c.customer_id,
                        o.c.journey,
                        o.c.step,
                        o.c.to_address,
                        o.c.provider_id,
                        o.c.delivery_status,
                    )
                    .where(key.in_(part))
                    .where(sa.true() if provider is None else o.c.provider == provider)
                ):
                    out[row.message_id] = SentRef(*row)
        return out

    def owners(self, addresses: Sequence[str]) -> dict[str, str]:
        """Address -> the customer we last wrote to there: whom an inbound SMS, or a
        suppression that names only an address, is filed under."""
        o = t.outbox
        out: dict[str, str] = {}
        with self.engine.connect() as conn:
            for address in sorted(set(addresses)):
                cid = conn.execute(
                    sa.select(o.c.customer_id)
                    .where(o.c.to_address == address)
                    .order_by(o.c.created_at.desc(), o.c.message_id.desc())
                    .limit(1)
                ).scalar()
                if cid is not None:
                    out[address] = cid
        return out

    def track(self, updates: Sequence[tuple[str, str, int]]) -> int:
        """Record providers' delivery reports ``(message_id, status, at_us)``. The caller
        has ordered them (callbacks arrive out of order; see http/webhooks.py). Returns how
        many rows changed."""
        o = t.outbox
        changed = 0
        with self.engine.begin() as conn:
            for mid, status, at in updates:
                changed += conn.execute(
                    o.update()
                    .where(o.c.message_id == mid)
                    .values(delivery_status=status, delivery_at=at)
                ).rowcount
        return changed

    def pending(self) -> int:
        o = t.outbox
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    sa.select(sa.func.count()).select_from(o).where(o.c.status == "queued")
                ).scalar_one()
            )


# Built once: the dispatcher records every delivery with it (an executemany per flush).
_SENT = (
    t.outbox.update()
    .where(t.outbox.c.message_id == sa.bindparam("mid"))
    .values(
        status="sent",
        attempts=t.outbox.c.attempts + 1,
        provider=sa.bindparam("provider"),
        provider_id=sa.bindparam("pid"),
        sent_at=sa.bindparam("now"),
        lease_owner=None,
        lease_until=None,
        error=None,
    )
)
