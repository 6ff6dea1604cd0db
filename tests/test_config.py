"""postflow.yaml: discovery, defaults, relative paths, located errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from postflow import config, durations
from postflow.problems import MissingPath, ProblemsError


def test_defaults_without_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("POSTFLOW_CONFIG", raising=False)
    monkeypatch.delenv("POSTFLOW_DATABASE_URL", raising=False)
    settings = config.load_settings(None)
    assert settings.path is None
    assert settings.database == "sqlite:///postflow.db"
    assert settings.journeys == Path("journeys")
    assert settings.timezone == "UTC"
    assert settings.purchase_event == "order_placed"
    assert settings.quiet_hours is None and settings.limits == {}


def test_file_found_by_env_and_paths_relative_to_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "cat.yaml").write_text("TEA-1: {replenish_days: 30}\n")
    (tmp_path / "proj" / "postflow.yaml").write_text(
        "journeys: flows\ncatalog: cat.yaml\ntimezone: Europe/Berlin\n"
        "limits: {sms: {max: 1, per: 12h}}\n"
        'quiet_hours: {start: "21:00", end: "09:00"}\n'
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("POSTFLOW_CONFIG", "proj/postflow.yaml")
    settings = config.load_settings(None)
    assert settings.journeys == Path("proj/flows")
    assert settings.catalog["TEA-1"]["replenish_days"] == 30
    assert str(settings.zone) == "Europe/Berlin"
    assert settings.limits["sms"] == config.Limit(1, durations.parse_duration("12h"))
    assert settings.quiet_hours is not None
    assert settings.quiet_hours.channels == frozenset({"email", "sms"})


def test_database_url_env_overrides_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "postflow.yaml"
    path.write_text("database: sqlite:///a.db\n")
    monkeypatch.setenv("POSTFLOW_DATABASE_URL", "postgresql+psycopg://127.0.0.1/test")
    assert config.load_settings(path).database == "postgresql+psycopg://127.0.0.1/test"


@pytest.mark.parametrize(
    ("text", "where", "needle"),
    [
        ("timezon: UTC\n", (1, 1), "did you mean 'timezone'"),
        ("timezone: Mars/Base\n", (1, 11), "unknown time zone 'Mars/Base'"),
        ("limits: {email: {max: 2, per: 3x}}\n", (1, 31), "bad duration"),
        ('quiet_hours: {start: "09:00", end: "09:00"}\n', (1, 36), "equal"),
        ("catalog: missing.yaml\n", (1, 10), "catalog file not found"),
    ],
)
def test_bad_config_is_located(
    tmp_path: Path, text: str, where: tuple[int, int], needle: str
) -> None:
    path = tmp_path / "postflow.yaml"
    path.write_text(text)
    with pytest.raises(ProblemsError) as caught:
        config.load_settings(path)
    [problem] = caught.value.problems
    assert (problem.file, problem.line, problem.col) == (str(path), *where)
    assert needle in problem.message


def test_missing_explicit_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(MissingPath) as caught:
        config.load_settings(tmp_path / "nope.yaml")
    assert "nope.yaml" in str(caught.value)


def test_overrides_merge_deeply(tmp_path: Path) -> None:
    path = tmp_path / "postflow.yaml"
    path.write_text("limits: {email: {max: 2, per: 1d}, sms: {max: 1, per: 1d}}\n")
    settings = config.load_settings(path, overrides={"limits": {"email": {"max": 5}}})
    assert settings.limits["email"].max == 5
    assert settings.limits["email"].per == durations.parse_duration("1d")
    assert settings.limits["sms"].max == 1
