"""Real providers under the real daemon: ``postflow run`` as a subprocess, the official
SendGrid and Twilio SDKs, and loopback fakes of both APIs (``tests/fakes``) that check every
request and answer as scripted.

- SIGKILL while sends are in flight: after a restart every message reaches the provider, and
  the only ones sent twice are those that were in flight at the kill (at most
  ``dispatch.concurrency`` of them, the documented duplicate window).
- A provider outage (Twilio answering 500) is retried with backoff, survives a restart with
  its attempt counts, never holds journeys back (the email after a wait still goes out on
  time), and ends with each SMS sent once when the provider recovers.
- Retries run out after ``dispatch.max_attempts``: the record says ``failed`` /
  ``provider_error`` with the provider's ``"<code> <message>"``, after exactly that many
  requests.
- Without credentials ``auto`` prints to the console and calls no provider; a provider named
  explicitly without its credentials stops ``run --once`` and ``doctor`` with exit 1 naming
  the missing variable.
"""

from __future__ import annotations

import shutil
from typing import Any

from fakes import Fail, FakeSendGrid, FakeTwilio, Hang, Ok, Recorded
from helpers import REPO, US, iso, wait_until_drained, wall_us, whole_second
from provider_helpers import (
    SENDER,
    SMS_FROM,
    WAIT_TIMEOUT,
    ProviderProject,
    clear_script,
    counts,
    message_records,
    order_events,
    provider_env,
    sendgrid_ids,
    wait_for,
)

THANKS = """\
id: thanks
trigger:
  event: order_placed
steps:
  - id: thanks
    email:
      subject: "Thanks for order {{ trigger.data.order_id }}"
      body: "Hi {{ customer.first_name }}, we got your order."
      transactional: true
"""

TEXT_THEN_EMAIL = """\
id: confirm
trigger:
  event: order_placed
steps:
  - id: text
    sms:
      body: "Order {{ trigger.data.order_id }} confirmed."
      transactional: true
  - id: pause
    wait: 2s
  - id: followup
    email:
      subject: "About order {{ trigger.data.order_id }}"
      body: "Hi {{ customer.first_name }}, here is what happens next."
      transactional: true
"""

EMAIL = {"provider": "sendgrid", "from": SENDER}
SMS = {"provider": "twilio", "from": SMS_FROM}
OUTAGE = 100_000
"""Scripted failures for an outage: far more than the test can use up."""


def _sent_once(history: list[str], expected: int, channel: str | None = None) -> None:
    """``postflow history`` holds ``expected`` message records (of ``channel``), each
    ``sent`` and each (instance, step) once."""
    records = [r for r in message_records(history) if channel in (None, r["channel"])]
    assert len(records) == expected, records
    steps = counts(f"{r['instance']}/{r['step']}" for r in records)
    assert max(steps.values()) == 1, {k: n for k, n in steps.items() if n > 1}
    not_sent = [r for r in records if r["status"] != "sent"]
    assert not not_sent, not_sent[:5]


# -- 1. SIGKILL with sends in flight ---------------------------------------------------------------
CUSTOMERS = 40
CONCURRENCY = 2
BEFORE_HANG = 12


def _hanging(fake: FakeSendGrid, n: int) -> list[Recorded] | None:
    """The requests answered with a Hang, once there are ``n`` of them."""
    hung = [r for r in fake.requests if isinstance(r.answer, Hang)]
    return hung if len(hung) >= n else None


def test_sigkill_with_sends_in_flight_resends_only_those(tmp_path, db_url):
    """Guarantee: a crash never loses a message, and the only duplicates it can cause are
    the sends in flight when it happened (each acceptance is committed at once), so at
    most ``dispatch.concurrency`` customers get a second copy."""
    with FakeSendGrid() as sendgrid:
        project = ProviderProject(
            tmp_path,
            db_url=db_url,
            journeys={"thanks": THANKS},
            channels={"email": {**EMAIL, "timeout": "120s"}, "sms": {"provider": "console"}},
            dispatch={"concurrency": CONCURRENCY, "backoff": "1s", "max_backoff": "2s"},
            lease="2s",
            env=provider_env(sendgrid=sendgrid),
        )
        events = order_events(CUSTOMERS, wall_us() - 60 * US, phone=False)
        project.load(events)
        sendgrid.script(*[Ok()] * BEFORE_HANG, *[Hang(60)] * CONCURRENCY)

        daemon = project.daemon()
        try:
            daemon.start()
            hanging = wait_for(
                lambda: _hanging(sendgrid, CONCURRENCY),
                f"{CONCURRENCY} hanging SendGrid requests",
                daemons=[daemon],
            )
            assert daemon.kill() == -9
            clear_script(sendgrid)  # SendGrid answers Ok from now on
            # Every slot of the lane was waiting on a Hang: nothing else went out.
            before_kill = sendgrid.requests
            assert len(before_kill) == BEFORE_HANG + CONCURRENCY, before_kill
            hung_ids = set(sendgrid_ids(hanging))
            assert len(hung_ids) == CONCURRENCY
            queued = project.query("SELECT count(*) FROM outbox WHERE status = 'queued'")[0][0]
            assert queued == CUSTOMERS - BEFORE_HANG, "the kill did not interrupt the dispatch"

            daemon.start()
            wait_until_drained(project, [daemon])
            assert daemon.terminate() == 0, daemon.stderr()
        finally:
            daemon.ensure_stopped()

        outbox = project.outbox_rows("email")
        assert len(outbox) == CUSTOMERS
        assert {r["status"] for r in outbox.values()} == {"sent"}
        received = counts(sendgrid_ids(sendgrid.requests))
        assert set(received) == set(outbox), "a message never reached SendGrid"
        twice = {m for m, n in received.items() if n > 1}
        assert max(received.values()) <= 2, received
        assert twice == hung_ids, f"duplicates {twice} are not the in-flight sends {hung_ids}"
        assert len(twice) <= CONCURRENCY
        _sent_once(project.history(), CUSTOMERS)
        assert sendgrid.violations == []


# -- 2. An SMS outage ---------------------------------------------------------------------------
OUTAGE_CUSTOMERS = 12
"""More SMS than ``OUTAGE_STREAK × concurrency`` (8): a drain meets enough failures in a row
to take the Twilio lane out and defer the rest, which must not starve or lose any."""


def _attempts_never_drop(project: ProviderProject, floor: dict[str, int]) -> dict[str, int]:
    """The SMS rows' attempt counts now; fails at once if one fell below ``floor``."""
    now = {m: r["attempts"] for m, r in project.outbox_rows("sms").items()}
    dropped = {m: (floor[m], n) for m, n in now.items() if n < floor.get(m, 0)}
    assert not dropped, f"attempt counts went back (before, now): {dropped}"
    return now


def test_sms_outage_is_retried_across_a_restart_and_journeys_keep_going(tmp_path, db_url):
    """Guarantee: while a provider is down its messages are retried (attempts counted,
    the provider's error kept) without holding any journey back (the email after the wait
    goes out on time through the other provider); a restart keeps the attempt counts; when
    the provider recovers each message is sent exactly once."""
    with FakeSendGrid() as sendgrid, FakeTwilio() as twilio:
        project = ProviderProject(
            tmp_path,
            db_url=db_url,
            journeys={"confirm": TEXT_THEN_EMAIL},
            channels={"email": EMAIL, "sms": SMS},
            dispatch={
                "concurrency": 2,
                "backoff": "1s",
                "max_backoff": "2s",
                "max_attempts": 1000,
            },
            lease="2s",
            env=provider_env(sendgrid=sendgrid, twilio=twilio),
        )
        project.upgrade()
        twilio.script(*[Fail(500)] * OUTAGE)

        def sms_retried(minimum: int) -> dict[str, dict[str, Any]] | None:
            rows = project.outbox_rows("sms")
            done = len(rows) == OUTAGE_CUSTOMERS and all(
                r["status"] == "queued" and r["attempts"] >= minimum for r in rows.values()
            )
            return rows if done else None

        daemon = project.daemon()
        try:
            daemon.start()
            daemon.wait_for_log(lambda m: " started: " in m, timeout=WAIT_TIMEOUT)
            # The orders arrive while the daemon runs, so the 2s wait runs live.
            ordered_at = whole_second(wall_us())
            events = order_events(OUTAGE_CUSTOMERS, ordered_at)
            project.ingest(project.events_file(events))
            phones = {e["customer"]["phone"] for e in events}

            # The emails after the wait go out while every SMS is still failing ...
            wait_for(
                lambda: len(set(sendgrid_ids(sendgrid.sent))) == OUTAGE_CUSTOMERS,
                "the follow-up emails at SendGrid",
                daemons=[daemon],
            )
            # ... and every SMS is retried.
            rows = wait_for(lambda: sms_retried(2), "every SMS tried twice", daemons=[daemon])
            assert twilio.sent == [], "Twilio accepted a message during the outage"
            for row in rows.values():
                assert row["provider"] == "twilio" and row["error"].startswith("500 "), row
            history = project.history()
            emails = [r for r in message_records(history) if r["channel"] == "email"]
            assert {r["at"] for r in emails} == {iso(ordered_at + 2 * US)}, emails
            _sent_once(history, OUTAGE_CUSTOMERS, "email")

            # A clean restart in the middle of the outage: retries go on from where they
            # were (attempt counts never go back).
            assert daemon.terminate() == 0, daemon.stderr()
            at_stop = _attempts_never_drop(project, {})
            daemon.start()
            wait_for(
                lambda: all(
                    n > at_stop[m] for m, n in _attempts_never_drop(project, at_stop).items()
                ),
                "retries after the restart",
                daemons=[daemon],
            )
            assert twilio.sent == []

            # The provider recovers: every SMS goes out, once.
            clear_script(twilio)
            wait_until_drained(project, [daemon])
            _attempts_never_drop(project, at_stop)
            assert daemon.terminate() == 0, daemon.stderr()
        finally:
            daemon.ensure_stopped()

        delivered = counts(r.form["To"] for r in twilio.sent)
        assert set(delivered) == phones and set(delivered.values()) == {1}, delivered
        rows = project.outbox_rows("sms")
        assert {(r["status"], r["error"]) for r in rows.values()} == {("sent", None)}, rows
        assert {r["provider_id"] for r in rows.values()} == set(twilio.message_ids)
        # Every request Twilio got is an attempt on the row, and none went uncounted.
        requests = counts(r.form["To"] for r in twilio.requests)
        assert {r["to"]: r["attempts"] for r in rows.values()} == requests
        _sent_once(project.history(), 2 * OUTAGE_CUSTOMERS)
        emails = counts(sendgrid_ids(sendgrid.requests))
        assert emails == dict.fromkeys(project.outbox_rows("email"), 1), "an email sent twice"
        assert sendgrid.violations == [] and twilio.violations == []


# -- 3. Retries run out -------------------------------------------------------------------------
def test_retries_run_out_after_max_attempts(tmp_path, db_url):
    """Guarantee: a message the provider keeps refusing transiently is tried exactly
    ``dispatch.max_attempts`` times, then ``postflow history`` says ``failed`` with reason
    ``provider_error`` and the provider's ``"<code> <message>"``."""
    customers = 3
    with FakeSendGrid() as sendgrid:
        project = ProviderProject(
            tmp_path,
            journeys={"thanks": THANKS},
            channels={"email": EMAIL, "sms": {"provider": "console"}},
            dispatch={"max_attempts": 3, "backoff": "1s", "max_backoff": "1s", "concurrency": 2},
            db_url=db_url,
            env=provider_env(sendgrid=sendgrid),
        )
        sendgrid.script(*[Fail(500)] * OUTAGE)
        project.load(order_events(customers, wall_us() - 60 * US))
        daemon = project.daemon()
        try:
            daemon.start()
            wait_for(
                lambda: len(project.outbox_rows("email")) == customers,
                "the messages in the outbox",
                daemons=[daemon],
            )
            wait_until_drained(project, [daemon])
            assert daemon.terminate() == 0, daemon.stderr()
        finally:
            daemon.ensure_stopped()

        rows = project.outbox_rows("email")
        assert {(r["status"], r["attempts"]) for r in rows.values()} == {("failed", 3)}, rows
        assert counts(sendgrid_ids(sendgrid.requests)) == {m: 3 for m in rows}
        assert sendgrid.sent == []
        records = message_records(project.history())
        assert len(records) == customers
        for r in records:
            assert (r["status"], r["reason"]) == ("failed", "provider_error"), r
            assert r["error"] == "500 Internal Server Error", r
        assert sendgrid.violations == []


# -- 4. and 5. Choosing the provider ------------------------------------------------------------
def _bundled_project(root, env) -> ProviderProject:
    """A copy of the project ``postflow demo`` ships (its postflow.yaml, journeys,
    templates, catalog and example events), with the example events ingested."""
    project = ProviderProject(root, journeys={}, channels={}, env=env)
    for name in ("journeys", "templates", "examples"):
        shutil.copytree(REPO / name, root / name, dirs_exist_ok=True)
    for name in ("postflow.yaml", "catalog.yaml"):
        shutil.copy(REPO / name, root / name)
    project.upgrade()
    project.ingest(root / "examples" / "events.jsonl")
    return project


def test_no_credentials_prints_to_the_console_and_calls_no_provider(tmp_path):
    """Guarantee: a new project without credentials runs end to end and shows its messages
    on stdout; no request leaves for SendGrid or Twilio (even with their base URLs set)."""
    with FakeSendGrid() as sendgrid, FakeTwilio() as twilio:
        env = provider_env(sendgrid=sendgrid, twilio=twilio, credentials=False)
        project = _bundled_project(tmp_path, env)
        result = project.cli("run", "--once", "--now", "2027-06-01T00:00:00Z", *project.db_args())
        assert "── email → ann@example.com · order-confirmation/receipt" in result.stdout, result
        assert "── sms → +15555550100 · order-confirmation/receipt_sms" in result.stdout, result
        assert "Traceback" not in result.stderr, result
        sent = project.query("SELECT provider, count(*) FROM outbox GROUP BY provider")
        assert dict(sent).keys() == {"console"}, sent
        assert sendgrid.requests == [] and twilio.requests == []


def test_named_provider_without_credentials_stops_run_and_doctor(tmp_path):
    """Guarantee: ``provider: sendgrid`` without ``SENDGRID_API_KEY`` is a configuration
    error, caught before anything is sent: ``run --once`` and ``doctor`` exit 1 naming the
    variable, without a traceback."""
    with FakeSendGrid() as sendgrid:
        project = ProviderProject(
            tmp_path,
            journeys={"thanks": THANKS},
            channels={"email": EMAIL},
            env=provider_env(sendgrid=sendgrid, credentials=False),
        )
        project.load(order_events(3, wall_us() - 60 * US))

        run = project.cli(
            "run", "--once", "--journeys", str(project.journeys), *project.db_args(), check=False
        )
        assert run.code == 1, run
        assert "SENDGRID_API_KEY" in run.stderr, run
        assert "Traceback" not in run.stdout + run.stderr, run
        assert project.query("SELECT count(*) FROM outbox")[0][0] == 0

        doctor = project.cli(
            "doctor", "--journeys", str(project.journeys), *project.db_args(), check=False
        )
        assert doctor.code == 1, doctor
        assert "SENDGRID_API_KEY" in doctor.stdout + doctor.stderr, doctor
        assert "Traceback" not in doctor.stdout + doctor.stderr, doctor
        assert sendgrid.requests == []
