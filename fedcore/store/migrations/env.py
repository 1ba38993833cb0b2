"""Alembic environment of the history store.

``upgrade_database`` passes an open connection in ``config.attributes``, so
the migrations run inside the caller's transaction. The ``alembic`` command
line works too: it connects to ``sqlalchemy.url`` when set, else to the URL
the store would use (``$FED_DATABASE_URL`` or the SQLite default).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from fedcore.store.engine import create_store_engine, resolve_database_url
from fedcore.store.models import Base


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        # SQLite cannot ALTER most of a table, so later migrations rebuild tables in batch mode.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def run_offline() -> None:
    url = resolve_database_url(context.config.get_main_option("sqlalchemy.url"))
    context.configure(url=url, target_metadata=Base.metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        run_migrations(connection)
        return
    engine = create_store_engine(resolve_database_url(context.config.get_main_option("sqlalchemy.url")))
    try:
        with engine.begin() as own_connection:
            run_migrations(own_connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
