"""Bring a SQL store's schema to the revision this postflow expects, or say why not.

The tables are declared in :mod:`postflow.store.schema` and created by the Alembic
migrations in ``store/migrations`` (shipped inside the package, so the path comes from
``__file__`` and works from an installed wheel; there is no ``alembic.ini``). The daemon and
``postflow db upgrade`` call :func:`upgrade`; commands that must not change the schema call
:func:`check` first. Both refuse a database written by a newer postflow (an unknown
revision): its tables may hold columns and meanings this one would get wrong, and running
old migrations over it could only make that worse.

An upgrade runs in one transaction that first takes a lock (an advisory lock on PostgreSQL,
``BEGIN IMMEDIATE`` on SQLite), so two workers starting at once do not both create the
tables, and a failed migration leaves the database as it was. Within one process, runs
are serialised too, because Alembic keeps the running migration in module globals.
"""

from __future__ import annotations

import threading
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

#: The newest revision this postflow knows (a test checks it is the migrations' head).
HEAD: str = "0004"

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "alembic_version"
# Key of the PostgreSQL advisory lock serialising upgrades: b"postflow" as a bigint.
_LOCK_KEY = 8101821198434594679
_NOT_INITIALISED = "the database is not initialised: run `postflow db upgrade`"
# Alembic's ``context`` and ``op`` are module globals: one migration run per process at once,
# whatever the database (the database lock only serialises runs on the same one).
_ALEMBIC = threading.Lock()


class SchemaError(Exception):
    """The database's schema is not one this postflow can use; the message says what to do.

    Its text is one line meant for the person running postflow, printed as is by the CLI."""


def current_revision(engine: sa.Engine) -> str | None:
    """The revision recorded in the database's ``alembic_version``, None when there is none
    (an empty database, or one postflow never migrated)."""
    with engine.connect() as connection:
        return _revision(connection)


def upgrade(engine: sa.Engine) -> str:
    """Apply every migration up to :data:`HEAD` and return the revision now current.

    Idempotent: at HEAD it changes nothing. Raises :class:`SchemaError`, changing nothing,
    when the database is at a revision this postflow does not know (a newer postflow wrote
    it) or holds tables but no ``alembic_version`` (it is not a postflow database)."""
    with engine.begin() as connection:
        # Lock before reading the revision: another worker may be upgrading right now.
        _lock(connection)
        current = _revision(connection)
        _require_known(connection, current)
        if current != HEAD:
            config = _config()
            config.attributes["connection"] = connection
            with _ALEMBIC:
                command.upgrade(config, "head")
            current = _revision(connection)
    assert current is not None
    return current


def check(engine: sa.Engine) -> None:
    """Raise :class:`SchemaError` unless the database is exactly at :data:`HEAD`.

    For commands that must not change the schema (on PostgreSQL the schema is the
    operator's to upgrade, with ``postflow db upgrade``): an empty database or one behind
    gets the "not initialised" message, one ahead the "newer" message."""
    with engine.connect() as connection:
        current = _revision(connection)
        _require_known(connection, current)
    if current != HEAD:
        raise SchemaError(_NOT_INITIALISED)


def _config() -> Config:
    """An Alembic configuration built in code, pointing at the packaged migrations."""
    config = Config()
    # Config values go through configparser interpolation: a "%" in the path must be doubled.
    config.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    return config


def _known_revisions() -> set[str]:
    script = ScriptDirectory.from_config(_config())
    return {s.revision for s in script.walk_revisions()}


def _revision(connection: sa.Connection) -> str | None:
    heads = MigrationContext.configure(
        connection, opts={"version_table": VERSION_TABLE}
    ).get_current_heads()
    if len(heads) > 1:
        # postflow's history is linear: several rows mean someone else's migrations.
        raise SchemaError(
            f"the database records several schema revisions ({', '.join(heads)}): "
            "it was not migrated by postflow"
        )
    return heads[0] if heads else None


def _require_known(connection: sa.Connection, current: str | None) -> None:
    """Refuse a revision from a newer postflow, and tables postflow did not create."""
    if current is None:
        tables = sorted(
            name for name in sa.inspect(connection).get_table_names() if name != VERSION_TABLE
        )
        if tables:
            shown = ", ".join(tables[:5]) + (", ..." if len(tables) > 5 else "")
            raise SchemaError(
                f"the database holds tables ({shown}) but no {VERSION_TABLE}: "
                "it is not a postflow database"
            )
    elif current not in _known_revisions():
        raise SchemaError(
            f"the database schema is at revision {current}, newer than this postflow knows "
            f"({HEAD}): upgrade postflow"
        )


def _lock(connection: sa.Connection) -> None:
    """Serialise upgrades: held until the upgrade's transaction ends."""
    if connection.dialect.name == "postgresql":
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
    elif connection.dialect.name == "sqlite" and connection.dialect.driver == "pysqlite":
        # The sqlite3 module opens no transaction before DDL, so without this each CREATE
        # commits alone; IMMEDIATE takes the write lock now rather than at the first write.
        # postflow's own engine (store/database.py) has begun with BEGIN IMMEDIATE already.
        if not connection.connection.driver_connection.in_transaction:  # type: ignore[union-attr]
            connection.exec_driver_sql("BEGIN IMMEDIATE")
