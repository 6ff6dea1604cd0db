"""Alembic environment of the postflow SQL store, configured from code (no alembic.ini).

:mod:`postflow.store.migrate` runs the migrations on a connection of its own, passed in
``config.attributes["connection"]``, so that its revision check, its lock and the upgrade
share one transaction. Without one (the ``alembic`` command line, or a Config carrying only
``sqlalchemy.url``), an engine is made from ``sqlalchemy.url``.

SQLite cannot ``ALTER`` most things, so its migrations are rendered and run in batch mode
(copy the table and move it back). Types and server defaults are compared so that
autogenerate, and the test that the migrations match :mod:`postflow.store.schema`, see a
changed type or default and not only added or dropped tables and columns.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine, make_url, pool

from postflow.store.schema import metadata

config = context.config


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        compare_server_default=True,
    )
    # In a transaction the caller opened this neither begins nor commits: the caller does.
    with context.begin_transaction():
        context.run_migrations()


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError(
            'postflow migrations need a connection in config.attributes["connection"] '
            "or a sqlalchemy.url"
        )
    return url


def run_migrations_offline() -> None:
    """Write the SQL out instead of running it (``alembic upgrade --sql``)."""
    url = _url()
    context.configure(
        url=url,
        target_metadata=metadata,
        render_as_batch=make_url(url).get_backend_name() == "sqlite",
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Use the caller's connection when there is one, else connect to ``sqlalchemy.url``."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = create_engine(_url(), poolclass=pool.NullPool)
    try:
        with engine.connect() as own:
            _run(own)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
