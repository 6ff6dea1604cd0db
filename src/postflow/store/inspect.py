"""Read-only questions about a running shop, for ``postflow status``: where customers are,
when the next timer fires, how much due work is waiting, and what went wrong lately."""

from __future__ import annotations

from typing import Any

import orjson
import sqlalchemy as sa

from postflow import durations
from postflow.store import schema as t
from postflow.store.sql import SqlStore

RECENT_ERRORS = 5


def _iso(us: int | None) -> str | None:
    return durations.format_instant(us) if us is not None else None


def status(store: SqlStore, now: int) -> dict[str, Any]:
    """Per journey: active instances by step, next wake, exits by reason, recent errors; and
    the backlog of due work at ``now``."""
    i, c, e, o, r, d = (t.instances, t.customers, t.events, t.outbox, t.records, t.deployments)
    journeys: dict[str, dict[str, Any]] = {}

    def entry(jid: str) -> dict[str, Any]:
        return journeys.setdefault(
            jid,
            {
                "journey": jid,
                "deployed_at": None,
                "active": 0,
                "steps": {},
                "next_wake": None,
                "exits": {},
                "errors": [],
            },
        )

    with store.engine.connect() as conn:
        for jid, at in conn.execute(sa.select(d.c.journey, d.c.deployed_at)):
            entry(jid)["deployed_at"] = _iso(at)
        for jid, step, n in conn.execute(
            sa.select(i.c.journey, i.c.step, sa.func.count())
            .where(i.c.status == "active")
            .group_by(i.c.journey, i.c.step)
        ):
            j = entry(jid)
            j["active"] += n
            j["steps"][step or "(entering)"] = n
        for jid, wake in conn.execute(
            sa.select(i.c.journey, sa.func.min(i.c.wake_at))
            .where(i.c.status == "active")
            .group_by(i.c.journey)
        ):
            entry(jid)["next_wake"] = _iso(wake)
        for jid, reason, n in conn.execute(
            sa.select(i.c.journey, i.c.exit_reason, sa.func.count())
            .where(i.c.status == "ended")
            .group_by(i.c.journey, i.c.exit_reason)
        ):
            entry(jid)["exits"][reason or "unknown"] = n
        for row in conn.execute(
            sa.select(r.c.journey, r.c.body)
            .where(r.c.kind == "exit")
            .where(r.c.body.like(b'%"reason":"error"%'))
            .order_by(r.c.id.desc())
            .limit(200)
        ):
            j = entry(row.journey)
            if len(j["errors"]) < RECENT_ERRORS:
                rec = orjson.loads(row.body)
                j["errors"].append(
                    {
                        "at": _iso(rec["at"]),
                        "customer_id": rec["customer_id"],
                        "instance": rec["instance"],
                        "error": rec.get("error"),
                    }
                )

        def count(query: Any) -> int:
            return int(conn.execute(query).scalar_one())

        backlog = {
            "customers_due": count(
                sa.select(sa.func.count()).select_from(c).where(c.c.due_at <= now)
            ),
            "events_pending": count(
                sa.select(sa.func.count())
                .select_from(e)
                .where(e.c.applied.is_(False))
                .where(e.c.at <= now)
            ),
            "events_future": count(
                sa.select(sa.func.count())
                .select_from(e)
                .where(e.c.applied.is_(False))
                .where(e.c.at > now)
            ),
            "outbox_queued": count(
                sa.select(sa.func.count()).select_from(o).where(o.c.status == "queued")
            ),
            "outbox_failed": count(
                sa.select(sa.func.count()).select_from(o).where(o.c.status == "failed")
            ),
            "customer_errors": count(
                sa.select(sa.func.count()).select_from(c).where(c.c.error.isnot(None))
            ),
        }
        customers = count(sa.select(sa.func.count()).select_from(c))
        next_due = conn.execute(sa.select(sa.func.min(c.c.due_at))).scalar()
    return {
        "now": _iso(now),
        "customers": customers,
        "next_due": _iso(next_due),
        "backlog": backlog,
        "journeys": [journeys[k] for k in sorted(journeys)],
    }
