"""Database and configuration faults through the real CLI: one clear line, exit 1 or 2, no
traceback, nothing half-written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from databases import PG_URL, fresh_pg_url

from postflow.store import migrate


def postflow(*args: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTFLOW_")}
    return subprocess.run(
        [sys.executable, "-m", "postflow", *args],
        cwd=cwd,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_clean_failure(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode in (1, 2), result
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines, "no message"
    for word in words:
        assert word in result.stderr, result.stderr


def events_file(path: Path, n: int, pad: int = 0) -> Path:
    with path.open("w") as f:
        for i in range(n):
            event = {
                "id": f"e{i}",
                "type": "order_placed",
                "customer_id": f"c{i}",
                "at": "2027-01-01T00:00:00Z",
                "data": {"order_id": f"o{i}", "total": 10, "note": "x" * pad},
            }
            f.write(json.dumps(event) + "\n")
    return path


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 300 KB tmpfs (we run as root here, in CI too): a disk that really fills up."""
    mount = tmp_path / "fs"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", str(mount)])
    assert done.returncode == 0, "these tests need root to mount a tmpfs"
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_wrong_url_scheme(tmp_path: Path) -> None:
    result = postflow("history", "--db", "mysql://u@h/db", cwd=tmp_path)
    assert_clean_failure(result, "unsupported scheme 'mysql'")


def test_not_a_url(tmp_path: Path) -> None:
    assert_clean_failure(postflow("history", "--db", "no url", cwd=tmp_path), "is not a URL")


def test_unreachable_postgres(tmp_path: Path) -> None:
    url = "postgresql+psycopg://root@127.0.0.1:1/test"
    result = postflow(
        "ingest", "--db", url, str(events_file(tmp_path / "e.jsonl", 1)), cwd=tmp_path
    )
    assert_clean_failure(result, "127.0.0.1", "refused")


def test_missing_sqlite_directory(tmp_path: Path) -> None:
    result = postflow("history", "--db", f"sqlite:///{tmp_path}/nope/x.db", cwd=tmp_path)
    assert_clean_failure(result, "does not exist")


def test_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    (tmp_path / "junk.db").write_text("not sqlite at all, just text" * 100)
    result = postflow("history", "--db", f"sqlite:///{tmp_path}/junk.db", cwd=tmp_path)
    assert_clean_failure(result, "not a SQLite database")


def test_postgres_must_be_upgraded_first_then_works(tmp_path: Path) -> None:
    with fresh_pg_url() as url:
        result = postflow("history", "--db", url, cwd=tmp_path)
        assert_clean_failure(result, "postflow db upgrade")
        upgraded = postflow("db", "upgrade", "--db", url, cwd=tmp_path)
        assert upgraded.returncode == 0, upgraded.stderr
        assert migrate.HEAD in upgraded.stderr
        assert postflow("history", "--db", url, cwd=tmp_path).returncode == 0


def test_a_newer_schema_is_refused_and_left_alone(tmp_path: Path) -> None:
    db = tmp_path / "p.db"
    assert postflow("history", "--db", f"sqlite:///{db}", cwd=tmp_path).returncode == 0
    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    for args in (
        ["history"],
        ["db", "upgrade"],
        ["ingest", str(events_file(tmp_path / "e.jsonl", 2))],
    ):
        result = postflow(*args, "--db", f"sqlite:///{db}", cwd=tmp_path)
        assert_clean_failure(result, "9999", "newer")
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM events")).scalar() == 0
    engine.dispose()


def test_malformed_config_is_located(tmp_path: Path) -> None:
    (tmp_path / "postflow.yaml").write_text("worker: {batch: zero}\n")
    result = postflow("history", cwd=tmp_path)
    assert_clean_failure(result, "postflow.yaml:1:")


def test_full_disk_stores_nothing(small_fs: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{small_fs}/x.db"
    big = events_file(tmp_path / "big.jsonl", 20_000, pad=50)
    result = postflow("ingest", "--db", url, str(big), cwd=tmp_path)
    assert_clean_failure(result, "disk is full")
    # The transaction was rolled back: the database holds no event of the file.
    subprocess.run(["mount", "-o", "remount,size=50m", str(small_fs)], check=True)
    history = postflow("history", "--db", url, cwd=tmp_path)
    assert history.returncode == 0, history.stderr
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM events")).scalar() == 0
    engine.dispose()


def test_read_only_disk(small_fs: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{small_fs}/x.db"
    assert postflow("history", "--db", url, cwd=tmp_path).returncode == 0
    subprocess.run(["mount", "-o", "remount,ro", str(small_fs)], check=True)
    result = postflow(
        "ingest", "--db", url, str(events_file(tmp_path / "e.jsonl", 3)), cwd=tmp_path
    )
    assert_clean_failure(result, "read-only")


def test_pg_url_is_the_shared_test_server() -> None:
    # The suite's PostgreSQL must answer: CI fails (not skips) without it.
    engine = sa.create_engine(PG_URL)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT 1")).scalar() == 1
    engine.dispose()
