"""Several real daemons on one database, journey reloads, and a clean stop mid-work.

- PostgreSQL scale-out: three ``postflow run`` processes share one database (``FOR UPDATE
  SKIP LOCKED`` claims, leases); every message is decided once and delivered once, and the
  history equals ``simulate``'s.
- Two daemons on one SQLite file: they share the work (one writer at a time) or one refuses
  to start naming the reason; never a doubled message.
- A changed journey is picked up by a running daemon (file change and SIGHUP); a broken one is
  refused with located errors while the daemon keeps running; an instance in flight keeps the
  version it entered with.
- SIGTERM in the middle of a backlog finishes the batch in hand, exits 0, leaves no lease
  behind, and a restart finishes the work without loss.
- Two fixed bugs stay covered: a dispatcher claim that outlives its lease must not be sent
  again by another worker; APScheduler's warnings must not break ``log.format: json``.
"""

from __future__ import annotations

import collections
import json
import os
import re
import signal
import time

from databases import fresh_pg_url
from helpers import (
    DAY,
    HOUR,
    ONBOARDING,
    REVIEW,
    Project,
    SlowProvider,
    assert_events_applied_once,
    assert_history_equals_simulate,
    backlog,
    check_delivery,
    iso,
    message_records,
    wait_until_drained,
    wall_us,
    workload,
)

SCALE_N = int(os.environ.get("POSTFLOW_ACCEPTANCE_N", "10000"))
SQLITE_N = 2000
LOCATED = re.compile(r"[^\s\"]+\.yaml:\d+:\d+: error: ")


def _report(capsys, text: str) -> None:
    with capsys.disabled():
        print(f"\n{text}")


def _check_shared_run(project: Project, evts, simulated: list[str]) -> tuple[list[str], int]:
    """The checks of a multi-worker run: history == simulate, each message record once per
    (instance, step), each outbox message delivered exactly once (no crash, no duplicate
    window), every event applied once. Returns the history and the message count."""
    history = project.history()
    assert_history_equals_simulate(history, simulated)
    steps = collections.Counter((r["instance"], r["step"]) for r in message_records(history))
    doubled = {k: n for k, n in steps.items() if n > 1}
    assert not doubled, f"message records decided twice: {list(doubled.items())[:5]}"
    assert_events_applied_once(project, [e["id"] for e in evts])
    delivery = check_delivery(project)
    assert not delivery.duplicated, (
        f"{delivery.extra_copies} duplicate deliveries without any crash: "
        f"{list(delivery.duplicated.items())[:5]}"
    )
    sent = [r for r in message_records(history) if r["status"] == "sent"]
    assert len(delivery.outbox) == len(sent)
    return history, len(delivery.outbox)


def test_three_daemons_share_one_postgresql_database(tmp_path, capsys):
    started = time.monotonic()
    with fresh_pg_url("pf_accept") as url:
        project = Project(
            tmp_path,
            db_url=url,
            batch=200,
            lease="30s",
            journeys={"onboarding": ONBOARDING, "review": REVIEW},
        )
        project.upgrade()
        now = wall_us()
        evts = workload(SCALE_N, first_us=now - 20 * DAY, last_us=now - 10 * DAY, seed=7)
        events_path = project.events_file(evts)
        project.ingest(events_path)
        ingested = time.monotonic()

        daemons = [project.daemon(f"w{i}").start() for i in range(3)]
        try:
            drained_in = wait_until_drained(project, daemons, timeout=600)
            codes = [d.terminate() for d in daemons]
        finally:
            for d in daemons:
                d.ensure_stopped()
        assert codes == [0, 0, 0], "\n".join(d.stderr()[-2000:] for d in daemons)

        simulated = project.simulate(events_path, now - 2 * DAY)
        history, messages = _check_shared_run(project, evts, simulated)

        # More than one worker did work: each daemon logs the customers it advanced.
        advanced = [d.advanced() for d in daemons]
        assert sum(advanced) >= SCALE_N, advanced
        assert sum(1 for n in advanced if n) >= 2, f"one worker did everything: {advanced}"
        errors = [m for d in daemons for m in d.messages(None) if "job failed" in m]
        assert not errors, errors[:5]
    _report(
        capsys,
        f"[pg scale-out] N={SCALE_N}: ingest {ingested - started:.1f}s, 3 daemons drained in "
        f"{drained_in:.1f}s, {len(history)} records, {messages} messages; customers advanced "
        f"per daemon {advanced}; total {time.monotonic() - started:.1f}s",
    )


def test_two_daemons_on_one_sqlite_file_never_double_a_message(tmp_path, capsys):
    project = Project(tmp_path, batch=200, lease="30s")
    now = wall_us()
    evts = workload(SQLITE_N, first_us=now - 20 * DAY, last_us=now - 10 * DAY, seed=11)
    events_path = project.events_file(evts)
    project.ingest(events_path)

    a, b = project.daemon("a").start(), project.daemon("b").start()
    try:
        time.sleep(3)
        refused = [d for d in (a, b) if not d.alive()]
        if refused:
            # Allowed: one daemon refuses, with exit 1 and a reason, and the other does it all.
            assert len(refused) == 1, [d.stderr() for d in refused]
            assert refused[0].wait() == 1 and refused[0].stderr().strip()
        running = [d for d in (a, b) if d.alive()]
        drained_in = wait_until_drained(project, running)
        codes = [d.terminate() for d in running]
    finally:
        a.ensure_stopped()
        b.ensure_stopped()
    assert codes == [0] * len(running), "\n".join(d.stderr()[-2000:] for d in running)

    simulated = project.simulate(events_path, now - 2 * DAY)
    history, messages = _check_shared_run(project, evts, simulated)
    advanced = [a.advanced(), b.advanced()]
    errors = [m for d in (a, b) for m in d.messages(None) if "job failed" in m]
    assert not errors, errors[:5]
    _report(
        capsys,
        f"[sqlite two daemons] N={SQLITE_N}: drained in {drained_in:.1f}s, {len(history)} "
        f"records, {messages} messages; refused: {[d.name for d in refused]}; customers "
        f"advanced per daemon {advanced}",
    )


FOLLOWUP = """\
id: followup
trigger:
  event: order_placed
steps:
  - id: hello
    email:
      subject: "Your order {{{{ trigger.data.order_id }}}}"
      body: "Thanks for shopping with us."
  - id: pause
    wait: 2d
  - id: second
    email:
      subject: "{subject}"
      body: "Tell us how it went."
"""
OLD_SUBJECT = "How is it going?"
NEW_SUBJECT = "How is your order so far, {{ customer.first_name }}?"
BROKEN = FOLLOWUP.format(subject=OLD_SUBJECT).replace("  - id: pause\n", "  - id: pause\n  [oops\n")


def edit(path, text: str) -> None:
    """Replace a journey file the way editors do (write aside, rename over), so the daemon's
    watcher never sees a half-written file."""
    aside = path.parent.parent / f".{path.name}.tmp"
    aside.write_text(text, encoding="utf-8")
    os.replace(aside, path)


def _order(customer: str, at: int) -> dict:
    return {
        "id": f"order-{customer}",
        "type": "order_placed",
        "customer_id": customer,
        "at": iso(at),
        "customer": {"email": f"{customer}@example.com", "first_name": "Ann"},
        "data": {"order_id": f"o-{customer}", "total": 20},
    }


def test_a_running_daemon_reloads_changed_journeys_and_pins_instances_in_flight(tmp_path):
    project = Project(tmp_path, journeys={})
    path = project.journey("followup", FOLLOWUP.format(subject=OLD_SUBJECT))
    now = wall_us()
    project.ingest(project.events_file([_order("c_old", now - HOUR)], "old.jsonl"))

    daemon = project.daemon().start()
    try:
        daemon.wait_for_log(lambda m: " started: " in m)
        wait_until_drained(project, [daemon], timeout=60)
        [(old_version, step)] = project.query(
            "SELECT version, step FROM instances WHERE customer_id = 'c_old'"
        )
        assert step == "pause"  # waiting 2d: not due before the real now + 2d - 1h

        # 1. The file changes: housekeeping notices and reloads.
        seen = len(daemon.messages(-1))
        edit(path, FOLLOWUP.format(subject=NEW_SUBJECT))
        reloaded = daemon.wait_for_log(lambda m: m.startswith("journeys reloaded"), since=seen)
        assert "followup@" in reloaded and old_version not in reloaded

        # 2. SIGHUP reloads too (the same files: the same version).
        seen = len(daemon.messages(-1))
        daemon.signal(signal.SIGHUP)
        again = daemon.wait_for_log(lambda m: m.startswith("journeys reloaded"), since=seen)
        assert again == reloaded

        # 3. A syntax error: the daemon keeps running the last good versions, says where.
        seen = len(daemon.messages(-1))
        edit(path, BROKEN)
        daemon.wait_for_log(lambda m: m.startswith("journeys not reloaded"), since=seen)
        located = daemon.wait_for_log(lambda m: LOCATED.search(m) is not None, since=seen)
        assert "followup.yaml:" in located, located
        time.sleep(1.5)
        assert daemon.alive()

        # 4. Fixed again: reloaded; a new customer enters with the new version.
        seen = len(daemon.messages(-1))
        edit(path, FOLLOWUP.format(subject=NEW_SUBJECT))
        assert daemon.wait_for_log(lambda m: m.startswith("journeys reloaded"), since=seen) == (
            reloaded
        )
        project.ingest(project.events_file([_order("c_new", now - HOUR // 2)], "new.jsonl"))
        wait_until_drained(project, [daemon], timeout=60)
        assert project.query("SELECT count(*) FROM instances WHERE customer_id = 'c_new'") == [(1,)]
        daemon.signal(signal.SIGINT)  # SIGINT stops it like SIGTERM: batch finished, exit 0
        assert daemon.wait(60) == 0, daemon.stderr()
        assert any(m.startswith("received SIGINT") for m in daemon.messages(-1))
    finally:
        daemon.ensure_stopped()

    versions = dict(project.query("SELECT customer_id, version FROM instances"))
    assert versions["c_old"] == old_version
    assert versions["c_new"] != old_version and versions["c_new"] in reloaded

    # A daemon cannot start with a broken journeys directory: exit 1, located errors.
    path.write_text(BROKEN, encoding="utf-8")
    broken = project.daemon("broken").start()
    assert broken.wait(60) == 1
    assert LOCATED.search(broken.stderr()), broken.stderr()
    path.write_text(FOLLOWUP.format(subject=NEW_SUBJECT), encoding="utf-8")

    # Three days later: the old instance sends the OLD subject (pinned), the new the new one.
    project.run_once(now + 3 * DAY)
    seconds = {
        r["customer_id"]: r
        for r in message_records(project.history())
        if r["step"] == "second" and r["status"] == "sent"
    }
    assert seconds["c_old"]["subject"] == OLD_SUBJECT
    assert seconds["c_new"]["subject"] == "How is your order so far, Ann?"
    subjects = {
        m["customer_id"]: m["subject"] for m in project.sent_lines() if m["step"] == "second"
    }
    assert subjects == {"c_old": OLD_SUBJECT, "c_new": "How is your order so far, Ann?"}


def test_sigterm_mid_backlog_exits_0_and_a_restart_continues_without_loss(tmp_path, capsys):
    n = 3000
    project = Project(tmp_path, batch=200, lease="60s")
    now = wall_us()
    evts = workload(n, first_us=now - 20 * DAY, last_us=now - 10 * DAY, seed=5)
    events_path = project.events_file(evts)
    project.ingest(events_path)

    daemon = project.daemon()
    try:
        daemon.start()
        deadline = time.monotonic() + 120
        while project.query("SELECT count(*) FROM records")[0][0] == 0:
            assert daemon.alive(), daemon.stderr()
            assert time.monotonic() < deadline, "no record written in 120s"
            time.sleep(0.05)
        stopping = time.monotonic()
        assert daemon.terminate(timeout=120) == 0, daemon.stderr()
        stop_seconds = time.monotonic() - stopping
        messages = daemon.messages(-1)
        assert any(m.startswith("received SIGTERM") for m in messages), messages[-5:]
        assert messages[-1] == "postflow daemon stopped"

        # The batch in hand was finished and written back: no lease is left for a restart to
        # wait out, and the work was really interrupted.
        assert project.query("SELECT count(*) FROM customers WHERE lease_owner IS NOT NULL") == [
            (0,)
        ]
        assert project.query(
            "SELECT count(*) FROM outbox WHERE status = 'queued' AND lease_owner IS NOT NULL"
        ) == [(0,)]
        left = backlog(project.db_url, wall_us())
        assert left.customers_due > 0, f"the daemon finished everything before SIGTERM: {left}"

        daemon.start()
        drained_in = wait_until_drained(project, [daemon])
        assert daemon.terminate() == 0, daemon.stderr()
    finally:
        daemon.ensure_stopped()

    simulated = project.simulate(events_path, now - 2 * DAY)
    history, messages_sent = _check_shared_run(project, evts, simulated)
    lines = [json.loads(line) for line in history]
    assert {r["customer_id"] for r in lines} == {e["customer_id"] for e in evts}
    _report(
        capsys,
        f"[sigterm] stopped in {stop_seconds:.1f}s with {left.customers_due}/{n} customers and "
        f"{left.outbox_queued} messages left; restart drained in {drained_in:.1f}s; "
        f"{messages_sent} messages, none doubled",
    )


def test_a_delivery_slower_than_the_lease_is_not_sent_again_by_another_worker(tmp_path, capsys):
    """Two daemons share a database; the provider is slow (a FIFO read at ~100 lines/s), so
    delivering one claim of the dispatcher (up to 500 messages) outlives the 1s lease. The
    first worker must renew its lease as it goes (and never send a message whose lease it
    lost), so the second worker, started meanwhile, sends nothing twice. Before the fix it
    re-claimed the expired rows and both sent them: duplicates without any crash."""
    project = Project(tmp_path, batch=200, lease="1s", journeys={"onboarding": ONBOARDING})
    provider = SlowProvider(project.outbox)
    now = wall_us()
    evts = workload(250, first_us=now - 20 * DAY, last_us=now - 10 * DAY, seed=3, review_share=0)
    project.ingest(project.events_file(evts))

    first, second = project.daemon("first"), project.daemon("second")
    try:
        first.start()
        deadline = time.monotonic() + 60
        while not project.query(
            "SELECT count(*) FROM outbox WHERE status = 'queued' AND lease_owner IS NOT NULL"
        )[0][0]:
            assert first.alive(), first.stderr()
            assert time.monotonic() < deadline, "the first daemon never claimed the outbox"
            time.sleep(0.05)
        time.sleep(2.5)  # the first claim has outlived its 1s lease: it must have renewed it
        assert project.query("SELECT count(*) FROM outbox WHERE status = 'queued'")[0][0]
        second.start()  # a second worker while the first is still delivering its claim
        second.wait_for_log(lambda m: " started: " in m)
        time.sleep(2)
        provider.fast()
        wait_until_drained(project, [first, second], timeout=120)
        codes = [first.terminate(), second.terminate()]
    finally:
        first.ensure_stopped()
        second.ensure_stopped()
        provider.close()
    assert codes == [0, 0]
    outbox = dict(project.query("SELECT message_id, status FROM outbox"))
    assert set(outbox.values()) == {"sent"}
    counts = collections.Counter(m["message_id"] for m in provider.lines())
    assert set(counts) == set(outbox)
    doubled = {m: n for m, n in counts.items() if n > 1}
    _report(
        capsys,
        f"[slow provider, lease 1s] {len(outbox)} messages, {sum(counts.values())} deliveries, "
        f"{len(doubled)} sent twice or more",
    )
    assert not doubled, f"{len(doubled)} message(s) delivered twice without any crash"


def test_json_log_format_writes_only_json_lines_even_when_a_job_overruns(tmp_path):
    """A job that takes longer than the poll interval (here: the SQLite write lock held by
    someone else for a few seconds, as a big ``postflow ingest`` does) makes APScheduler skip
    its next run and say so. Every line on stderr must still be a JSON object."""
    import sqlite3

    project = Project(tmp_path)
    now = wall_us()
    project.ingest(project.events_file(workload(20, first_us=now - 3 * DAY, last_us=now, seed=2)))
    daemon = project.daemon().start()
    try:
        daemon.wait_for_log(lambda m: " started: " in m)
        wait_until_drained(project, [daemon], timeout=60)
        lock = sqlite3.connect(project.sqlite_path, isolation_level=None, timeout=30)
        lock.execute("BEGIN IMMEDIATE")
        time.sleep(3.5)  # the sweep and the dispatcher wait for the lock (busy_timeout 30s)
        lock.execute("COMMIT")
        lock.close()
        time.sleep(1.5)
        assert daemon.terminate() == 0, daemon.stderr()
    finally:
        daemon.ensure_stopped()
    bad = [line for line in daemon.stderr().splitlines() if line.strip() and not _is_json(line)]
    assert not bad, f"{len(bad)} non-JSON line(s) on stderr, e.g. {bad[:2]}"


def _is_json(line: str) -> bool:
    try:
        doc = json.loads(line)
    except ValueError:
        return False
    return isinstance(doc, dict) and {"ts", "level", "message"} <= set(doc)
