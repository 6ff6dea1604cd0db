"""The worked examples of docs/language-v1.1.md (``examples/language/``) stay true.

Runs ``postflow validate`` and ``postflow test`` on the example project through the CLI, as a
user would: every journey is clean, every test case passes, and the summary counts exactly the
cases the test files hold (so a file that silently stopped loading would be noticed).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml
from conftest import case_files, journey_files, run_cli

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "language"
CONFIG = EXAMPLES / "postflow.yaml"
JOURNEYS = EXAMPLES / "journeys"
DOC = ROOT / "docs" / "language-v1.1.md"


def postflow(*args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, timeout=120)


def test_the_examples_validate_cleanly() -> None:
    result = postflow("validate", "--config", str(CONFIG))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert f"{len(journey_files(JOURNEYS))} journey file(s), 0 error(s), 0 warning(s)" in output, (
        output
    )


def test_every_example_case_passes() -> None:
    cases = sum(
        len(yaml.safe_load(path.read_text(encoding="utf-8"))["cases"])
        for path in case_files(JOURNEYS)
    )
    assert cases >= 14  # one per behaviour the doc describes, at least
    result = postflow("test", "--config", str(CONFIG), str(JOURNEYS))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "0 failed" in output, output
    summary = re.search(r"(\d+) passed, (\d+) failed", output)
    assert summary is not None, output
    assert (int(summary[1]), int(summary[2])) == (cases, 0), output


def test_every_example_journey_is_tested() -> None:
    tested = {
        journey
        for path in case_files(JOURNEYS)
        for journey in yaml.safe_load(path.read_text(encoding="utf-8")).get("journeys", [])
    }
    ids = {
        yaml.safe_load(path.read_text(encoding="utf-8"))["id"] for path in journey_files(JOURNEYS)
    }
    assert ids - tested == set()


def test_the_doc_links_only_files_that_exist() -> None:
    links = re.findall(r"\]\((\.\./[^)#]+)", DOC.read_text(encoding="utf-8"))
    assert links, "the doc should point at its examples and tests"
    missing = [link for link in links if not (DOC.parent / link).exists()]
    assert missing == []
