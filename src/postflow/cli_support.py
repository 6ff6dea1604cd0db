"""Support commands: ``suppress``, ``unsuppress`` and ``doctor``.

Thin over :mod:`postflow.suppression` and :mod:`postflow.doctor`; problems leave as one
line on stderr with exit 1 (2 for usage), never a traceback.
"""

from __future__ import annotations

import sys

import click

from postflow.cli import CONFIG_OPTION, JOURNEYS_OPTION, main, parse_time_option
from postflow.cli_runtime import DB_OPTION, opened_store
from postflow.store.sql import wall_us
from postflow.suppression import REASONS

AT_OPTION = click.option(
    "--at", "at", default=None, help="When it takes effect (default: now), with a UTC offset."
)
CUSTOMER_OPTION = click.option(
    "--customer",
    "customer_id",
    default=None,
    help="File the event under this customer (default: the last one written to there).",
)


def _change(
    address: str,
    suppressed: bool,
    reason: str,
    customer_id: str | None,
    at: str | None,
    db_url: str | None,
    config_path: str | None,
) -> None:
    from postflow.suppression import AddressError, change

    at_us = parse_time_option(at, "--at")
    with opened_store(config_path, db_url) as (_settings, store):
        try:
            done = change(
                store,
                address,
                suppressed=suppressed,
                reason=reason,
                customer_id=customer_id,
                at=at_us if at_us is not None else wall_us(),
            )
        except AddressError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
    verb = f"suppressed ({reason})" if suppressed else "unsuppressed"
    click.echo(f"{done.address} {verb}, filed under customer {done.customer_id}", err=True)


@main.command("suppress")
@click.argument("address")
@click.option(
    "--reason",
    type=click.Choice(REASONS),
    default="manual",
    show_default=True,
    help="unsubscribe and group_unsubscribe block marketing only; the others block everything.",
)
@CUSTOMER_OPTION
@AT_OPTION
@DB_OPTION
@CONFIG_OPTION
def suppress_command(
    address: str,
    reason: str,
    customer_id: str | None,
    at: str | None,
    db_url: str | None,
    config_path: str | None,
) -> None:
    """Stop messages to an email address or phone number (raises address_suppressed).

    \b
    Example:
      postflow suppress ann@example.com
      postflow suppress +15555550100 --reason stop
      postflow suppress bob@example.com --reason unsubscribe
    """
    _change(address, True, reason, customer_id, at, db_url, config_path)


@main.command("unsuppress")
@click.argument("address")
@CUSTOMER_OPTION
@AT_OPTION
@DB_OPTION
@CONFIG_OPTION
def unsuppress_command(
    address: str,
    customer_id: str | None,
    at: str | None,
    db_url: str | None,
    config_path: str | None,
) -> None:
    """Lift every suppression of an address (raises address_unsuppressed).

    \b
    Example:
      postflow unsuppress ann@example.com
    """
    _change(address, False, "manual", customer_id, at, db_url, config_path)


@main.command("doctor")
@DB_OPTION
@JOURNEYS_OPTION
@CONFIG_OPTION
def doctor_command(db_url: str | None, journeys_dir: str | None, config_path: str | None) -> None:
    """Check the configuration, journeys, channels, credentials and database, sending
    nothing. Exit 1 when something would stop `postflow run` or break a webhook.

    \b
    Example:
      postflow doctor
      SENDGRID_API_KEY=... postflow doctor --config prod/postflow.yaml
    """
    from postflow.doctor import diagnose

    findings = diagnose(config_path, db_url, journeys_dir)
    width = max(len(f.topic) for f in findings)
    for f in findings:
        click.echo(f"{f.level:<5} {f.topic:<{width}}  {f.text}")
    failed = sum(f.level == "fail" for f in findings)
    if failed:
        click.echo(f"{failed} problem(s)", err=True)
        sys.exit(1)
