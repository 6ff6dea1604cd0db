"""The ``postflow`` command line: thin click commands over the library.

Each command parses its arguments, calls the library and formats the result. Library errors
arrive as located problems and leave as ``FILE:LINE:COL: error: MESSAGE`` lines on stderr with
a non-zero exit (1 for bad input, 2 for usage): never a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from postflow import (
    __version__,
    config,
    durations,
    engine,
    journey_tests,
    project,
    simulate,
)
from postflow.problems import Problem, ProblemsError

CONFIG_OPTION = click.option(
    "--config", "config_path", type=click.Path(dir_okay=False), help="postflow.yaml to read."
)
JOURNEYS_OPTION = click.option(
    "--journeys", "journeys_dir", type=click.Path(), help="Directory of journey files."
)


def print_problems(problems: list[Problem]) -> None:
    for problem in sorted(problems):
        click.echo(str(problem), err=True)


@contextmanager
def reported() -> Iterator[None]:
    """Turn library errors into printed problems and exit codes."""
    try:
        yield
    except ProblemsError as exc:
        print_problems(exc.problems)
        sys.exit(1)
    except project.MissingPath as exc:
        click.echo(f"error: no such file or directory: {exc}", err=True)
        sys.exit(2)


def parse_time_option(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    try:
        return durations.parse_instant(value)
    except durations.DurationError as exc:
        raise click.BadParameter(str(exc), param_hint=name) from None


def build_world(settings: config.Settings, journeys_option: str | None) -> engine.World:
    directory = journeys_dir_path(settings, journeys_option)
    if not directory.exists():
        raise project.MissingPath(f"{directory} (the journeys directory)")
    machines = project.require_journeys([directory], settings.templates)
    return engine.World.build(machines, settings)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="postflow")
def main() -> None:
    """postflow: post-purchase customer journeys as code.

    \b
    Quick start:
      postflow validate                       # check every journey in ./journeys
      postflow simulate --events examples/events.jsonl
      postflow test                           # run journeys/*.test.yaml and tests/*.test.yaml
    """


@main.command("validate")
@click.argument("paths", nargs=-1, type=click.Path())
@JOURNEYS_OPTION
@CONFIG_OPTION
def validate_command(
    paths: tuple[str, ...], journeys_dir: str | None, config_path: str | None
) -> None:
    """Check journey files: schema, expressions, templates, durations, cron, time zones,
    step references and loops.

    PATHS are journey files or directories (default: the configured journeys directory); a
    journey test file (*.test.yaml) named explicitly is checked against the test-file schema.
    Each problem prints as FILE:LINE:COL: error: MESSAGE (or warning:). Exit status: 0 clean
    (warnings alone included), 1 problems, 2 usage or a missing PATH.

    \b
    Example:
      postflow validate journeys/
      postflow validate journeys/review-request.yaml
    """
    with reported():
        settings = config.load_settings(config_path)
        targets = [Path(p) for p in paths] or [journeys_dir_path(settings, journeys_dir)]
        for target in targets:
            if not target.exists():
                raise project.MissingPath(str(target))
        loaded = project.load_journeys([t for t in targets if t.exists()], settings.templates)
        found = list(loaded.problems)
        tests = [t for t in targets if t.is_file() and project.is_test_file(t)]
        for test_file in tests:  # named explicitly: checked as a test file, not a journey
            found.extend(journey_tests.check_file(test_file, config_path, journeys_dir))
        print_problems(found)
        errors = sum(1 for p in found if p.is_error)
        warnings = len(found) - errors
        files = f"{len(loaded.files)} journey file(s)"
        if tests:
            files += f", {len(tests)} test file(s)"
        summary = f"{files}, {errors} error(s), {warnings} warning(s)"
        click.echo(summary, err=True)
        if errors:
            sys.exit(1)


@main.command("simulate")
@click.option(
    "--events", "events_path", required=True, type=click.Path(), help="JSON Lines events."
)
@JOURNEYS_OPTION
@CONFIG_OPTION
@click.option(
    "--until", "until", help="Simulate up to this time (inclusive), e.g. 2027-06-10T00:00:00Z."
)
def simulate_command(
    events_path: str, journeys_dir: str | None, config_path: str | None, until: str | None
) -> None:
    """Run journeys over an events file in virtual time and print the records (JSON Lines).

    Every event needs an `at` with a UTC offset. Without --until, cron ticks fire up to the
    last event and other timers until none is due (at most five years after the last event).
    Output is deterministic: the same files give the same bytes. No provider is called.

    \b
    Example:
      postflow simulate --events examples/events.jsonl --journeys journeys
      postflow simulate --events examples/events.jsonl --until 2027-03-05T00:00:00Z
    """
    until_us = parse_time_option(until, "--until")
    with reported():
        settings = config.load_settings(config_path)
        world = build_world(settings, journeys_dir)
        if not Path(events_path).exists():
            raise project.MissingPath(events_path)
        if Path(events_path).is_dir():
            raise click.UsageError(f"--events {events_path} is a directory, not an events file")
        sim = simulate.Simulation(world)
        sim.ingest_file(events_path)
        simulate.write_records(sim.stream(until_us), sys.stdout.buffer)


@main.command("test")
@click.argument("paths", nargs=-1, type=click.Path())
@JOURNEYS_OPTION
@CONFIG_OPTION
def test_command(paths: tuple[str, ...], journeys_dir: str | None, config_path: str | None) -> None:
    """Run journey test files (*.test.yaml) and print `N passed, N failed`.

    With no PATHS, runs every *.test.yaml under journeys/ and tests/. Each case feeds its
    events through `simulate` and checks the records against `expect` (an ordered
    subsequence, matched on the fields given). Exit status: 0 all passed, 1 a case failed or
    a test file is malformed, 2 usage.

    \b
    Example:
      postflow test
      postflow test journeys/review-request.test.yaml
    """
    with reported():
        settings = config.load_settings(config_path)
        if journeys_dir and not Path(journeys_dir).is_dir():
            raise project.MissingPath(f"{journeys_dir} (the journeys directory)")
        if paths:
            targets = [Path(p) for p in paths]
        else:
            targets = [
                d
                for d in (journeys_dir_path(settings, journeys_dir), settings.base_dir / "tests")
                if d.is_dir()
            ]
        files = journey_tests.find_test_files(targets)
        passed = failed = malformed = 0
        problems: list[Problem] = []
        for file in files:
            if not project.is_test_file(file):
                message = "not a journey test file (test files are named *.test.yaml)"
                problems.append(Problem(str(file), 1, 1, "error", message))
                malformed += 1
                continue
            try:
                results = journey_tests.run_file(file, config_path, journeys_dir)
            except ProblemsError as exc:
                problems.extend(exc.problems)
                malformed += 1
                continue
            for result in results:
                if result.passed:
                    passed += 1
                    click.echo(f"PASS {result.file}: {result.name}")
                else:
                    failed += 1
                    click.echo(f"FAIL {result.file}: {result.name}")
                    for line in result.detail:
                        click.echo(f"  {line}")
        print_problems(problems)
        if not files:
            # Nothing to run is a mistake in the command, not a pass: a CI job pointed at the
            # wrong directory must not go green.
            where = ", ".join(str(t) for t in targets) or "journeys/ and tests/"
            click.echo(f"error: no journey test files (*.test.yaml) found in {where}", err=True)
            sys.exit(2)
        if malformed:
            click.echo(f"{malformed} test file(s) could not run: see the errors above")
        click.echo(f"{passed} passed, {failed} failed")
        if failed or problems:
            sys.exit(1)


def journeys_dir_path(settings: config.Settings, option: str | None) -> Path:
    return Path(option) if option else settings.journeys


@main.command("graph")
@click.argument("journey")
@click.option(
    "--format", "fmt", type=click.Choice(["mermaid", "dot"]), default="mermaid", show_default=True
)
@JOURNEYS_OPTION
@CONFIG_OPTION
def graph_command(
    journey: str, fmt: str, journeys_dir: str | None, config_path: str | None
) -> None:
    """Print a journey's compiled state machine as a Mermaid or Graphviz DOT diagram.

    JOURNEY is a journey id (looked up in the journeys directory) or a journey file.

    \b
    Example:
      postflow graph review-request > review-request.mmd
      postflow graph review-request --format dot | dot -Tsvg > review-request.svg
    """
    from postflow import graph

    with reported():
        settings = config.load_settings(config_path)
        as_file = Path(journey)
        if as_file.suffix in project.JOURNEY_SUFFIXES and as_file.is_file():
            machines = project.require_journeys([as_file], settings.templates)
            machine = next(iter(machines.values()))
        else:
            machines = project.require_journeys(
                [d for d in [journeys_dir_path(settings, journeys_dir)] if d.exists()],
                settings.templates,
            )
            if journey not in machines:
                known = ", ".join(sorted(machines)) or "none"
                click.echo(f"error: unknown journey '{journey}' (known: {known})", err=True)
                sys.exit(2)
            machine = machines[journey]
    click.echo(graph.mermaid(machine) if fmt == "mermaid" else graph.dot(machine), nl=False)


if __name__ == "__main__":  # pragma: no cover
    main()

# The runtime commands register themselves on `main`.
from postflow import cli_init, cli_runtime, cli_support  # noqa: E402,F401
