"""``postflow init``: a new project validates and passes its tests as created, and never
overwrites a file without ``--force``.

The library in ``journeys/`` grows over time, so the tests against it name no journey: they
take whatever is there. Dependencies are tested on a small library written here, where the
emitter, the consumer and the test-file dependency are known.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from postflow import cli_init, scaffold
from postflow.cli import main


def clean_env() -> dict[str, str]:
    """The environment without POSTFLOW_* settings: a new project stands on its own files."""
    return {k: v for k, v in os.environ.items() if not k.startswith("POSTFLOW_")}


def postflow(cwd: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "postflow", *args],
        cwd=cwd,
        env=clean_env(),
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        timeout=600,
    )


def ci_commands(root: Path) -> list[list[str]]:
    """The `postflow ...` commands of the generated workflow, in order."""
    workflow = yaml.safe_load((root / scaffold.WORKFLOW).read_text(encoding="utf-8"))
    commands = []
    for job in workflow["jobs"].values():
        for step in job["steps"]:
            run = step.get("run", "")
            if run.startswith("postflow "):
                commands.append(shlex.split(run)[1:])
    return commands


def run_ci(root: Path) -> int:
    """Run the workflow's postflow commands from inside the project, as CI does; returns the
    number of test cases that passed (they must all pass)."""
    commands = ci_commands(root)
    assert [c[0] for c in commands] == ["validate", "test"]
    passed = -1
    for command in commands:
        done = postflow(root, *command)
        assert done.returncode == 0, (command, done.stdout, done.stderr)
        if command[0] == "test":
            last = done.stdout.strip().splitlines()[-1]
            passed = int(last.split()[0])
            assert last == f"{passed} passed, 0 failed"
    return passed


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    return {
        p.relative_to(root).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# --------------------------------------------------------------------------- a small library


def write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")


@pytest.fixture
def small_library(tmp_path: Path) -> Path:
    """Four journeys: `fanout` emits `item_bought`, which triggers `thanks`; `pair`'s test
    runs it alongside `receipt`; `receipt` stands alone."""
    root = tmp_path / "library"
    write(root, "postflow.yaml", "database: sqlite:////elsewhere/library.db\ntimezone: UTC\n")
    write(root, "catalog.yaml", "TEA-1: {name: Green tea, category: tea}\n")
    write(
        root,
        "journeys/fanout.yaml",
        """\
        id: fanout
        name: Fan-out
        description: One event per order. The second sentence is not shown.
        trigger: {event: order_placed}
        steps:
          - id: out
            emit: {event: item_bought, data: {sku: "trigger.data.items[0].sku"}}
        """,
    )
    write(
        root,
        "journeys/fanout.test.yaml",
        """\
        journeys: [fanout]
        cases:
          - name: an order enters
            start: "2027-01-01T12:00:00Z"
            events:
              - {type: order_placed, customer_id: c1, data: {order_id: o1, items: [{sku: TEA-1}]}}
            expect:
              - {kind: enter, journey: fanout}
        """,
    )
    write(
        root,
        "journeys/thanks.yaml",
        """\
        id: thanks
        name: Thanks for the item
        description: Thanks for each item bought.
        trigger: {event: item_bought}
        steps:
          - id: mail
            email: {subject: "Enjoy your {{ trigger.data.sku }}", template: thanks, transactional: true}
        """,
    )
    write(
        root,
        "journeys/thanks.test.yaml",
        """\
        journeys: [fanout, thanks]
        cases:
          - name: an order is thanked per item
            start: "2027-01-01T12:00:00Z"
            customer: {email: ann@example.com}
            events:
              - {type: order_placed, customer_id: c1, data: {order_id: o1, items: [{sku: TEA-1}]}}
            expect:
              - {kind: message, journey: thanks, step: mail, status: sent, subject: "Enjoy your TEA-1"}
        """,
    )
    write(root, "templates/thanks.html", "<p>Hi {{ customer.first_name | default('there') }}</p>\n")
    write(root, "templates/thanks.txt", "Hi {{ customer.first_name | default('there') }}\n")
    write(root, "templates/unused.html", "<p>never copied</p>\n")
    write(
        root,
        "journeys/receipt.yaml",
        """\
        id: receipt
        name: Receipt
        trigger: {event: order_placed}
        steps:
          - id: text
            sms: {body: "Thanks for order {{ trigger.data.order_id }}", transactional: true}
        """,
    )
    write(
        root,
        "journeys/pair.yaml",
        """\
        id: pair
        name: Pair
        description: Waits for a review.
        trigger: {event: order_delivered}
        steps:
          - id: wait
            wait_for: {event: review_submitted, timeout: 7d}
        """,
    )
    write(
        root,
        "journeys/pair.test.yaml",
        """\
        journeys: [pair, receipt]
        cases:
          - name: both run
            start: "2027-01-01T12:00:00Z"
            customer: {phone: "+15555550100"}
            events:
              - {type: order_placed, customer_id: c1, data: {order_id: o1}}
              - {type: order_delivered, customer_id: c1, at: "+1d", data: {order_id: o1}}
            expect:
              - {kind: message, journey: receipt, status: sent}
              - {kind: enter, journey: pair}
        """,
    )
    events = [
        '{"type": "order_placed", "customer_id": "c1", "at": "2027-01-01T12:00:00Z", "customer": {"email": "ann@example.com"}, "data": {"order_id": "o1", "items": [{"sku": "TEA-1"}]}}',
        '{"type": "coupon_viewed", "customer_id": "c1", "at": "2027-01-02T12:00:00Z", "data": {}}',
        '{"type": "review_submitted", "customer_id": "c1", "at": "2027-01-03T12:00:00Z", "data": {"rating": 5}}',
    ]
    write(root, "examples/events.jsonl", "".join(e + "\n" for e in events))
    return root


def test_library_reads_names_tests_templates_and_dependencies(small_library: Path) -> None:
    entries = {e.id: e for e in scaffold.library(small_library)}
    assert sorted(entries) == ["fanout", "pair", "receipt", "thanks"]
    assert entries["fanout"].summary == "One event per order."
    assert entries["receipt"].summary == "" and entries["receipt"].test_file is None
    assert entries["thanks"].templates == ("templates/thanks.html", "templates/thanks.txt")
    assert entries["thanks"].test_file == "journeys/thanks.test.yaml"
    assert entries["thanks"].needs == ("fanout",)  # it is triggered by what fanout emits
    assert entries["pair"].needs == ("receipt",)  # its test runs receipt alongside
    assert entries["fanout"].needs == () and entries["receipt"].needs == ()


def test_library_skips_a_broken_file(small_library: Path) -> None:
    write(small_library, "journeys/broken.yaml", "id: [unclosed\n")
    write(small_library, "journeys/anonymous.yaml", "name: no id\n")
    assert "broken" not in {e.id for e in scaffold.library(small_library)}
    assert len(scaffold.library(small_library)) == 4


def test_plan_pulls_in_dependencies_and_only_what_they_use(small_library: Path) -> None:
    plan = scaffold.plan(Path("new"), ["thanks"], small_library)
    assert plan.journeys == ("fanout", "thanks")
    assert plan.added == {"fanout": ("thanks",)}
    files = {f.path: f.content for f in plan.files}
    assert {
        "postflow.yaml",
        "catalog.yaml",
        "journeys/fanout.yaml",
        "journeys/fanout.test.yaml",
        "journeys/thanks.yaml",
        "journeys/thanks.test.yaml",
        "templates/thanks.html",
        "templates/thanks.txt",
        "examples/events.jsonl",
        scaffold.WORKFLOW,
        "README.md",
        ".gitignore",
    } == set(files)
    assert b"database: sqlite:///postflow.db\n" in files["postflow.yaml"]
    assert b"elsewhere" not in files["postflow.yaml"]
    events = files["examples/events.jsonl"].decode().splitlines()
    assert [line.split('"type": "')[1].split('"')[0] for line in events] == ["order_placed"]
    assert b"postflow.db*" in files[".gitignore"] and b"outbox.jsonl" in files[".gitignore"]
    assert b"postflow validate" in files["README.md"]


def test_plan_of_everything_keeps_every_example_event(small_library: Path) -> None:
    plan = scaffold.plan(Path("new"), None, small_library)
    files = {f.path: f.content for f in plan.files}
    assert plan.journeys == ("fanout", "pair", "receipt", "thanks") and plan.added == {}
    assert files["examples/events.jsonl"] == (small_library / "examples/events.jsonl").read_bytes()
    assert "templates/unused.html" not in files


def test_a_subset_with_dependencies_validates_and_passes(
    small_library: Path, tmp_path: Path
) -> None:
    target = tmp_path / "shop"
    plan = scaffold.plan(target, ["thanks", "pair"], small_library)
    assert plan.journeys == ("fanout", "pair", "receipt", "thanks")
    assert plan.added == {"fanout": ("thanks",), "receipt": ("pair",)}
    scaffold.write(plan)
    assert run_ci(target) == 3


def test_unknown_journey_names_it_and_the_known_ones(small_library: Path) -> None:
    with pytest.raises(scaffold.UnknownJourney) as raised:
        scaffold.plan(Path("new"), ["thanks", "nope"], small_library)
    assert raised.value.unknown == ["nope"]
    assert "'nope'" in str(raised.value) and "fanout, pair, receipt, thanks" in str(raised.value)


def test_write_refuses_existing_files_and_writes_nothing(
    small_library: Path, tmp_path: Path
) -> None:
    target = tmp_path / "shop"
    (target / "journeys").mkdir(parents=True)
    (target / "journeys" / "thanks.yaml").write_text("mine\n")
    (target / "README.md").write_text("mine\n")
    plan = scaffold.plan(target, ["thanks"], small_library)
    with pytest.raises(scaffold.ExistingFiles) as raised:
        scaffold.write(plan)
    assert sorted(raised.value.paths) == [target / "README.md", target / "journeys/thanks.yaml"]
    assert sorted(p.name for p in target.rglob("*")) == ["README.md", "journeys", "thanks.yaml"]
    scaffold.write(plan, force=True)
    assert (target / "journeys" / "thanks.yaml").read_bytes() == (
        small_library / "journeys/thanks.yaml"
    ).read_bytes()


def test_parse_selection() -> None:
    assert scaffold.parse_selection("1,3,5-7", 8) == [0, 2, 4, 5, 6]
    assert scaffold.parse_selection(" 2 1 2 ", 3) == [1, 0]
    assert scaffold.parse_selection("ALL", 3) == [0, 1, 2]
    for bad in ("", "0", "4", "2-1", "x", "1-", "1,,z"):
        with pytest.raises(ValueError):
            scaffold.parse_selection(bad, 3)


def test_choose_asks_again_until_the_answer_makes_sense(small_library: Path) -> None:
    entries = scaffold.library(small_library)
    answers = iter(["9", "two", "1, 4"])
    questions: list[str] = []
    shown: list[str] = []

    def ask(question: str) -> str:
        questions.append(question)
        return next(answers)

    assert scaffold.choose(entries, ask, shown.append) == ["fanout", "thanks"]
    assert len(questions) == 3
    assert shown[0].startswith("  1. fanout") and "One event per order." in shown[0]
    assert any("(needs fanout)" in line for line in shown)
    assert sum(line.startswith("error:") for line in shown) == 2


# --------------------------------------------------------------------------- the CLI


def test_init_all_passes_its_own_ci(tmp_path: Path) -> None:
    target = tmp_path / "shop"
    done = postflow(tmp_path, "init", "shop", "--all")
    assert done.returncode == 0, done.stderr
    entries = scaffold.library()
    for entry in entries:
        assert (target / entry.file).is_file()
        assert all((target / t).is_file() for t in entry.templates)
    assert "cd shop" in done.stdout and "postflow test" in done.stdout
    assert run_ci(target) > 0


def test_init_subset_brings_what_it_needs_and_passes(tmp_path: Path) -> None:
    entries = scaffold.library()
    entry = next((e for e in entries if e.needs), entries[0])  # one with needs, if any
    done = postflow(tmp_path, "init", "shop", "--journey", entry.id)
    assert done.returncode == 0, done.stderr
    copied = {p.name for p in (tmp_path / "shop" / "journeys").iterdir()}
    wanted = {entry.id, *entry.needs}
    assert {Path(e.file).name for e in entries if e.id in wanted} <= copied
    for need in entry.needs:
        assert f"{need} (needed by {entry.id})" in done.stdout
    if entry.test_file:
        assert run_ci(tmp_path / "shop") > 0


def test_init_again_refuses_and_changes_nothing_then_force_overwrites(tmp_path: Path) -> None:
    assert postflow(tmp_path, "init", "--all").returncode == 0
    (tmp_path / "README.md").write_text("my own notes\n")
    before = snapshot(tmp_path)
    again = postflow(tmp_path, "init", "--all")
    assert again.returncode == 1
    assert "README.md" in again.stderr and "postflow.yaml" in again.stderr
    assert "--force" in again.stderr and "nothing was written" in again.stderr
    assert snapshot(tmp_path) == before
    forced = postflow(tmp_path, "init", "--all", "--force")
    assert forced.returncode == 0, forced.stderr
    assert (tmp_path / "README.md").read_text() != "my own notes\n"


def test_init_unknown_journey_is_a_usage_error(tmp_path: Path) -> None:
    done = postflow(tmp_path, "init", "shop", "--journey", "no-such-journey")
    assert done.returncode == 2
    assert "no-such-journey" in done.stderr and "known:" in done.stderr
    assert scaffold.library()[0].id in done.stderr
    assert not (tmp_path / "shop").exists()


def test_init_without_a_choice_and_without_a_terminal_is_a_usage_error(tmp_path: Path) -> None:
    done = postflow(tmp_path, "init", "shop")
    assert done.returncode == 2
    assert "--all" in done.stderr and "--journey" in done.stderr
    assert not (tmp_path / "shop").exists()


def test_init_all_and_journey_together_is_a_usage_error(tmp_path: Path) -> None:
    journey = scaffold.library()[0].id
    result = CliRunner().invoke(main, ["init", str(tmp_path), "--all", "--journey", journey])
    assert result.exit_code == 2


def test_init_list(tmp_path: Path) -> None:
    done = postflow(tmp_path, "init", "--list")
    assert done.returncode == 0, done.stderr
    for entry in scaffold.library():
        assert entry.id in done.stdout
    assert list(tmp_path.iterdir()) == []


def test_init_asks_on_a_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_init, "_interactive", lambda: True)
    entries = scaffold.library()
    result = CliRunner().invoke(main, ["init", str(tmp_path / "shop")], input="0\n1\n")
    assert result.exit_code == 0, result.output
    assert "1. " + entries[0].id in result.output
    assert "error: '0' is out of range" in result.output
    assert (tmp_path / "shop" / entries[0].file).is_file()
    copied = {e.id for e in scaffold.resolve(entries, [entries[0].id])[0]}
    for entry in entries:
        assert (tmp_path / "shop" / entry.file).exists() == (entry.id in copied)


def test_init_on_a_terminal_takes_all_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli_init, "_interactive", lambda: True)
    result = CliRunner().invoke(main, ["init", str(tmp_path / "shop")], input="\n")
    assert result.exit_code == 0, result.output
    assert all((tmp_path / "shop" / e.file).is_file() for e in scaffold.library())


def test_init_into_a_file_fails(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("")
    result = CliRunner().invoke(main, ["init", str(tmp_path / "taken"), "--all"])
    assert result.exit_code != 0


def test_init_help_shows_an_example() -> None:
    result = CliRunner().invoke(main, ["init", "--help"])
    assert result.exit_code == 0 and "postflow init my-shop --all" in result.output


def test_plan_names_journeys_without_tests(small_library: Path) -> None:
    assert scaffold.plan(Path("new"), ["receipt"], small_library).untested == ("receipt",)
    assert scaffold.plan(Path("new"), ["thanks"], small_library).untested == ()


def test_a_write_that_fails_half_way_takes_back_what_it_wrote(tmp_path: Path) -> None:
    """An error from the file system in the middle of ``init`` (a full disk, a name the file
    system refuses, a read-only folder) leaves nothing behind: no half project that a second
    ``init`` would then refuse as existing files."""
    good = scaffold.plan(tmp_path / "shop")
    refused = scaffold.PlannedFile("templates/" + "x" * 300 + ".html", b"too long a name")
    plan = dataclasses.replace(good, files=(*good.files[:5], refused, *good.files[5:]))
    (tmp_path / "keep").mkdir()
    with pytest.raises(OSError):
        scaffold.write(plan)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep"]
    scaffold.write(good)  # and a second attempt starts from a clean slate
    assert (tmp_path / "shop" / "postflow.yaml").is_file()
