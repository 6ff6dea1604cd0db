"""Opening a database: URL checks, SQLite pragmas, the schema check, and friendly errors.

Everything that can go wrong before the first query (a wrong URL scheme, an unreachable
server, a read-only or missing directory, a database written by a newer postflow) becomes a
:class:`DatabaseError` with one line that names the problem, so the CLI can print it and exit
without a traceback.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, OperationalError

SUPPORTED = ("sqlite", "postgresql")


class DatabaseError(Exception):
    """A database problem, said in one line for a person."""


def describe_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Autocommit at the driver level: SQLAlchemy's "begin" event below opens every
    # transaction itself, as BEGIN IMMEDIATE (a deferred transaction that later wants to write
    # fails at once with "database is locked" in WAL mode, whatever busy_timeout says).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_begin(conn: sa.Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def create_engine(url: str) -> sa.Engine:
    """An engine for ``url``: SQLite (WAL, writers ``BEGIN IMMEDIATE``) or PostgreSQL via
    psycopg 3. Raises :class:`DatabaseError` for a URL postflow cannot use."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise DatabaseError(
            f"database URL {url!r} is not a URL (e.g. sqlite:///postflow.db or "
            "postgresql+psycopg://user@host/db)"
        ) from None
    backend = parsed.get_backend_name()
    if backend not in SUPPORTED:
        raise DatabaseError(
            f"database URL {describe_url(url)!r}: unsupported scheme {parsed.drivername!r} "
            "(use sqlite:///FILE or postgresql+psycopg://...)"
        )
    if backend == "postgresql" and parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        database = parsed.database or ""
        if database in ("", ":memory:"):
            raise DatabaseError(
                "an in-memory SQLite database cannot be shared between commands: use sqlite:///FILE"
            )
        directory = Path(database).resolve().parent
        if not directory.is_dir():
            raise DatabaseError(f"database {database}: the directory {directory} does not exist")
    try:
        if backend == "sqlite":
            engine = sa.create_engine(parsed, connect_args={"timeout": 30})
            event.listen(engine, "connect", _sqlite_pragmas)
            event.listen(engine, "begin", _sqlite_begin)
        else:
            engine = sa.create_engine(
                parsed, pool_pre_ping=True, connect_args={"connect_timeout": 5}
            )
    except (NoSuchModuleError, ModuleNotFoundError) as exc:
        raise DatabaseError(
            f"database URL {describe_url(url)!r} needs a driver that is not installed ({exc}); "
            "for PostgreSQL install postflow[postgres]"
        ) from None
    return engine


def explain(exc: BaseException, url: str) -> str:
    """One line saying why a database operation failed."""
    where = describe_url(url)
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
    if isinstance(orig, sqlite3.OperationalError):
        lowered = text.lower()
        if "readonly" in lowered or "read-only" in lowered:
            return f"database {where} is read-only ({text})"
        if "disk" in lowered and "full" in lowered:
            return f"database {where}: the disk is full ({text})"
        if "unable to open" in lowered:
            return f"cannot open database {where} ({text})"
        if "locked" in lowered:
            return f"database {where} is locked by another process ({text})"
    if isinstance(orig, sqlite3.DatabaseError) and "not a database" in text:
        return f"{where} is not a SQLite database ({text})"
    if isinstance(exc, OperationalError | DBAPIError):
        return f"database {where}: {text}"
    return f"database {where}: {text}"


def ping(engine: sa.Engine) -> None:
    """Raise if the database does not answer."""
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))


def writable_file(url: str) -> None:
    """For SQLite: refuse early, in words, a database file or directory we cannot write."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return
    path = Path(parsed.database)
    target = path if path.exists() else path.resolve().parent
    if not os.access(target, os.W_OK):
        raise DatabaseError(f"database {parsed.database} is read-only (no write permission)")
