"""Database URL resolution, engine set-up and schema migrations of the history store."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.pool import ConnectionPoolEntry

from fedcore.errors import StoreError

logger = logging.getLogger(__name__)

DATABASE_URL_ENV = "FED_DATABASE_URL"
DATA_DIR_ENV = "FED_DATA_DIR"
STORE_THUMBNAILS_ENV = "FED_STORE_THUMBNAILS"
DEFAULT_DATA_DIR_NAME = "data"
DEFAULT_DATABASE_FILENAME = "fed-history.sqlite3"
DATA_DIR_MODE = 0o700

# Seconds a SQLite connection waits for another writer before it fails with
# "database is locked" (sqlite3's busy timeout).
SQLITE_BUSY_TIMEOUT_S = 30.0
# Engine execution option that makes a SQLite transaction start with a plain
# (deferred) BEGIN. Without it every transaction starts with BEGIN IMMEDIATE.
READ_ONLY_OPTION = "fed_read_only"
# Arbitrary constant key of the PostgreSQL advisory lock that serialises
# concurrent `upgrade head` runs from processes starting at the same time.
MIGRATION_LOCK_KEY = 0x46454431

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SUPPORTED_BACKENDS: tuple[str, ...] = ("sqlite", "postgresql")
_TRUE_WORDS = ("1", "true", "yes", "on")


def data_dir() -> Path:
    """Return the data folder, creating it readable by its owner only when it is missing.

    The folder is ``$FED_DATA_DIR`` when set, else ``data/`` in the current
    working directory.
    """
    configured = os.environ.get(DATA_DIR_ENV)
    folder = Path(configured).expanduser() if configured else Path.cwd() / DEFAULT_DATA_DIR_NAME
    if not folder.exists():
        folder.mkdir(mode=DATA_DIR_MODE, parents=True, exist_ok=True)
        # mkdir applies the umask to the mode, so set it again explicitly.
        folder.chmod(DATA_DIR_MODE)
        logger.info("created data folder %s with mode %o", folder, DATA_DIR_MODE)
    return folder


def default_database_url() -> URL:
    path = data_dir() / DEFAULT_DATABASE_FILENAME
    return URL.create("sqlite+pysqlite", database=str(path))


def thumbnails_enabled_by_env() -> bool:
    return os.environ.get(STORE_THUMBNAILS_ENV, "").strip().lower() in _TRUE_WORDS


def display_url(url: URL) -> str:
    """Return the URL as text with its password masked, for messages and logs."""
    return url.render_as_string(hide_password=True)


def resolve_database_url(url: str | URL | None = None) -> URL:
    """Pick the database URL: the argument, else $FED_DATABASE_URL, else the SQLite default.

    ``postgresql://`` and ``postgres://`` URLs are mapped to the psycopg 3
    driver, the only PostgreSQL driver the project installs.
    """
    if url is None or url == "":
        url = os.environ.get(DATABASE_URL_ENV) or None
    if url is None:
        return default_database_url()
    if isinstance(url, URL):
        parsed = url
    else:
        try:
            parsed = make_url(url.replace("postgres://", "postgresql://", 1) if url.startswith("postgres://") else url)
        except ArgumentError as error:
            raise StoreError(
                f"invalid database URL {url!r}: {error}; "
                "use sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/NAME"
            ) from error

    backend = parsed.get_backend_name()
    if backend not in SUPPORTED_BACKENDS:
        raise StoreError(
            f"unsupported database {backend!r} in {display_url(parsed)}; supported: {', '.join(SUPPORTED_BACKENDS)}"
        )
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif backend == "postgresql" and parsed.drivername != "postgresql+psycopg":
        raise StoreError(
            f"unsupported PostgreSQL driver in {display_url(parsed)}; use postgresql:// or postgresql+psycopg://"
        )
    if backend == "sqlite" and parsed.database in (None, "", ":memory:"):
        raise StoreError(
            f"in-memory SQLite ({display_url(parsed)}) is not supported because every connection would see "
            "its own empty database; use sqlite:///PATH to a file"
        )
    return parsed


def _configure_sqlite(engine: Engine) -> None:
    """Install the connection hooks that make SQLite safe for concurrent writers.

    pysqlite's own transaction handling starts transactions late and with a
    deferred BEGIN, so two writers can each hold a read lock, both try to
    upgrade it and one fails at once with "database is locked" without
    waiting for the busy timeout. Turning it off and emitting BEGIN IMMEDIATE
    ourselves takes the write lock up front, where the busy timeout applies.
    This follows the "Serializable isolation / Savepoints / Transactional DDL"
    recipe of the SQLAlchemy pysqlite dialect documentation.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: object, connection_record: ConnectionPoolEntry) -> None:
        dbapi_connection.isolation_level = None  # type: ignore[attr-defined]
        cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        read_only = connection.get_execution_options().get(READ_ONLY_OPTION, False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def create_store_engine(url: URL) -> Engine:
    """Create the engine for ``url`` with the per-backend settings of the store."""
    if url.get_backend_name() == "sqlite":
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})
        _configure_sqlite(engine)
        return engine
    return create_engine(url, pool_pre_ping=True)


def is_locked_error(error: OperationalError) -> bool:
    message = str(error.orig).lower()
    return "database is locked" in message or "database table is locked" in message


def alembic_config() -> Config:
    config = Config()
    # Config values are %-interpolated, so a literal % in the path must be doubled.
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    return config


def upgrade_database(engine: Engine) -> str | None:
    """Apply every pending migration in one transaction and return the resulting revision."""
    config = alembic_config()
    head = ScriptDirectory.from_config(config).get_current_head()
    try:
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            current = stored_revision(connection)
            # Skipping Alembic when nothing is pending keeps its INFO lines out of every start-up.
            if current == head:
                return current
            logger.info(
                "upgrading database %s from revision %s to %s", display_url(engine.url), current or "none", head
            )
            config.attributes["connection"] = connection
            try:
                command.upgrade(config, "head")
            except CommandError as error:
                raise StoreError(
                    f"cannot upgrade the database {display_url(engine.url)} from schema revision {current}: {error}; "
                    "it was probably written by a newer FED, so upgrade FED or use another database"
                ) from error
            return stored_revision(connection)
    except OperationalError as error:
        raise StoreError(
            f"cannot open or upgrade the database {display_url(engine.url)}: {error.orig}; "
            f"check the URL given with --db or {DATABASE_URL_ENV} and that the database is reachable"
        ) from error


def stored_revision(connection: Connection) -> str | None:
    """Return the schema revision recorded by Alembic, or None for a database without one."""
    if not inspect(connection).has_table("alembic_version"):
        return None
    return connection.execute(text("SELECT version_num FROM alembic_version")).scalar_one_or_none()
