"""The runtime's commands: ``ingest``, ``event``, ``run``, ``history``, ``status``, ``db``.

Thin, like the rest of the CLI: each parses its options, opens the store and calls the
library. Database and configuration problems leave as one line on stderr and exit 1 (2 for
usage), never a traceback.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
import orjson
import sqlalchemy as sa

from postflow import config, events
from postflow.cli import (
    CONFIG_OPTION,
    JOURNEYS_OPTION,
    journeys_dir_path,
    main,
    parse_time_option,
    reported,
)
from postflow.store import database
from postflow.store.sql import SqlStore, wall_us

DB_OPTION = click.option(
    "--db",
    "db_url",
    help="Database URL (default: postflow.yaml's database, else sqlite:///postflow.db).",
)


@contextmanager
def database_errors(url: str) -> Iterator[None]:
    """Database failures as one line and exit 1."""
    try:
        yield
    except database.DatabaseError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except sa.exc.SQLAlchemyError as exc:
        click.echo(f"error: {database.explain(exc, url)}", err=True)
        sys.exit(1)


@contextmanager
def opened_store(
    config_path: str | None, db_url: str | None, *, upgrade: bool | None = None
) -> Iterator[tuple[config.Settings, SqlStore]]:
    """Settings and an open store, with every failure reported in words."""
    from postflow.runtime.service import database_url

    with reported():
        settings = config.load_settings(config_path)
        url = database_url(settings, db_url)
        with database_errors(url):
            store = SqlStore.open(url, settings, upgrade=upgrade)
            try:
                yield settings, store
            finally:
                store.close()


@main.command("ingest")
@click.argument("source", type=click.Path(allow_dash=True))
@click.option(
    "--backfill",
    is_flag=True,
    help="History import: update profiles and purchase facts only; start, exit and resume nothing.",
)
@DB_OPTION
@JOURNEYS_OPTION
@CONFIG_OPTION
def ingest_command(
    source: str,
    backfill: bool,
    db_url: str | None,
    journeys_dir: str | None,
    config_path: str | None,
) -> None:
    """Store the events of a JSON Lines file (or - for standard input) in the database.

    The file is taken whole or not at all: any bad line stores nothing and every bad line is
    listed as FILE:LINE:COL: error: MESSAGE (exit 1). Events already ingested (same id) are
    counted as duplicates and ignored. Events without `at` get the time of ingestion. The
    daemon applies them when their time comes.

    \b
    Example:
      postflow ingest examples/events.jsonl
      cat orders.jsonl | postflow ingest -
      postflow ingest --backfill past-orders.jsonl
    """
    from postflow.ingest import ingest_file

    text = None
    name = source
    if source == "-":
        raw = sys.stdin.buffer.read()
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            click.echo(f"<stdin>:1:{exc.start + 1}: error: not UTF-8 text", err=True)
            sys.exit(1)
        name = "<stdin>"
    elif not Path(source).exists():
        click.echo(f"error: no such file or directory: {source}", err=True)
        sys.exit(2)
    with opened_store(config_path, db_url) as (_settings, store), reported():
        with _progress(name, text is None) as tick:
            result = ingest_file(store, name, backfill=backfill, text=text, progress=tick)
    kind = "backfilled" if backfill else "accepted"
    click.echo(f"{result.accepted} {kind}, {result.duplicates} duplicates", err=True)


@contextmanager
def _progress(path: str, is_file: bool) -> Iterator[Any]:
    """A rich progress bar on a terminal (by bytes of the file), nothing otherwise."""
    if not (is_file and sys.stderr.isatty()):
        yield None
        return
    from rich.progress import Progress

    from postflow.ingest import file_lines_estimate

    total = file_lines_estimate(path)
    with Progress(transient=True) as progress:
        task = progress.add_task(f"ingesting {path}", total=total)

        def tick(lines: int) -> None:
            progress.update(task, completed=lines)

        yield tick


@main.command("event")
@click.argument("event_type")
@click.option("--customer", "customer_id", required=True, help="The customer id.")
@click.option("--data", "data", default=None, help="The event's data, as a JSON object.")
@click.option("--id", "event_id", default=None, help="Event id (ingesting one twice is a no-op).")
@click.option(
    "--at", "at", default=None, help="When it happened (default: now), with a UTC offset."
)
@DB_OPTION
@CONFIG_OPTION
def event_command(
    event_type: str,
    customer_id: str,
    data: str | None,
    event_id: str | None,
    at: str | None,
    db_url: str | None,
    config_path: str | None,
) -> None:
    """Store one event in the database.

    \b
    Example:
      postflow event order_placed --customer c_1 --data '{"order_id": "o_1", "total": 42}'
      postflow event review_submitted --customer c_1 --data '{"rating": 5}'
    """
    obj: dict[str, Any] = {"type": event_type, "customer_id": customer_id}
    if data is not None:
        try:
            obj["data"] = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise click.BadParameter(f"not JSON: {exc}", param_hint="--data") from None
    if event_id is not None:
        obj["id"] = event_id
    if at is not None:
        obj["at"] = at
    try:
        event = events.parse_event(obj, default_at=wall_us())
    except events.EventError as exc:
        field = f"{exc.field}: " if exc.field and exc.field not in exc.message else ""
        click.echo(f"error: bad event: {field}{exc.message}", err=True)
        sys.exit(1)
    with opened_store(config_path, db_url) as (_settings, store):
        result = store.ingest([event])
    click.echo(f"{result.accepted} accepted, {result.duplicates} duplicates", err=True)


@main.command("history")
@click.option("--customer", "customer_id", default=None, help="Only this customer's records.")
@click.option("--journey", "journey", default=None, help="Only this journey's records.")
@DB_OPTION
@CONFIG_OPTION
def history_command(
    customer_id: str | None, journey: str | None, db_url: str | None, config_path: str | None
) -> None:
    """Print the records of contract section 3 from the database, as JSON Lines.

    \b
    Example:
      postflow history --customer c_1
      postflow history --journey review-request | jq .
    """
    from postflow.simulate import write_records

    with opened_store(config_path, db_url) as (_settings, store):
        write_records(store.history(customer=customer_id, journey=journey), sys.stdout.buffer)


@main.command("status")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default=None,
    help="table (default on a terminal) or json.",
)
@DB_OPTION
@CONFIG_OPTION
def status_command(fmt: str | None, db_url: str | None, config_path: str | None) -> None:
    """Show, per journey, active instances by step, the next wake, exits and recent errors,
    and the backlog of due work.

    \b
    Example:
      postflow status
      postflow status --format json | jq .backlog
    """
    from postflow.store.inspect import status

    with opened_store(config_path, db_url) as (_settings, store):
        report = status(store, wall_us())
    if fmt is None:
        fmt = "table" if sys.stdout.isatty() else "json"
    if fmt == "json":
        click.echo(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
        return
    _print_status(report)


def _print_status(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"postflow status at {report['now']}")
    for column in ("journey", "active", "by step", "next wake", "exits", "recent errors"):
        table.add_column(column)
    for j in report["journeys"]:
        steps = ", ".join(f"{k}: {v}" for k, v in sorted(j["steps"].items()))
        exits = ", ".join(f"{k}: {v}" for k, v in sorted(j["exits"].items()))
        errors = "\n".join(f"{x['customer_id']}: {x['error']}" for x in j["errors"])
        table.add_row(j["journey"], str(j["active"]), steps, j["next_wake"] or "-", exits, errors)
    console.print(table)
    b = report["backlog"]
    console.print(
        f"{report['customers']} customer(s); due now: {b['customers_due']} customer(s), "
        f"{b['events_pending']} event(s); waiting: {b['events_future']} future event(s); "
        f"outbox: {b['outbox_queued']} queued, {b['outbox_failed']} failed; "
        f"customer errors: {b['customer_errors']}; next due: {report['next_due'] or '-'}"
    )


@main.group("db")
def db_group() -> None:
    """Database maintenance.

    \b
    Example:
      postflow db upgrade
      postflow db upgrade --db postgresql+psycopg://postflow@localhost/postflow
    """


@db_group.command("upgrade")
@DB_OPTION
@CONFIG_OPTION
def db_upgrade_command(db_url: str | None, config_path: str | None) -> None:
    """Create or upgrade the database schema (Alembic migrations).

    \b
    Example:
      postflow db upgrade --db postgresql+psycopg://postflow@localhost/postflow
    """
    from postflow.store import migrate

    with opened_store(config_path, db_url, upgrade=True) as (_settings, store):
        revision = migrate.current_revision(store.engine)
    click.echo(f"database {database.describe_url(store.url)} is at revision {revision}", err=True)


@main.command("run")
@click.option("--once", is_flag=True, help="Process everything due, dispatch, and exit.")
@click.option(
    "--now", "now", default=None, help="With --once: the time to process up to (inclusive)."
)
@click.option("--http", "http", default=None, metavar="HOST:PORT", help="Also serve the HTTP API.")
@DB_OPTION
@JOURNEYS_OPTION
@CONFIG_OPTION
def run_command(
    once: bool,
    now: str | None,
    http: str | None,
    db_url: str | None,
    journeys_dir: str | None,
    config_path: str | None,
) -> None:
    """Run the daemon: advance every customer through their journeys on time, and send.

    With --once: process everything due now (or at --now T), dispatch what was decided, and
    exit. Journeys with errors stop it from starting (exit 1, the located errors).
    SIGTERM/SIGINT finish the batch in hand and exit 0; SIGHUP reloads the journeys.

    \b
    Example:
      postflow run --http 127.0.0.1:8025
      postflow run --once --now 2027-06-10T00:00:00Z
    """
    if now is not None and not once:
        raise click.UsageError("--now goes with --once")
    if http is not None and once:
        raise click.UsageError("--http serves the daemon: it does not go with --once")
    now_us = parse_time_option(now, "--now")
    from postflow.channels.base import ChannelConfigError
    from postflow.channels.registry import build_channels, close_channels
    from postflow.runtime import service

    with opened_store(config_path, db_url) as (settings, store), reported():
        directory = journeys_dir_path(settings, journeys_dir)
        machines = service.load_machines(settings, directory)
        try:
            channels = build_channels(settings)
        except ChannelConfigError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
        if once:
            runtime = service.Runtime(store, settings, machines, channels)
            try:
                swept, sent = runtime.run_once(now_us if now_us is not None else wall_us())
            finally:
                runtime.dispatcher.close()
                close_channels(channels.values())
            click.echo(
                f"{swept.customers} customer(s) advanced, {swept.records} record(s), "
                f"{sent.sent} message(s) sent, {sent.retried + sent.deferred} to retry, "
                f"{sent.failed} failed",
                err=True,
            )
            return
        from postflow.runtime.daemon import Daemon

        daemon = Daemon(
            store, settings, directory, channels, http=http, journeys_option=journeys_dir
        )
        sys.exit(daemon.run())


MAX_DEMO_DAYS = 36_500
"""A century of simulated time: beyond it dates leave the range events may carry."""


@main.command("demo")
@click.option(
    "--speed",
    type=float,
    default=129_600.0,
    show_default=True,
    help="Simulated seconds per real second (129600: a day and a half per second).",
)
@click.option(
    "--days",
    type=float,
    default=None,
    help="Simulated days to play from the start (default: the stream's two months; "
    "with --events, up to a week after its last event).",
)
@click.option(
    "--customers",
    type=click.IntRange(min=1),
    default=40,
    show_default=True,
    help="Customers in the generated stream.",
)
@click.option(
    "--seed", type=int, default=7, show_default=True, help="Seed of the generated stream."
)
@click.option(
    "--events",
    "events_path",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Play this events file (JSON Lines) instead of the generated stream.",
)
@click.option(
    "--history",
    "history_path",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="With --events: past events to import first, as `ingest --backfill` does.",
)
@click.option(
    "--plain",
    is_flag=True,
    help="One line per message instead of the live view (the default when stdout is not "
    "a terminal).",
)
@JOURNEYS_OPTION
@CONFIG_OPTION
def demo_command(
    speed: float,
    days: float | None,
    customers: int,
    seed: int,
    events_path: str | None,
    history_path: str | None,
    plain: bool,
    journeys_dir: str | None,
    config_path: str | None,
) -> None:
    """Watch journeys play out over two months of a small shop: a few dozen customers
    across time zones placing first and repeat orders, shipments and deliveries, reviews,
    NPS and CSAT answers, a refund, a cancellation, a lapsed customer.

    It runs the real daemon on a temporary SQLite file with a fast clock, and shows the
    messages as they go out, the counts per journey and the skipped messages with their
    reasons; a summary per journey at the end. Nothing is sent anywhere. By default it
    plays the bundled journeys; --config (and --journeys) play a project's own. Ctrl-C
    stops early, with the summary so far.

    \b
    Example:
      postflow demo
      postflow demo --speed 345600 --customers 80 --seed 3   # four days per second
      postflow demo --plain --speed 1e9 | grep skipped
      postflow demo --events examples/events.jsonl
      postflow demo --config my-shop/postflow.yaml   # your own journeys
    """
    from postflow.runtime.demo import run_demo

    if not (math.isfinite(speed) and speed > 0):
        raise click.UsageError("--speed must be a positive number")
    if days is not None and not (math.isfinite(days) and 0 < days <= MAX_DEMO_DAYS):
        raise click.UsageError(f"--days must be a positive number of at most {MAX_DEMO_DAYS:,}")
    if history_path is not None and events_path is None:
        raise click.UsageError("--history goes with --events")
    with database_errors("sqlite:///demo.db"), reported():
        run_demo(
            config_path=config_path,
            journeys_dir=journeys_dir,
            events_file=events_path,
            history_file=history_path,
            customers=customers,
            seed=seed,
            speed=speed,
            days=days,
            live=False if plain else None,
        )
