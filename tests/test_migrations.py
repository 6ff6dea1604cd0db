"""The Alembic migrations against the tables the code declares, on SQLite and PostgreSQL.

PostgreSQL is required, not optional: the store runs on it in production and its DDL differs
(serial keys, boolean literals, reflected defaults), so a run without it proves too little.
Each test gets databases of its own: SQLite files under ``tmp_path`` and, on PostgreSQL,
fresh databases ``pf_mig_<random>`` created from ``PG_URL`` and dropped afterwards.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from postflow.store import database, migrate, schema

PG_URL = os.environ.get("POSTFLOW_TEST_PG_URL", "postgresql+psycopg://root@127.0.0.1:5432/test")

NEWER = (
    "the database schema is at revision 9999, newer than this postflow knows (0004): "
    "upgrade postflow"
)
NOT_INITIALISED = "the database is not initialised: run `postflow db upgrade`"

MakeEngine = Callable[[], sa.Engine]


@pytest.fixture(params=["sqlite", "sqlite-postflow", "postgresql"])
def make_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeEngine]:
    """A factory of engines on fresh, empty databases of one backend.

    ``sqlite`` is a plain SQLAlchemy engine (the driver opens no transaction before DDL);
    ``sqlite-postflow`` is the daemon's own (driver autocommit, ``BEGIN IMMEDIATE`` on
    begin, WAL): migrate must be atomic and correct on both."""
    engines: list[sa.Engine] = []
    created: list[str] = []
    admin: sa.Engine | None = None

    def make() -> sa.Engine:
        nonlocal admin
        n = len(engines)
        if request.param == "sqlite":
            engine = sa.create_engine(f"sqlite:///{tmp_path / f'plain{n}.db'}")
        elif request.param == "sqlite-postflow":
            engine = database.create_engine(f"sqlite:///{tmp_path / f'postflow{n}.db'}")
        else:
            if admin is None:
                admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
            name = f"pf_mig_{uuid.uuid4().hex[:16]}"
            with admin.connect() as conn:
                conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
            created.append(name)
            url = sa.make_url(PG_URL).set(database=name)
            engine = sa.create_engine(url)
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.dispose()
    if admin is not None:
        with admin.connect() as conn:
            for name in created:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture
def engine(make_engine: MakeEngine) -> sa.Engine:
    return make_engine()


def catalog(engine: sa.Engine) -> dict[str, list[tuple[Any, ...]]]:
    """The database's own description of its tables, columns, constraints and indexes
    (outside ``alembic_version``), as the backend stores it: what a query planner sees,
    including partial-index predicates that Alembic's comparison does not look at."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            rows = conn.exec_driver_sql(
                "SELECT type, name, tbl_name, sql FROM sqlite_master "
                "WHERE tbl_name != 'alembic_version' ORDER BY type, name"
            )
            # A table's SQL text records how it was built (ALTER TABLE ADD COLUMN appends to
            # it), so tables are compared by their columns; index SQL is compared as text.
            master = []
            for kind, name, table, sql in rows.all():
                if kind == "table":
                    cols = conn.exec_driver_sql(f'PRAGMA table_xinfo("{name}")').all()
                    master.append((kind, name, table, tuple(tuple(c) for c in cols)))
                else:
                    master.append((kind, name, table, sql))
            return {"sqlite_master": master}
        columns = conn.exec_driver_sql(
            "SELECT table_name, column_name, ordinal_position, data_type, is_nullable, "
            "column_default FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name != 'alembic_version' "
            "ORDER BY table_name, ordinal_position"
        )
        constraints = conn.exec_driver_sql(
            "SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid) "
            "FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace "
            "WHERE n.nspname = current_schema() "
            "AND c.conrelid::regclass::text != 'alembic_version' ORDER BY 1, 2"
        )
        indexes = conn.exec_driver_sql(
            "SELECT tablename, indexname, indexdef FROM pg_indexes "
            "WHERE schemaname = current_schema() AND tablename != 'alembic_version' "
            "ORDER BY 1, 2"
        )
        return {
            "columns": [tuple(r) for r in columns],
            "constraints": [tuple(r) for r in constraints],
            "indexes": [tuple(r) for r in indexes],
        }


def version_rows(engine: sa.Engine) -> list[str]:
    with engine.connect() as conn:
        return [r[0] for r in conn.exec_driver_sql("SELECT version_num FROM alembic_version")]


def test_head_is_the_newest_migration() -> None:
    config = Config()
    config.set_main_option("script_location", str(migrate.MIGRATIONS))
    config.set_main_option("path_separator", "os")
    assert ScriptDirectory.from_config(config).get_heads() == [migrate.HEAD]
    # Everything Alembic needs at run time and for `alembic revision` ships in the package.
    assert (migrate.MIGRATIONS / "env.py").is_file()
    assert (migrate.MIGRATIONS / "script.py.mako").is_file()


def test_upgrade_creates_the_declared_tables(engine: sa.Engine) -> None:
    assert migrate.current_revision(engine) is None
    assert migrate.upgrade(engine) == migrate.HEAD
    assert migrate.current_revision(engine) == migrate.HEAD
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True}
        )
        assert compare_metadata(context, schema.metadata) == []
    assert sorted(sa.inspect(engine).get_table_names()) == sorted(
        [*schema.metadata.tables, "alembic_version"]
    )


def test_upgrade_matches_create_all_in_the_catalog(make_engine: MakeEngine) -> None:
    """Byte for byte what ``metadata.create_all`` writes on the same backend: partial index
    predicates must match the store's queries exactly or the planner ignores the index
    (SQLite treats ``applied IS 0`` and ``applied IS false`` as different terms)."""
    migrated, reference = make_engine(), make_engine()
    migrate.upgrade(migrated)
    schema.metadata.create_all(reference)
    assert catalog(migrated) == catalog(reference)


def test_upgrade_twice_is_a_no_op(engine: sa.Engine) -> None:
    migrate.upgrade(engine)
    before = catalog(engine)
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        assert migrate.upgrade(engine) == migrate.HEAD
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    writes = [
        s
        for s in statements
        if s.lstrip().split(None, 1)[0].upper() in {"CREATE", "ALTER", "DROP", "INSERT", "UPDATE"}
    ]
    assert writes == []
    assert catalog(engine) == before
    assert version_rows(engine) == [migrate.HEAD]
    migrate.check(engine)


def run_together(calls: list[Callable[[], str]]) -> list[str]:
    """Run ``calls`` in threads released at the same instant; fail, not hang, on a deadlock."""
    barrier = threading.Barrier(len(calls))
    results: list[str] = []
    errors: list[BaseException] = []

    def run(call: Callable[[], str]) -> None:
        barrier.wait()
        try:
            results.append(call())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(call,), daemon=True) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "upgrades deadlocked"
    assert errors == []
    return results


def test_concurrent_upgrades_create_the_tables_once(engine: sa.Engine) -> None:
    """Workers starting together on an empty database: one creates, the others wait."""
    assert run_together([lambda: migrate.upgrade(engine)] * 4) == [migrate.HEAD] * 4
    assert version_rows(engine) == [migrate.HEAD]
    migrate.check(engine)


def test_concurrent_upgrades_of_different_databases(make_engine: MakeEngine) -> None:
    """Alembic keeps its running migration in module globals: one process upgrading several
    databases at once must not mix them up."""
    engines = [make_engine() for _ in range(3)]
    calls = [lambda e=e: migrate.upgrade(e) for e in engines]
    assert run_together(calls) == [migrate.HEAD] * 3
    for engine in engines:
        migrate.check(engine)
        assert version_rows(engine) == [migrate.HEAD]


def test_unknown_revision_is_refused_and_left_alone(engine: sa.Engine) -> None:
    migrate.upgrade(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    before = catalog(engine)
    with pytest.raises(migrate.SchemaError) as excinfo:
        migrate.upgrade(engine)
    assert str(excinfo.value) == NEWER
    with pytest.raises(migrate.SchemaError) as excinfo:
        migrate.check(engine)
    assert str(excinfo.value) == NEWER
    assert catalog(engine) == before
    assert version_rows(engine) == ["9999"]
    assert migrate.current_revision(engine) == "9999"


def test_check_refuses_an_empty_database(engine: sa.Engine) -> None:
    with pytest.raises(migrate.SchemaError) as excinfo:
        migrate.check(engine)
    assert str(excinfo.value) == NOT_INITIALISED
    assert sa.inspect(engine).get_table_names() == []
    migrate.upgrade(engine)
    migrate.check(engine)


def test_a_database_of_someone_else_is_refused(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE inventory (sku TEXT PRIMARY KEY, qty INTEGER)")
    before = catalog(engine)
    for call in (migrate.upgrade, migrate.check):
        with pytest.raises(migrate.SchemaError) as excinfo:
            call(engine)
        message = str(excinfo.value)
        assert "not a postflow database" in message
        assert "inventory" in message
        assert "\n" not in message
    assert catalog(engine) == before
    assert sa.inspect(engine).get_table_names() == ["inventory"]


def test_a_failed_upgrade_leaves_the_database_empty(
    engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = command.upgrade

    def upgrade_then_fail(config: Config, revision: str) -> None:
        real(config, revision)
        raise RuntimeError("the power went out")

    monkeypatch.setattr(migrate.command, "upgrade", upgrade_then_fail)
    with pytest.raises(RuntimeError):
        migrate.upgrade(engine)
    assert sa.inspect(engine).get_table_names() == []
    assert migrate.current_revision(engine) is None
    monkeypatch.undo()
    assert migrate.upgrade(engine) == migrate.HEAD


def test_downgrade_to_base_drops_everything(engine: sa.Engine) -> None:
    migrate.upgrade(engine)
    config = Config()
    config.set_main_option("script_location", str(migrate.MIGRATIONS))
    config.set_main_option("path_separator", "os")
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "base")
    assert sa.inspect(engine).get_table_names() == ["alembic_version"]
    assert migrate.current_revision(engine) is None
    # An emptied postflow database upgrades again.
    assert migrate.upgrade(engine) == migrate.HEAD


def test_env_connects_from_the_url_without_a_connection(tmp_path: Path) -> None:
    """The fallback for the ``alembic`` command line: only ``sqlalchemy.url`` is set."""
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    config = Config()
    config.set_main_option("script_location", str(migrate.MIGRATIONS))
    config.set_main_option("path_separator", "os")
    config.set_main_option("sqlalchemy.url", url)
    command.upgrade(config, "head")
    engine = sa.create_engine(url)
    try:
        assert migrate.current_revision(engine) == migrate.HEAD
        migrate.check(engine)
    finally:
        engine.dispose()


def test_0002_keeps_the_outbox_of_a_0001_database(engine: sa.Engine) -> None:
    """A database written by the previous release upgrades in place: queued messages stay
    queued (the new columns start empty) and the new indexes exist."""
    config = Config()
    config.set_main_option("script_location", str(migrate.MIGRATIONS))
    config.set_main_option("path_separator", "os")
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0001")
    row = {
        "message_id": "j:c_1:1:m1",
        "customer_id": "c_1",
        "journey": "j",
        "step": "s",
        "channel": "email",
        "at": 1,
        "payload": b"{}",
        "status": "queued",
        "attempts": 2,
        "next_attempt_at": 5,
        "created_at": 1,
    }
    with engine.begin() as conn:
        conn.execute(sa.table("outbox", *map(sa.column, row)).insert(), [row])
    assert migrate.current_revision(engine) == "0001"
    assert migrate.upgrade(engine) == migrate.HEAD
    with engine.connect() as conn:
        kept = conn.execute(sa.select(schema.outbox)).one()
    assert (kept.message_id, kept.status, kept.attempts) == ("j:c_1:1:m1", "queued", 2)
    assert (kept.to_address, kept.delivery_status, kept.delivery_at) == (None, None, None)
    indexes = {i["name"] for i in sa.inspect(engine).get_indexes("outbox")}
    assert {"ix_outbox_provider_id", "ix_outbox_to_address"} <= indexes
