"""Real databases for tests: a SQLite file, or a fresh PostgreSQL database dropped after.

PostgreSQL is part of the suite, never skipped: ``POSTFLOW_TEST_PG_URL`` (default: the
local server's ``test`` database, trust auth) must answer, else the tests fail.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

PG_URL = os.environ.get("POSTFLOW_TEST_PG_URL", "postgresql+psycopg://root@127.0.0.1:5432/test")
BACKENDS = ("sqlite", "postgresql")


@contextmanager
def fresh_pg_url(prefix: str = "pf_t") -> Iterator[str]:
    """A new, empty PostgreSQL database's URL; the database is dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        yield sa.make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def database_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """A fresh database of ``backend`` ("sqlite" or "postgresql")."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'postflow.db'}"
    else:
        with fresh_pg_url() as url:
            yield url
