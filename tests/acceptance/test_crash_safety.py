"""Crash safety: the real daemon, SIGKILLed again and again, loses nothing and decides nothing
twice (DESIGN.md, "Transactional outbox").

A project with three journeys (an order thanks, a wait, a tip, a ``set`` and an ``emit``; a
``wait_for`` review with a timeout; a conditional one-off) and 3,000 customers whose events
all lie 20 to 10 days in the past, so every timer is already due when the daemon starts and
everything finishes before the real now. The daemon is killed with SIGKILL at random moments,
restarted each time, finally allowed to drain and stopped with SIGTERM. Then the database must
hold exactly what ``simulate`` computes over the same file, every ingested event applied once,
every message sent; the only duplicates allowed in the channel are deliveries in flight at a
kill (the documented window between the provider's acceptance and our commit).
"""

from __future__ import annotations

import os
import random
import time

from helpers import (
    DAY,
    Project,
    assert_events_applied_once,
    assert_history_equals_simulate,
    backlog,
    check_delivery,
    wait_until_drained,
    wall_us,
    workload,
)

from postflow.runtime.dispatcher import FLUSH_COUNT

SEED = int(os.environ.get("POSTFLOW_ACCEPTANCE_SEED", "20260301"))
CUSTOMERS = 3000
KILLS = 8
DISPATCH_BATCH = 500
"""The dispatcher's claim size (``runtime.dispatcher.Dispatcher.batch``): a loose upper bound
on the deliveries one dead process can have in flight."""
IN_FLIGHT = FLUSH_COUNT
"""Deliveries that may be re-sent after a kill: the dispatcher records deliveries in groups
of at most ``FLUSH_COUNT`` messages (or 100 ms), so a kill can leave up to one group sent but
not yet recorded (docs/runtime.md, the duplicate window)."""


def _lines(project: Project) -> int:
    return project.outbox.read_bytes().count(b"\n") if project.outbox.exists() else 0


def test_sigkill_at_random_moments_loses_nothing_and_doubles_no_record(tmp_path, capsys):
    rng = random.Random(SEED)
    project = Project(tmp_path, batch=200, poll="1s", lease="5s")
    now = wall_us()
    evts = workload(CUSTOMERS, first_us=now - 20 * DAY, last_us=now - 10 * DAY, seed=SEED)
    events_path = project.events_file(evts)
    project.ingest(events_path)
    assert backlog(project.db_url, wall_us()).customers_due == CUSTOMERS

    daemon = project.daemon()
    progress: list[tuple[float, int, int]] = []
    marks: list[int] = []  # lines in the channel's file when each killed process was gone
    for _ in range(KILLS):
        daemon.start()
        # Anchor the kill on the "started" line: the interpreter's start-up takes about a
        # second on this machine kind, and a kill before it would test nothing but start-up.
        daemon.wait_for_log(lambda m: " started: " in m, timeout=60)
        delay = rng.uniform(0.1, 1.5)
        time.sleep(delay)
        assert daemon.kill() == -9
        marks.append(_lines(project))
        left = backlog(project.db_url, wall_us())
        progress.append((round(delay, 2), left.customers_due, left.outbox_queued))

    daemon.start()
    drained_in = wait_until_drained(project, [daemon])
    assert daemon.terminate() == 0, daemon.stderr()
    assert daemon.messages(-1)[-1] == "postflow daemon stopped"

    # The kills must have interrupted real work, or this test proves nothing.
    assert any(0 < due < CUSTOMERS or queued for _, due, queued in progress), progress

    until = now - 2 * DAY  # after the last timer (order + 3d <= now - 7d), before the real now
    history = project.history()
    simulated = project.simulate(events_path, until)
    assert_history_equals_simulate(history, simulated)
    assert_events_applied_once(project, [e["id"] for e in evts])

    delivery = check_delivery(project)
    assert len(delivery.outbox) == sum(
        1 for line in simulated if '"kind":"message"' in line and '"status":"sent"' in line
    )
    # Duplicates are allowed only in the documented window: a loose bound on their number ...
    assert delivery.extra_copies <= KILLS * DISPATCH_BATCH, delivery.duplicated
    # ... and each duplicate's first copy was among the last lines written before a kill.
    first_seen: dict[str, int] = {}
    for index, line in enumerate(project.sent_lines()):
        first_seen.setdefault(line["message_id"], index)
    stray = {
        m: first_seen[m]
        for m in delivery.duplicated
        if not any(mark - IN_FLIGHT <= first_seen[m] < mark for mark in marks)
    }
    assert not stray, f"duplicates not in flight at any kill (line index): {stray}, kills {marks}"
    with capsys.disabled():
        print(
            f"\n[crash-safety] {CUSTOMERS} customers, {len(history)} records, "
            f"{len(delivery.outbox)} messages; {KILLS} SIGKILLs (delay, due left, queued left): "
            f"{progress}; final drain {drained_in:.1f}s; duplicate deliveries: "
            f"{delivery.extra_copies} {sorted(delivery.duplicated)}"
        )
