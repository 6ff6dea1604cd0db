"""``postflow init``: scaffold a shop's own project from the journey library.

Thin over :mod:`postflow.scaffold`. On a terminal with no journeys named, it shows the library
as a numbered list and asks; anywhere else (CI, scripts) the choice must be given with
``--all`` or ``--journey``, because a prompt there would hang or read garbage. Exit status:
0 created, 1 files in the way (nothing written) or an unwritable target, 2 usage.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn

import click

from postflow import scaffold
from postflow.bundled import bundled_project
from postflow.cli import main


def _interactive() -> bool:
    """Whether a person can answer a prompt (tests replace this to reach the chooser)."""
    return sys.stdin.isatty()


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


@main.command("init")
@click.argument("directory", default=".", type=click.Path(file_okay=False))
@click.option("--all", "take_all", is_flag=True, help="Copy every journey of the library.")
@click.option(
    "--journey",
    "journey_ids",
    multiple=True,
    metavar="ID",
    help="Copy this journey (repeatable); the journeys it needs come with it.",
)
@click.option("--force", is_flag=True, help="Overwrite files that exist already.")
@click.option("--list", "show_list", is_flag=True, help="List the library's journeys and exit.")
def init_command(
    directory: str, take_all: bool, journey_ids: tuple[str, ...], force: bool, show_list: bool
) -> None:
    """Create a project in DIRECTORY (default: here) from the journey library.

    It gets postflow.yaml, catalog.yaml, the chosen journeys with their tests and templates
    (and every library journey they need), example events, a README, a .gitignore and a CI
    workflow (.github/workflows/postflow.yml) running `postflow validate` and `postflow test`.
    Without --all or --journey, a terminal shows the library and asks. Existing files are
    never overwritten without --force: then nothing is written and the exit status is 1.

    \b
    Example:
      postflow init my-shop --all
      postflow init my-shop --journey review-request --journey replenishment-reminder
      postflow init --list
    """
    try:
        source = bundled_project()
    except FileNotFoundError as exc:
        _fail(str(exc), 1)
    entries = scaffold.library(source)
    if show_list:
        for line in scaffold.listing(entries):
            click.echo(line)
        return
    if not entries:
        _fail(f"the journey library in {source / 'journeys'} has no journeys", 1)
    if take_all and journey_ids:
        raise click.UsageError("give --all or --journey, not both")
    chosen: list[str] | None
    if take_all:
        chosen = None
    elif journey_ids:
        chosen = list(journey_ids)
    elif _interactive():
        chosen = scaffold.choose(
            entries, lambda question: click.prompt(question, default="all"), click.echo
        )
    else:
        raise click.UsageError(
            "no terminal to ask on: choose the journeys with --all or --journey ID "
            "(postflow init --list shows them)"
        )
    target = Path(directory)
    try:
        plan = scaffold.plan(target, chosen, source)
    except scaffold.UnknownJourney as exc:
        _fail(str(exc), 2)
    except scaffold.ScaffoldError as exc:
        _fail(str(exc), 1)
    try:
        written = scaffold.write(plan, force=force)
    except scaffold.ExistingFiles as exc:
        click.echo("error: these files exist already (--force overwrites them):", err=True)
        for path in exc.paths:
            click.echo(f"  {path}", err=True)
        _fail("nothing was written", 1)
    except (scaffold.ScaffoldError, OSError) as exc:
        _fail(str(exc), 1)
    _report(target, plan, written)


def _report(target: Path, plan: scaffold.Plan, written: list[Path]) -> None:
    click.echo(f"Created a postflow project in {target} with {len(plan.journeys)} journey(s):")
    for jid in plan.journeys:
        needed = plan.added.get(jid)
        click.echo(f"  {jid}" + (f" (needed by {', '.join(needed)})" if needed else ""))
    click.echo("Files:")
    for path in written:
        click.echo(f"  {path}")
    if plan.untested:
        click.echo(
            f"warning: no tests in the library for {', '.join(plan.untested)}: write some"
            " (journeys/NAME.test.yaml); `postflow test` fails when it finds no test file",
            err=True,
        )
    click.echo("Next:")
    if target.resolve() != Path.cwd().resolve():
        click.echo(f"  cd {target}")
    click.echo("  postflow validate")
    click.echo("  postflow test")
    if any(f.path == scaffold.EVENTS for f in plan.files):
        click.echo(f"  postflow simulate --events {scaffold.EVENTS}")
